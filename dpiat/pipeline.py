"""Transfer: fill a target network with a trained source's parameters (the whole DPIAT pipeline).

    >>> import timm, dpiat
    >>> src = timm.create_model("tf_efficientnet_b2")     # load trained weights into it first
    >>> dst = timm.create_model("tf_efficientnet_b0")
    >>> report = dpiat.transfer(src, dst)                 # in place, under torch.no_grad()
    >>> report.n_matched, report.n_target_layers
    (131, 131)

``method="dpiat"`` is the authors' method, faithfully. Improved variants are registered under names of
their own in ``METHODS`` and measured against it; the faithful method is never changed.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from dpiat.clip import clip_windows, copy_matched, persistent_buffers
from dpiat.errors import DpiatError, UnknownNameError
from dpiat.matching import Matching, match
from dpiat.models import as_built_model
from dpiat.registry import METHODS, STRUCTURES, TransferMethod, register_method


@dataclass
class TransferReport:
    method: str
    source: str  # class name of the source model (or its timm name when known)
    target: str
    value: float  # DP value V(source -> target)
    n_target_layers: int  # transferable (PARAM) layers of the target
    n_matched: int  # target layers that received source parameters
    n_identical_shape: int  # ... of which with exactly the same weight shape
    elements_overwritten: int
    fraction_overwritten: float  # of all target parameter elements
    seconds: float
    pairs: list[tuple[str | None, str | None]] = field(repr=False)
    details: dict = field(default_factory=dict)  # what a named variant did beyond the faithful copy
    # target parameters the transfer wrote nothing into: they keep the target's own values (its random init)
    tensors_left: list[str] = field(default_factory=list)
    # target persistent buffers (state_dict entries that are not parameters: BatchNorm running statistics, ...)
    # the transfer wrote nothing into; buffers derived from the config (non-persistent) are never written
    buffers_left: list[str] = field(default_factory=list)
    # the target that was filled: the module passed in, or the one built from a timm name (not in as_dict)
    target_model: nn.Module | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        d = asdict(replace(self, target_model=None))
        del d["target_model"]
        d["pairs"] = [list(p) for p in self.pairs]
        if d["value"] != d["value"]:  # NaN: a method without a DP (weight_selection); JSON has no NaN
            d["value"] = None
        return d

    def summary(self) -> str:
        n = len(self.tensors_left)
        left = ("every target parameter tensor written" if not n else
                f"{n} target parameter tensor{'s' if n > 1 else ''} left at init ("
                + ", ".join(self.tensors_left[:3]) + (", ..." if n > 3 else "") + "; report.tensors_left)")
        b = len(self.buffers_left)
        if b:
            left += (f", {b} persistent buffer{'s' if b > 1 else ''} left (" + ", ".join(self.buffers_left[:3])
                     + (", ..." if b > 3 else "") + "; report.buffers_left)")
        return (f"{self.method}: {self.source} -> {self.target}: matched {self.n_matched}/{self.n_target_layers} "
                f"target layers ({self.n_identical_shape} with identical shapes), overwrote "
                f"{100 * self.fraction_overwritten:.1f}% of target parameters, {left}, "
                + (f"V={self.value:.3f}, " if self.value == self.value else "no DP value (matched by key), ")
                + f"{1000 * self.seconds:.1f} ms")


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or type(model).__name__


_TRAVERSAL = ("parameters", "named_parameters", "_named_members", "named_modules")
_PLAIN_TRAVERSAL: dict[type, bool] = {}


def _n_parameters(model: nn.Module) -> int:
    """``sum(p.numel() for p in model.parameters())`` (each module and each parameter once), walking
    ``_modules`` / ``_parameters`` directly when no module class overrides nn.Module's traversal."""
    seen, params, total, stack = {model}, set(), 0, [model]
    plain_of = _PLAIN_TRAVERSAL.get
    while stack:
        m = stack.pop()
        cls = type(m)
        plain = plain_of(cls)
        if plain is None:
            plain = _PLAIN_TRAVERSAL[cls] = all(getattr(cls, f, None) is getattr(nn.Module, f) for f in _TRAVERSAL)
        if not plain:
            return sum(p.numel() for p in model.parameters())
        d = m.__dict__
        for p in d["_parameters"].values():
            if p is not None and p not in params:
                params.add(p)
                total += p.numel()
        for child in d["_modules"].values():
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return total


def _persistent_buffers(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``model``'s persistent buffers by state_dict name (each tensor once); non-persistent ones are left out."""
    out, seen = [], set()
    for prefix, module in model.named_modules():
        for k, b in persistent_buffers(module).items():
            if id(b) not in seen:
                seen.add(id(b))
                out.append((f"{prefix}.{k}" if prefix else k, b))
    return out


def _unwritten(versions) -> list[str]:
    """Names of the tensors whose version counter did not move (inference tensors: whose values did not)."""
    return [n for n, t, v in versions if (torch.equal(t, v) if isinstance(v, torch.Tensor) else t._version == v)]


def _check_has_storage(model: nn.Module, role: str) -> None:
    for p in model.parameters():
        if p.is_meta:
            raise DpiatError(f"the {role} lives on the meta device (shapes only, no values), so there is nothing "
                             f"to {'copy from' if role == 'source' else 'copy into'}. Build it on a real device "
                             "for transfer; match/similarity/rank work on the meta device.")
        return


def _faithful(source: nn.Module, target: nn.Module) -> tuple[Matching, int]:
    matching = match(source, target)
    return matching, copy_matched(matching)


register_method("dpiat", _faithful, summary="faithful DPIAT transfer (Czyzewski et al. 2022)")


def transfer(source: nn.Module | str, target: nn.Module | str, method: str = "dpiat") -> TransferReport:
    """Copy ``source``'s parameters into ``target`` in place and report what was done.

    Either may be a timm name, built as ``timm.create_model(name)`` builds it (1000 classes, 3 channels:
    ``dpiat.models.as_built_model``); the target, built or given, is ``report.target_model``. A source named
    by a pretrained tag (``"resnet18.a1_in1k"``, ``"hf-hub:timm/..."``) gets those weights, from the local hub
    cache or downloaded (:mod:`dpiat.pretrained`). A bare architecture name holds no trained weights, so
    transferring it is only a control, and a warning says so.
    """
    from dpiat.pretrained import is_pretrained_name

    if method not in METHODS:
        raise UnknownNameError("transfer method", method, METHODS)
    if isinstance(source, str) and not is_pretrained_name(source):
        warnings.warn(f"the source {source!r} is a bare architecture, so its random init is transferred (a control "
                      f"only); for trained weights name a pretrained tag (e.g. 'resnet18.a1_in1k', listed by "
                      "dpiat.recommend), or pass a module: dpiat.create_model(name, pretrained=True) or one filled "
                      "by dpiat.load_weights", UserWarning, stacklevel=2)
    source, target = as_built_model(source, "source"), as_built_model(target, "target")
    _check_has_storage(source, "source")
    _check_has_storage(target, "target")
    # In-place writes (copy_, the C copy) bump a tensor's version counter: read before and after, outside the
    # timed span, they tell which target parameters received nothing, whatever the method. Inference tensors
    # (made under torch.inference_mode()) keep no counter: a copy of their values stands in, so one written
    # with the values it already held is listed too (over-reported, never missed).
    versions = [(n, p, p.detach().clone() if p.is_inference() else p._version) for n, p in target.named_parameters()]
    buffers = [(n, b, b.detach().clone() if b.is_inference() else b._version) for n, b in _persistent_buffers(target)]
    t0 = time.perf_counter()
    total = _n_parameters(target)  # first: the module objects are still in the cache, the copies evict them
    matching, written, *extra = METHODS[method](source, target)
    seconds = time.perf_counter() - t0
    left, buffers_left = _unwritten(versions), _unwritten(buffers)
    matched = matching.matched
    return TransferReport(
        method=method,
        source=_model_name(source),
        target=_model_name(target),
        value=matching.value,
        n_target_layers=sum(1 for _, t, _ in matching.layers if t is not None),
        n_matched=len(matched),
        n_identical_shape=sum(1 for s, t, _ in matched if s.shape == t.shape),
        elements_overwritten=written,
        fraction_overwritten=written / total if total else 0.0,
        seconds=seconds,
        pairs=matching.pairs,
        details=extra[0] if extra else {},
        tensors_left=left,
        buffers_left=buffers_left,
        target_model=target,
    )


__all__ = ["transfer", "TransferReport", "METHODS", "STRUCTURES", "TransferMethod", "register_method", "copy_matched",
           "clip_windows"]

# The named variants register themselves in dpiat.registry, so importing this module gives all of them.
# Imported after registering "dpiat": METHODS lists the faithful method first (as --method's help does).
from dpiat import struct, variants, wsel  # noqa: E402,F401

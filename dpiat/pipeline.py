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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import torch
from torch import nn

from dpiat.clip import clip_windows, copy_layers
from dpiat.errors import DpiatError, UnknownNameError
from dpiat.inits import register_init
from dpiat.matching import Matching, match
from dpiat.models import as_built_model


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
    # the target that was filled: the module passed in, or the one built from a timm name (not in as_dict)
    target_model: nn.Module | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        d = asdict(replace(self, target_model=None))
        del d["target_model"]
        d["pairs"] = [list(p) for p in self.pairs]
        return d

    def summary(self) -> str:
        return (f"{self.method}: {self.source} -> {self.target}: matched {self.n_matched}/{self.n_target_layers} "
                f"target layers ({self.n_identical_shape} with identical shapes), overwrote "
                f"{100 * self.fraction_overwritten:.1f}% of target parameters, V={self.value:.3f}, "
                f"{1000 * self.seconds:.1f} ms")


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


def _check_has_storage(model: nn.Module, role: str) -> None:
    for p in model.parameters():
        if p.is_meta:
            raise DpiatError(f"the {role} lives on the meta device (shapes only, no values), so there is nothing "
                             f"to {'copy from' if role == 'source' else 'copy into'}. Build it on a real device "
                             "for transfer; match/similarity/rank work on the meta device.")
        return


def copy_matched(matching: Matching) -> int:
    """Centre-clip every matched source layer into its target layer; returns elements written."""
    return copy_layers((s.module, t.module) for s, t, _ in matching.matched)


def _faithful(source: nn.Module, target: nn.Module) -> tuple[Matching, int]:
    matching = match(source, target)
    return matching, copy_matched(matching)


# name -> fn(source, target) -> (Matching, parameter elements written[, details dict]).
TransferMethod = Callable[[nn.Module, nn.Module], tuple]
METHODS: dict[str, TransferMethod] = {}
# name -> the standardization a method matches on, for methods that do not use the faithful one
# (``similarity(a, b, method=name)`` reads it); absent: ``dpiat.standardize``.
STRUCTURES: dict[str, Callable[[nn.Module], object]] = {}


def register_method(name: str, fn: TransferMethod, *, summary: str, structure: Callable | None = None) -> None:
    """Make ``fn`` available as ``transfer(source, target, method=name)`` and as the init method ``name``
    (so the harness runs it with ``init=name``): one registration, one name everywhere.

    ``fn(source, target)`` copies in place and returns ``(matching, elements_written)`` or
    ``(matching, elements_written, details)``; ``details`` (JSON-able) lands in the report. ``structure``:
    the method's own standardization (model -> Block) when it does not match on the faithful one; the
    similarity of ``method=name`` then aligns those structures.
    """
    METHODS[name] = fn
    if structure is not None:
        STRUCTURES[name] = structure
    else:
        STRUCTURES.pop(name, None)
    register_init(name, needs_source=True, summary=summary)(partial(_transfer_init, method=name))


def _transfer_init(target: nn.Module, source: nn.Module | None = None, *, method: str, **options) -> dict:
    if options:
        raise DpiatError(f"init method {method!r} takes no options, got {sorted(options)}")
    return transfer(source, target, method=method).as_dict()


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
    t0 = time.perf_counter()
    total = _n_parameters(target)  # first: the module objects are still in the cache, the copies evict them
    matching, written, *extra = METHODS[method](source, target)
    seconds = time.perf_counter() - t0
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
        target_model=target,
    )


__all__ = ["transfer", "TransferReport", "METHODS", "STRUCTURES", "register_method", "copy_matched", "clip_windows"]

# The named variants register themselves here, so importing the registry gives all of them.
from dpiat import struct, variants  # noqa: E402,F401  (after register_method: they call it)

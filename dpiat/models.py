"""Building models by name (timm), with helpful errors, on any device including ``meta``.

    >>> import dpiat
    >>> m = dpiat.create_model("tf_efficientnet_b0", num_classes=10, device="meta")   # shapes only
    >>> dpiat.create_model("efficientnet_bo")
    Traceback (most recent call last):
    dpiat.errors.UnknownNameError: unknown timm model 'efficientnet_bo'. Did you mean: efficientnet_b0, ...
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from dpiat.errors import DpiatError, UnknownNameError


@lru_cache(maxsize=1)
def timm_model_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def check_model_name(name: str) -> None:
    """Raise UnknownNameError (with close names) unless ``name`` is a timm architecture."""
    if not isinstance(name, str):
        raise DpiatError(f"a model must be a timm name or an nn.Module, got {type(name).__name__}")
    arch = name.split(".", 1)[0]  # "resnet50.a1_in1k" -> "resnet50"
    if arch not in timm_model_names():
        raise UnknownNameError("timm model", arch, timm_model_names(),
                               hint=f"List names with: python -c \"import timm; print(timm.list_models('*{arch[:4]}*'))\"")


class _SkipInitOnMeta(TorchFunctionMode):
    """Skip in-place initialisers on meta tensors: they have no values, and on the meta device torch runs
    them through slow Python decompositions (2-3x the cost of building the module tree)."""

    INIT_OPS = frozenset({"normal_", "uniform_", "zero_", "fill_", "erfinv_", "mul_", "add_", "sub_", "div_",
                          "clamp_", "copy_", "exponential_", "random_", "bernoulli_", "fill_diagonal_"})

    INIT_FNS = frozenset({"normal_", "uniform_", "trunc_normal_", "kaiming_normal_", "kaiming_uniform_",
                          "xavier_normal_", "xavier_uniform_", "orthogonal_", "constant_", "zeros_", "ones_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        # torch.nn.init functions pass their tensor as a keyword; Tensor methods as the first argument
        t = args[0] if args else kwargs.get("tensor")
        if isinstance(t, torch.Tensor) and t.is_meta and (name in self.INIT_OPS or name in self.INIT_FNS):
            return t
        return func(*args, **kwargs)


def create_model(name: str, *, device: str | torch.device | None = None, pretrained: bool = False,
                 **kwargs) -> nn.Module:
    """``timm.create_model(name, **kwargs)``, built directly on ``device`` (e.g. ``"meta"``).

    ``pretrained=True``: with the weights of the tag ``name`` names (``resnet18.a1_in1k``, ``hf-hub:...``; a
    bare architecture: timm's default tag), from the local hub cache or downloaded, or one clear error within
    seconds (:func:`dpiat.pretrained.load_pretrained`). Without it, a tag is ignored: the architecture alone."""
    import timm

    if pretrained and str(device) == "meta":
        raise DpiatError("pretrained weights cannot be loaded on the meta device")
    if pretrained:
        from dpiat.pretrained import load_pretrained

        if not name.startswith("hf-hub:"):  # an unknown architecture: close names, before any tag lookup
            check_model_name(name)
        try:
            model = load_pretrained(name, **kwargs)
        except TypeError as e:
            raise DpiatError(f"timm could not build {name!r} with {kwargs}: {e}") from None
        return model if device is None else model.to(device)
    check_model_name(name)
    try:
        if device is None:
            return timm.create_model(name, **kwargs)
        if str(device) == "meta":
            with torch.device("meta"), _SkipInitOnMeta():
                return timm.create_model(name, pretrained=False, **kwargs)
        with torch.device(device):
            return timm.create_model(name, **kwargs)
    except TypeError as e:  # e.g. an option the architecture does not take
        raise DpiatError(f"timm could not build {name!r} with {kwargs}: {e}") from None


def as_model(model: nn.Module | str, **kwargs) -> nn.Module:
    """A module as it is, or a timm name built on the meta device (enough to match and score)."""
    if isinstance(model, nn.Module):
        return model
    return create_model(model, device="meta", **kwargs)


def as_built_model(model: nn.Module | str, role: str) -> nn.Module:
    """A module as it is, or a timm name built with real (CPU) tensors for a function that copies values.

    A name is built as ``timm.create_model(name)`` builds it: timm's default head and stem (1000 classes, 3
    input channels, the ImageNet layout the names stand for). A source named by a pretrained tag
    (``resnet18.a1_in1k``, ``hf-hub:timm/...``) gets those weights (:func:`dpiat.pretrained.load_pretrained`);
    a bare architecture, and any target, timm's random initialisation. For another head, stem or weights,
    build the module yourself and pass it: ``dpiat.create_model(name, num_classes=10, in_chans=1)``, then
    ``dpiat.load_weights``.
    """
    if isinstance(model, nn.Module):
        return model
    if not isinstance(model, str):
        raise DpiatError(f"the {role} must be a torch.nn.Module or a timm name, got {type(model).__name__}")
    from dpiat.pretrained import is_pretrained_name

    return create_model(model, pretrained=role == "source" and is_pretrained_name(model))

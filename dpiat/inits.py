"""Init methods by name: how a target network gets its starting parameters.

Every way of initialising a target (random, DPIAT transfer, GHN parameter prediction, ...) is a function
registered here under a name. The benchmark harness looks methods up by name only, so adding a method
touches no harness code::

    from dpiat.inits import register_init

    @register_init("zeros", needs_source=False, summary="all parameters zero (a silly example)")
    def zeros_init(target, source=None, **options):
        for p in target.parameters():
            p.data.zero_()
        return {"method": "zeros"}

An init function is called as ``fn(target, source=source_or_None, **options)``; it changes ``target``
in place and returns a JSON-serialisable report (a dict with at least ``"method"``).
Heavy methods are registered lazily as ``"module:function"`` so importing dpiat stays cheap. Transfer
methods (faithful ``dpiat`` and its named variants) register through ``dpiat.registry.register_method``,
which makes each one an init of the same name. The tables live in ``dpiat.registry``, which imports no
method; this module looks them up, and imports ``dpiat.pipeline`` so that every built-in method is there.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dpiat.errors import DpiatError, UnknownNameError
# Every built-in transfer method (faithful dpiat and its variants) registers when pipeline is imported.
from dpiat.pipeline import transfer
from dpiat.registry import INITS as _REGISTRY
from dpiat.registry import InitFn, InitMethod, register_init, register_lazy

__all__ = ["InitFn", "InitMethod", "available_inits", "get_init", "initialize", "register_init", "register_lazy"]


def get_init(name: str) -> InitMethod:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("init method", name, _REGISTRY) from None


def available_inits() -> list[str]:
    return sorted(_REGISTRY)


def initialize(name: str, target: nn.Module, *, source: nn.Module | str | None = None, **options: Any) -> dict:
    """Initialise ``target`` in place with method ``name``; return the method's report. ``source`` may be a
    timm name (built as ``dpiat.transfer`` builds one); ``target`` must be the module to fill."""
    if not isinstance(target, nn.Module):
        raise DpiatError(
            f"initialize() fills the target in place and returns only a report, so it needs the module, got "
            f"{target!r}: build it first, e.g. target = dpiat.create_model({target!r}, num_classes=10), or use "
            f"dpiat.transfer(source, {target!r}), which returns the model it builds as report.target_model"
            if isinstance(target, str) else f"the target must be a torch.nn.Module, got {type(target).__name__}")
    method = get_init(name)
    if method.needs_source and source is None:
        raise DpiatError(f"init method {name!r} needs a trained source network, and none was given.")
    if method.transfer:
        report = _transfer_init(target, source=source, method=name, **options)
    else:
        report = method.resolve()(target, source=source, **options)
    report.setdefault("method", name)
    return report


def _transfer_init(target: nn.Module, source: nn.Module | None = None, *, method: str, **options) -> dict:
    if options:
        raise DpiatError(f"init method {method!r} takes no options, got {sorted(options)}")
    return transfer(source, target, method=method).as_dict()


@register_init("random", needs_source=False, summary="keep the target's default (timm) initialisation")
def random_init(target: nn.Module, source: nn.Module | None = None, **options: Any) -> dict:
    if options:
        raise DpiatError(f"init method 'random' takes no options, got {sorted(options)}")
    n = sum(p.numel() for p in target.parameters())
    return {"method": "random", "n_params": n, "fraction_overwritten": 0.0}


register_lazy("ghn", "dpiat.ghn:ghn_init", needs_source=False,
              summary="GHN-2 parameter prediction (Knyazev et al. 2021); option checkpoint=PATH")

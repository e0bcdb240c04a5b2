"""Where methods are registered by name: init methods and transfer methods.

This module holds the tables and the functions that fill them, and imports none of the methods, so every
method module can register itself here without an import circle::

    from dpiat.registry import register_method

    def my_transfer(source, target):
        matching = dpiat.match(source, target)
        return matching, dpiat.clip.copy_matched(matching)

    register_method("my_transfer", my_transfer, summary="faithful matching, my copy")

Lookups go through the modules that import every built-in method: ``dpiat.inits`` (``get_init``,
``initialize``, ``available_inits``) and ``dpiat.pipeline`` (``METHODS``, ``transfer``). The layering is
one way: ``registry`` <- ``pipeline`` (faithful ``dpiat``) and the variants (``variants``, ``struct``)
<- ``inits``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from dpiat.errors import DpiatError

InitFn = Callable[..., dict]


@dataclass(frozen=True)
class InitMethod:
    name: str
    fn: InitFn | str | None  # a callable, "module:attr" resolved on first use, or None for a transfer method
    needs_source: bool  # True: the method reads a trained source network
    summary: str = ""
    transfer: bool = False  # a transfer method of METHODS: dpiat.inits.initialize runs dpiat.transfer with it

    def resolve(self) -> InitFn:
        if callable(self.fn):
            return self.fn
        if self.transfer:
            raise DpiatError(f"init method {self.name!r} is a transfer method: run it with "
                             f"dpiat.initialize({self.name!r}, target, source=source)")
        module, _, attr = self.fn.partition(":")
        return getattr(importlib.import_module(module), attr)


# init name -> InitMethod (random, ghn, and one per transfer method)
INITS: dict[str, InitMethod] = {}
# transfer name -> fn(source, target) -> (Matching, parameter elements written[, details dict]).
TransferMethod = Callable[..., tuple]
METHODS: dict[str, TransferMethod] = {}
# name -> the standardization a method matches on, for methods that do not use the faithful one
# (``similarity(a, b, method=name)`` reads it); absent: ``dpiat.standardize``.
STRUCTURES: dict[str, Callable[..., object]] = {}


def register_init(name: str, *, needs_source: bool, summary: str = "") -> Callable[[InitFn], InitFn]:
    """Decorator: register ``fn`` as init method ``name``."""

    def deco(fn: InitFn) -> InitFn:
        INITS[name] = InitMethod(name, fn, needs_source, summary or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def register_lazy(name: str, target: str, *, needs_source: bool, summary: str = "") -> None:
    """Register ``name`` -> ``"module:function"``, imported only when the method is used."""
    INITS[name] = InitMethod(name, target, needs_source, summary)


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
    INITS[name] = InitMethod(name, None, True, summary, transfer=True)

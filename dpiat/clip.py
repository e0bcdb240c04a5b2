"""Copy: centre clip of one tensor into another (docs/method.md §5, exactly).

Per dimension: a smaller source is pasted into the centre of the target, a larger source is centre
cropped, equal sizes are copied as they are. Elements of the target outside the window keep their values.

    >>> import torch
    >>> dst = torch.zeros(5, 5)
    >>> clip_copy(torch.ones(3, 3), dst)       # a 3x3 kernel lands in the centre of a 5x5
    9
    >>> dst.int().tolist()[0], dst.int().tolist()[2]
    ([0, 0, 0, 0, 0], [0, 1, 1, 1, 0])

Copies run on one CPU thread (:func:`one_thread`): they are memory-bound and small, and with torch's
default intra-op pool every copy of more than 32k elements is split across the cores. When another
process keeps a core busy, each split copy then waits for a descheduled worker thread, and a b2 -> b0
transfer took 7-10x longer (240-340 ms instead of ~30 ms) for no gain when idle. A copy moves
the same bytes on any number of threads, so the values written are the same.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.autograd.graph import increment_version as _increment_version

_STRIDED = torch.strided


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch CPU ops inside on a single intra-op thread; the previous setting comes back on exit,
    also when the body raises. (``torch.set_num_threads`` is process-wide: other threads of the process
    that run torch ops meanwhile also use one thread.)"""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def clip_windows(a_shape, b_shape) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """The source and target windows of the centre clip of shape ``a_shape`` into ``b_shape``."""
    src, dst = [], []
    for a, b in zip(a_shape, b_shape):
        if a < b:  # centre paste
            off = (b - a) // 2
            src.append(slice(0, a))
            dst.append(slice(off, off + a))
        elif a > b:  # centre crop
            off = (a - b) // 2
            src.append(slice(off, off + b))
            dst.append(slice(0, b))
        else:
            src.append(slice(0, a))
            dst.append(slice(0, b))
    return tuple(src), tuple(dst)


def _clip_copy(src: torch.Tensor, dst: torch.Tensor) -> int:
    """``clip_copy`` without its guards (the caller turned grad mode off and holds one thread). The windows
    are those of :func:`clip_windows`, cut with ``narrow`` (one view per differing dimension, cheaper than
    indexing with a tuple of slices)."""
    a_shape, b_shape = src.shape, dst.shape
    if a_shape != b_shape:  # equal shapes (most pairs) need no window
        if len(a_shape) != len(b_shape):
            return 0  # cannot happen for same-type layers; never broadcast one shape into another
        for dim, (a, b) in enumerate(zip(a_shape, b_shape)):
            if a < b:  # centre paste
                dst = dst.narrow(dim, (b - a) // 2, a)
            elif a > b:  # centre crop
                src = src.narrow(dim, (a - b) // 2, b)
    if src.dtype != dst.dtype or src.device != dst.device:
        src = src.to(device=dst.device, dtype=dst.dtype)
    dst.copy_(src)
    return dst.numel()


def clip_copy(src: torch.Tensor, dst: torch.Tensor) -> int:
    """Centre-clip ``src`` into ``dst`` in place; returns the number of elements written."""
    with torch.no_grad(), one_thread():
        return _clip_copy(src, dst)


_PLAIN: dict[type, bool] = {}  # module class -> defines no class attribute weight / bias


def _weight_and_bias(module) -> tuple:
    """``(getattr(module, "weight", None), getattr(module, "bias", None))``, read from ``_parameters`` in one
    step when both are registered there and neither the class nor the instance defines an attribute of
    that name (then ``nn.Module.__getattr__`` would return exactly these)."""
    d = module.__dict__
    params = d.get("_parameters")
    if params is not None and "weight" in params and "bias" in params and "weight" not in d and "bias" not in d:
        cls = type(module)
        plain = _PLAIN.get(cls)
        if plain is None:
            plain = _PLAIN[cls] = not hasattr(cls, "weight") and not hasattr(cls, "bias")
        if plain:
            return params["weight"], params["bias"]
    return getattr(module, "weight", None), getattr(module, "bias", None)


def _copy_layer(src_module, dst_module) -> int:
    written = 0
    for a, b in zip(_weight_and_bias(src_module), _weight_and_bias(dst_module)):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            written += _clip_copy(a, b)
    return written


try:  # the centre clip as byte copies in C (absent from the pure-Python build and older extensions)
    if os.environ.get("DPIAT_PURE_PYTHON"):
        raise ImportError
    from dpiat._dpcore import clip_copy as _clip_copy_c
except ImportError:
    _clip_copy_c = None

# Tensors the C copy may write through raw addresses: plain (no subclass with __torch_function__), and of a
# real dtype whose copy_ is a byte copy. Everything else (other devices, layouts, strides, dtypes that differ,
# inference tensors) goes through torch's copy_.
_BYTE_DTYPES = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16})
_PLAIN_TENSORS = frozenset({torch.Tensor, torch.nn.Parameter})


_ITEMSIZE = {dtype: torch.empty(0, dtype=dtype).element_size() for dtype in _BYTE_DTYPES}


def _copy_layers_c(pairs) -> int:
    """:func:`copy_layers` with the eligible copies done by one C call (``_dpcore.clip_copy``): the same
    windows, the same bytes, in the same order. Per copy of a contiguous CPU tensor pair of one dtype it
    passes raw addresses and shapes; any other pair flushes what is queued and goes through :func:`_clip_copy`.
    Version counters of the written tensors are bumped as ``copy_`` would."""
    written, spec, dirty = 0, [], []
    Tensor, plain_types, itemsize = torch.Tensor, _PLAIN_TENSORS, _ITEMSIZE
    for src_module, dst_module in pairs:
        for a, b in zip(_weight_and_bias(src_module), _weight_and_bias(dst_module)):
            if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
                continue
            a_shape, b_shape = a.shape, b.shape
            nd = len(a_shape)
            if nd != len(b_shape):
                continue  # as _clip_copy: never broadcast one shape into another
            dtype = a.dtype
            size = itemsize.get(dtype)
            if (size is not None and dtype is b.dtype and type(a) in plain_types and type(b) in plain_types
                    and a.is_cpu and b.is_cpu and a.layout is _STRIDED and b.layout is _STRIDED
                    and a.is_contiguous() and b.is_contiguous() and nd <= 16 and not b.is_inference()):
                spec += (b.data_ptr(), a.data_ptr(), size, nd, *a_shape, *b_shape)
                dirty.append(b)
                continue
            if spec:
                written += _clip_copy_c(array("q", spec))
                spec = []
            written += _clip_copy(a, b)
    if spec:
        written += _clip_copy_c(array("q", spec))
    if dirty:
        _increment_version(dirty)
    return written


def copy_layer(src_module, dst_module) -> int:
    """Copy ``weight`` and ``bias`` (when both sides have them). BatchNorm running stats are NOT copied."""
    with torch.no_grad(), one_thread():
        return _copy_layer(src_module, dst_module)


def copy_layers(pairs) -> int:
    """:func:`copy_layer` for every ``(source module, target module)`` in ``pairs``, in order, under one
    no-grad, one-thread scope; returns the elements written."""
    with torch.no_grad(), one_thread():
        if _clip_copy_c is not None:
            return _copy_layers_c(pairs)
        return sum(_copy_layer(a, b) for a, b in pairs)


def copy_matched(matching) -> int:
    """Centre-clip every matched source layer of a :class:`dpiat.matching.Matching` into its target layer;
    returns elements written."""
    return copy_layers((s.module, t.module) for s, t, _ in matching.matched)


def persistent_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s own persistent buffers (those its state_dict holds: BatchNorm running statistics, ...), by
    name; not its children's. Non-persistent buffers are derived from the config and never transferred."""
    skip = module._non_persistent_buffers_set
    return {k: b for k, b in module._buffers.items() if b is not None and k not in skip}

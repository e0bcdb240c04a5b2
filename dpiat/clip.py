"""Copy: centre clip of one tensor into another (method.md section 5, exactly).

Per dimension: a smaller source is pasted into the centre of the target, a larger source is centre
cropped, equal sizes are copied as they are. Elements of the target outside the window keep their values.

    >>> import torch
    >>> dst = torch.zeros(5, 5)
    >>> clip_copy(torch.ones(3, 3), dst)       # a 3x3 kernel lands in the centre of a 5x5
    9
    >>> dst.int().tolist()[0], dst.int().tolist()[2]
    ([0, 0, 0, 0, 0], [0, 1, 1, 1, 0])
"""

from __future__ import annotations

import torch


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


@torch.no_grad()
def clip_copy(src: torch.Tensor, dst: torch.Tensor) -> int:
    """Centre-clip ``src`` into ``dst`` in place; returns the number of elements written."""
    if src.dim() != dst.dim():
        return 0  # cannot happen for same-type layers; never broadcast one shape into another
    s, d = clip_windows(src.shape, dst.shape)
    window = dst[d]
    window.copy_(src[s].to(device=dst.device, dtype=dst.dtype))
    return window.numel()


def copy_layer(src_module, dst_module) -> int:
    """Copy ``weight`` and ``bias`` (when both sides have them). BatchNorm running stats are NOT copied."""
    written = 0
    for name in ("weight", "bias"):
        a, b = getattr(src_module, name, None), getattr(dst_module, name, None)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            written += clip_copy(a, b)
    return written

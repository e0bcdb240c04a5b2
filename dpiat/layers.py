"""Which modules DPIAT can transfer, and how it scores a pair of them (docs/method.md §1 and §3).

PARAM types are tested with ``isinstance`` (so timm's ``Conv2dSame`` or ``BatchNormAct2d`` count), in
this order; the first type both modules are instances of decides the score. DIM = PARAM minus the
BatchNorms, used only for counting inside standardization.
"""

from __future__ import annotations

from torch import nn

PARAM: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.Linear,
)
BATCHNORM: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
DIM: tuple[type[nn.Module], ...] = tuple(c for c in PARAM if c not in BATCHNORM)


def type_mask(module: nn.Module) -> int:
    """Bit c is set when ``module`` is an instance of ``PARAM[c]``; 0 for anything else."""
    mask = 0
    for c, cls in enumerate(PARAM):
        if isinstance(module, cls):
            mask |= 1 << c
    return mask


def is_param(module: nn.Module) -> bool:
    return isinstance(module, PARAM)


def is_dim(module: nn.Module) -> bool:
    return isinstance(module, DIM)


def weight_shape(module: nn.Module) -> tuple[int, ...] | None:
    """Shape of ``module.weight`` (works on the meta device), or None when it has no weight tensor."""
    w = getattr(module, "weight", None)
    return tuple(w.shape) if w is not None else None


def shape_score(p: tuple[int, ...], q: tuple[int, ...]) -> float:
    """Product over zip(p, q) of min(p_d / q_d, q_d / p_d), multiplied in dimension order.

    >>> shape_score((8, 1, 3, 3), (8, 1, 5, 5))   # 3x3 vs 5x5 depthwise kernel: (3/5)**2
    0.36
    """
    r = 1.0
    for a, b in zip(p, q):
        if a == 0 or b == 0:  # an empty dimension shares nothing (the reference would divide by zero)
            return 0.0
        r *= min(a / b, b / a)
    return r

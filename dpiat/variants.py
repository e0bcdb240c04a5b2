"""Named variants of DPIAT: each changes one stated thing of the faithful method and is measured against it.

The faithful ``dpiat`` (``dpiat.pipeline``) is never changed; every variant below is registered under a
name of its own with :func:`dpiat.pipeline.register_method`, which makes it a transfer method
(``dpiat.transfer(src, dst, method=NAME)``, the report names it) and a harness init (``init=NAME``).
What each one changes, why, and the derivations are in ``docs/method.md`` ("Named variants"); what they
are worth is measured by ``experiment=variants`` (``results/variants/``).

    >>> import timm, torch, dpiat
    >>> src = timm.create_model("tinynet_e").eval()
    >>> dst = timm.create_model("tinynet_e").eval()
    >>> report = dpiat.transfer(src, dst, method="dpiat_bn")     # a network into a fresh copy of itself
    >>> x = torch.randn(2, 3, 64, 64)
    >>> torch.equal(src(x), dst(x))                                # running statistics came along
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dpiat.clip import clip_copy, clip_windows, copy_layer, copy_matched
from dpiat.layers import BATCHNORM, type_mask
from dpiat.matching import Matching, match
from dpiat.registry import register_method
from dpiat.structure import Layer


# ---------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------


def has_running_stats(module: nn.Module) -> bool:
    return (isinstance(module, BATCHNORM) and getattr(module, "running_mean", None) is not None
            and getattr(module, "running_var", None) is not None)


@torch.no_grad()
def copy_bn_statistics(src: nn.Module, dst: nn.Module) -> bool:
    """Centre-clip BatchNorm running mean and variance (the rule of the affine parameters) and take the
    source's batch counter; False when either side keeps no running statistics."""
    if not (has_running_stats(src) and has_running_stats(dst)):
        return False
    clip_copy(src.running_mean, dst.running_mean)
    clip_copy(src.running_var, dst.running_var)
    if getattr(src, "num_batches_tracked", None) is not None and getattr(dst, "num_batches_tracked", None) is not None:
        dst.num_batches_tracked.copy_(src.num_batches_tracked)
    return True


FAN_IN_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # weight = (out, in/groups, *kernel)


@torch.no_grad()
def rescale_rows(src: nn.Module, dst: nn.Module) -> list[float]:
    """After a centre clip of ``src.weight`` into ``dst.weight``, give every target output unit that
    received source values the squared norm (energy) of its whole source row; returns the factors applied.

    Why: for inputs of equal variance and no correlation, an output unit's variance is the sum of its
    squared weights, so a row keeps the activation scale the trained source produced (and that the
    layers after it were trained on) exactly when its energy is kept. A crop drops part of the row's
    energy (scale > 1); a paste adds the target's random remainder to it (scale < 1). Rows whose fan-in
    is unchanged are exact copies and are left alone; so are layers without a fan-in (BatchNorm) and
    ConvTranspose, whose weight layout puts the input channels first.
    """
    if not (isinstance(src, FAN_IN_LAYERS) and isinstance(dst, FAN_IN_LAYERS)):
        return []
    a, b = src.weight, dst.weight
    if a.dim() != b.dim() or a.dim() < 2 or a.shape[1:] == b.shape[1:]:
        return []
    s, d = clip_windows(a.shape, b.shape)
    source_rows, rows = a[s[0]], b[d[0]]  # the output units that correspond, all of their fan-in
    source_energy = source_rows.detach().flatten(1).double().pow(2).sum(1)
    target_energy = rows.detach().flatten(1).double().pow(2).sum(1)
    ok = (source_energy > 0) & (target_energy > 0)
    factor = torch.where(ok, (source_energy / target_energy.clamp_min(1e-300)).sqrt(), torch.ones_like(source_energy))
    rows.mul_(factor.to(rows.dtype).view(-1, *([1] * (rows.dim() - 1))))
    return factor[ok].tolist()


GAMMA_FLOOR = 0.25  # a copied BatchNorm scale is kept at >= this fraction of the target's own (RMS)


@torch.no_grad()
def floor_gamma(dst: nn.Module, init_rms: float, floor: float = GAMMA_FLOOR) -> float | None:
    """Scale a BatchNorm's ``weight`` (gamma) up to RMS ``floor * init_rms`` when the copy left it below;
    returns the factor applied, or None when it was left alone.

    Why: Adam moves every parameter by about the learning rate per step, whatever its size. A scale copied at
    ~0.03 (timm ResNets initialise the last BatchNorm scale of every residual branch to zero, and training
    leaves it small) changes by >10% per step on the target's main path, so the activations after it change
    scale faster than BatchNorm's running statistics (a ~10-step memory) follow, and in ``eval()`` mode the
    network collapses to a constant output for a whole epoch (README, "Which method to use").
    """
    w = getattr(dst, "weight", None)
    if not isinstance(dst, BATCHNORM) or not isinstance(w, torch.Tensor) or init_rms <= 0:
        return None
    rms = float(w.detach().double().pow(2).mean().sqrt())
    if rms == 0 or rms >= floor * init_rms:
        return None
    factor = floor * init_rms / rms
    w.mul_(factor)
    return factor


def _select_indices(a: int, b: int) -> torch.Tensor:
    """``b`` evenly spaced indices out of ``a`` > ``b``: floor(i * a / b), i = 0..b-1 (= i * a // b when b
    divides a, the published rule; the floor form stays in range when it does not)."""
    return torch.arange(b, dtype=torch.long) * a // b


@torch.no_grad()
def select_copy(src: torch.Tensor, dst: torch.Tensor, *, channel_dims: int = 2) -> int:
    """Weight selection (Xu et al., "Initializing Models with Larger Ones", 2024) in place of the centre
    crop: along the first ``channel_dims`` dimensions a larger source gives evenly spaced elements; along
    the others (kernel rows and columns, where the centre is meaningful) the centre crop is kept; a
    smaller source is centre-pasted as in the faithful copy. Returns the elements written."""
    if src.dim() != dst.dim():
        return 0
    sub = src
    window = []
    for dim, (a, b) in enumerate(zip(src.shape, dst.shape)):
        if a > b:
            idx = _select_indices(a, b) if dim < channel_dims else torch.arange((a - b) // 2, (a - b) // 2 + b)
            sub = sub.index_select(dim, idx.to(src.device))
            window.append(slice(0, b))
        elif a < b:
            off = (b - a) // 2
            window.append(slice(off, off + a))
        else:
            window.append(slice(0, b))
    view = dst[tuple(window)]
    view.copy_(sub.to(device=dst.device, dtype=dst.dtype))
    return view.numel()


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's own parameters and buffers (not its children's), by name."""
    out = {k: v for k, v in module.named_parameters(recurse=False) if v is not None}
    out.update({k: v for k, v in module.named_buffers(recurse=False) if v is not None})
    return out


# ---------------------------------------------------------------------------------------------------------
# The variants
# ---------------------------------------------------------------------------------------------------------


def dpiat_bn(source: nn.Module, target: nn.Module):
    """Faithful matching and copy, plus BatchNorm running statistics by the same centre rule."""
    matching = match(source, target)
    written = copy_matched(matching)
    n = sum(copy_bn_statistics(s.module, t.module) for s, t, _ in matching.matched)
    return matching, written, {"bn_statistics_copied": n}


def dpiat_scaled(source: nn.Module, target: nn.Module):
    """Faithful matching and copy, then each copied row rescaled to its source row's energy."""
    matching = match(source, target)
    written = copy_matched(matching)
    factors: list[float] = []
    for s, t, _ in matching.matched:
        factors += rescale_rows(s.module, t.module)
    return matching, written, _factor_summary(factors)


def dpiat_scaled_gammafloor(source: nn.Module, target: nn.Module):
    """``dpiat_scaled``, and copied BatchNorm scales far below the target's own floored (:func:`floor_gamma`)."""
    matching = match(source, target)
    init_rms = {id(t.module): float(t.module.weight.detach().double().pow(2).mean().sqrt())
                for _, t, _ in matching.matched if isinstance(t.module, BATCHNORM) and t.module.weight is not None}
    written = copy_matched(matching)
    factors, floored = [], []
    for s, t, _ in matching.matched:
        factors += rescale_rows(s.module, t.module)
        if id(t.module) in init_rms and floor_gamma(t.module, init_rms[id(t.module)]) is not None:
            floored.append(t.name)
    return matching, written, {**_factor_summary(factors), "gammas_floored": floored}


def dpiat_wsel(source: nn.Module, target: nn.Module):
    """Faithful matching; tensors copied by weight selection (evenly spaced channels) instead of the centre
    crop, and, as the published method copies every state-dict entry, BatchNorm running statistics too."""
    matching = match(source, target)
    written = n_stats = 0
    with torch.no_grad():
        for s, t, _ in matching.matched:
            for name in ("weight", "bias"):
                a, b = getattr(s.module, name, None), getattr(t.module, name, None)
                if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                    written += select_copy(a, b)
            if has_running_stats(s.module) and has_running_stats(t.module):
                select_copy(s.module.running_mean, t.module.running_mean)
                select_copy(s.module.running_var, t.module.running_var)
                t.module.num_batches_tracked.copy_(s.module.num_batches_tracked)
                n_stats += 1
    return matching, written, {"bn_statistics_copied": n_stats}


def dpiat_names(source: nn.Module, target: nn.Module):
    """Exact names first: a target layer whose name exists in the source with the same parameter and buffer
    names and shapes gets that module's tensors as they are (what ``load_state_dict(strict=False)`` does,
    running statistics included); every other target layer gets its faithful DP partner."""
    matching = match(source, target)
    by_name = dict(source.named_modules())
    layers, n_exact, written = [], 0, 0
    with torch.no_grad():
        for s, t, score in matching.layers:
            same = by_name.get(t.name) if t is not None else None
            if same is not None and type_mask(same) and _same_tensors(same, t.module):
                own = _tensors(t.module)
                for key, value in _tensors(same).items():
                    own[key].copy_(value)
                written += sum(p.numel() for p in t.module.parameters(recurse=False))
                layers.append((Layer(t.name, same), t, 1.0))
                n_exact += 1
            else:
                if s is not None and t is not None:
                    written += copy_layer(s.module, t.module)
                layers.append((s, t, score))
    result = Matching(matching.value, layers, matching.source_blocks, matching.target_blocks)
    return result, written, {"exact_name_matches": n_exact}


def _same_tensors(a: nn.Module, b: nn.Module) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return set(ta) == set(tb) and all(ta[k].shape == tb[k].shape for k in ta)


def _factor_summary(factors: list[float]) -> dict:
    if not factors:
        return {"rows_rescaled": 0}
    f = sorted(factors)
    return {"rows_rescaled": len(f), "factor_min": f[0], "factor_median": f[len(f) // 2], "factor_max": f[-1],
            "factor_geomean": math.exp(sum(math.log(x) for x in f) / len(f))}


register_method("dpiat_bn", dpiat_bn, summary="faithful DPIAT + BatchNorm running statistics (centre rule)")
register_method("dpiat_scaled", dpiat_scaled, summary="faithful DPIAT + each copied row rescaled to its source row's energy")
register_method("dpiat_scaled_gammafloor", dpiat_scaled_gammafloor,
                summary="dpiat_scaled + copied BatchNorm scales floored at 1/4 of the target's own")
register_method("dpiat_wsel", dpiat_wsel, summary="DPIAT matching + weight selection (evenly spaced channels, Xu et al. 2024)")
register_method("dpiat_names", dpiat_names, summary="same name and shapes copied as they are, DPIAT for the rest")

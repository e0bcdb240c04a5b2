"""Weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024), the published rule exactly.

``dpiat.transfer(src, dst, method="weight_selection")`` and ``init=weight_selection``: a smaller network of the
same family takes the larger one's tensors by state-dict key. Every target state-dict entry (parameters *and*
buffers: BatchNorm running statistics and its batch counter travel with the weights) whose key exists in the
source with the same number of dimensions and no smaller dimension becomes the source entry after uniform element
selection: along each dimension, with source size n and target size m, the indices 0, n/m, 2n/m, ... when m
divides n, else ``round(linspace(0, n - 1, m))`` (torch's float32 ``linspace`` and round-half-to-even ``round``,
as the authors' code computes it). Every other entry keeps its init and is named: parameters in
``report.tensors_left``, every entry (buffers included) in ``report.details["entries_left"]``. There is no
matching (no DP): keys decide, so only networks that share a naming scheme (one family, one codebase) share
anything; a transfer that writes less than half of the target's parameters warns.

    >>> import dpiat
    >>> src, dst = dpiat.create_model("test_efficientnet"), dpiat.create_model("test_efficientnet")
    >>> r = dpiat.transfer(src, dst, method="weight_selection")
    >>> r.fraction_overwritten, r.details["entries_left"]
    (1.0, [])

DPIAT's own variant with this selection is ``dpiat_wsel`` (:mod:`dpiat.variants`): DPIAT's matching, then the
selection; this module is the published method, which matches by name.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from dpiat.matching import Matching
from dpiat.registry import register_method
from dpiat.structure import Layer

HALF = 0.5  # a transfer writing less than this fraction of the target's parameter elements warns


def uniform_indices(n: int, m: int) -> torch.Tensor:
    """The ``m`` indices out of ``n`` >= ``m`` that uniform element selection keeps along one dimension.

    >>> uniform_indices(8, 4).tolist(), uniform_indices(5, 3).tolist(), uniform_indices(7, 4).tolist()
    ([0, 2, 4, 6], [0, 2, 4], [0, 2, 4, 6])
    >>> uniform_indices(6, 4).tolist()   # linspace(0, 5, 4) = 0, 1.67, 3.33, 5
    [0, 2, 3, 5]
    """
    if not 0 < m <= n:
        raise ValueError(f"uniform selection needs 0 < m <= n, got n={n}, m={m}")
    if n % m == 0:
        return torch.arange(m, dtype=torch.long) * (n // m)
    return torch.round(torch.linspace(0, n - 1, m)).long()


def selectable(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> bool:
    """Same number of dimensions and no target dimension larger than the source's."""
    return len(src_shape) == len(dst_shape) and all(a >= b for a, b in zip(src_shape, dst_shape))


def select_elements(src: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``src`` reduced to ``shape`` by :func:`uniform_indices` along every dimension (a 0-d tensor as it is)."""
    out = src
    for dim, (n, m) in enumerate(zip(src.shape, shape)):
        if n != m:
            out = out.index_select(dim, uniform_indices(n, m).to(src.device))
    return out


def _owner(name: str) -> str:
    return name.rpartition(".")[0]


@torch.no_grad()
def weight_selection(source: nn.Module, target: nn.Module):
    """Copy by key with uniform element selection (the module docstring's rule), in place.

    Returns ``(matching, parameter elements written, details)`` as every transfer method does: the
    matching pairs each target module with the source module of the same name where one of its entries was
    written (score 1; ``value`` is NaN, there is no DP); ``details``: the entries written and left."""
    src_entries = source.state_dict()
    dst_entries = target.state_dict()
    param_names = {n for n, _ in target.named_parameters()}
    written_params, written_keys, left, why = 0, [], [], {}
    for key, dst in dst_entries.items():
        src = src_entries.get(key)
        if src is None:
            left.append(key)
            why[key] = "no source entry of that name"
            continue
        if not selectable(tuple(src.shape), tuple(dst.shape)):
            left.append(key)
            why[key] = f"source {tuple(src.shape)} cannot be selected down to {tuple(dst.shape)}"
            continue
        dst.copy_(select_elements(src, tuple(dst.shape)).to(device=dst.device, dtype=dst.dtype))
        written_keys.append(key)
        if key in param_names:
            written_params += dst.numel()
    src_modules, dst_modules = dict(source.named_modules()), dict(target.named_modules())
    touched = list(dict.fromkeys(_owner(k) for k in written_keys))
    owners = list(dict.fromkeys(_owner(k) for k in dst_entries))
    layers = [(Layer(o, src_modules[o]) if o in touched and o in src_modules else None,
               Layer(o, dst_modules[o]), 1.0 if o in touched else 0.0) for o in owners if o in dst_modules]
    matching = Matching(value=float("nan"), layers=layers, source_blocks=None, target_blocks=None)
    total = sum(p.numel() for p in target.parameters())
    if total and written_params < HALF * total:
        warnings.warn(f"weight_selection wrote {written_params:,} of the target's {total:,} parameter elements "
                      f"({100 * written_params / total:.0f}%): it matches state-dict keys, so it carries little between "
                      "networks of different families or codebases (faithful dpiat or dpiat_struct match by "
                      "structure); report.details['entries_left'] names what kept its init", UserWarning,
                      stacklevel=2)
    details = {"entries_written": len(written_keys), "entries_total": len(dst_entries), "entries_left": left,
               "why_left": why}
    return matching, written_params, details


register_method("weight_selection", weight_selection,
                summary="weight selection (Xu et al. 2024): state-dict entries by key, uniform element selection")

"""Matching: which source layer feeds which target layer (standardize + align, no copying).

    >>> import timm, torch, dpiat
    >>> with torch.device("meta"):                       # shapes only, no memory
    ...     src, dst = timm.create_model("tf_efficientnet_b2"), timm.create_model("tf_efficientnet_b0")
    >>> m = dpiat.match(src, dst)
    >>> m.pairs[0], round(m.value, 3)
    (('conv_stem', 'conv_stem'), 117.554)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dpiat.alignment import Aligner
from dpiat.errors import NoTransferableLayersError
from dpiat.models import as_model
from dpiat.structure import Block, Layer, standardize


@dataclass
class Matching:
    """The result of aligning a source with a target.

    ``pairs``: ``(source_name or None, target_name or None)`` in target order, for every transferable
    target layer and every unused source layer; ``value``: the DP value V(source -> target);
    ``layers``: the same pairs as ``(source Layer | None, target Layer | None, score)``."""

    value: float
    layers: list[tuple[Layer | None, Layer | None, float]]
    source_blocks: Block
    target_blocks: Block

    @property
    def pairs(self) -> list[tuple[str | None, str | None]]:
        return [(s.name if s else None, t.name if t else None) for s, t, _ in self.layers]

    @property
    def matched(self) -> list[tuple[Layer, Layer, float]]:
        return [(s, t, sc) for s, t, sc in self.layers if s is not None and t is not None]

    def table(self) -> str:
        """A readable table: target layer and shape <- source layer and shape, score."""
        rows = [("target layer", "shape", "", "source layer", "shape", "score")]
        for s, t, sc in self.layers:
            rows.append((
                t.name if t else "", _shape(t), "<-" if s and t else "", s.name if s else "(unmatched)" if t else "",
                _shape(s), f"{sc:.4f}" if s and t else ("unused source" if s else "-"),
            ))
        widths = [max(len(r[c]) for r in rows) for c in range(6)]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        n_t = sum(1 for _, t, _ in self.layers if t)
        lines.append(f"V = {self.value:.4f}; {len(self.matched)} of {n_t} target layers matched")
        return "\n".join(lines)


def _shape(layer: Layer | None) -> str:
    if layer is None:
        return ""
    return f"{type(layer.module).__name__}({'x'.join(map(str, layer.shape))})"


def check_transferable(blocks: Block, role: str, model: nn.Module) -> int:
    n = sum(1 for leaf in blocks.layers() if leaf.transferable)
    if n == 0:
        raise NoTransferableLayersError(
            f"the {role} ({type(model).__name__}) has no layer DPIAT can transfer: it needs Conv*, "
            "ConvTranspose*, BatchNorm* or Linear modules (LayerNorm, attention and bare nn.Parameter are "
            "not transferable by the faithful method).")
    return n


def match(source: nn.Module | str, target: nn.Module | str, *, aligner: Aligner | None = None,
          structure=standardize, check=check_transferable) -> Matching:
    """Align ``source`` to ``target`` (docs/method.md §2-4). Works on the meta device; a timm name is built
    there (timm's default 1000 classes and 3 channels: only shapes are read). ``structure`` and ``check``: the
    standardization and its transferability check (a method's own, e.g. dpiat_struct's; see dpiat.ranking.match)."""
    source, target = as_model(source), as_model(target)
    a, b = structure(source), structure(target)
    check(a, "source", source)
    check(b, "target", target)
    aligner = aligner or Aligner()
    value = aligner.align(a, b).value
    return Matching(value, aligner.leaf_pairs(a, b), a, b)

"""The general rule of ``dpiat_struct``: a target parameter that no leaf of the DP wrote is matched with its
module, and copied by the centre rule (whole where shapes agree), or by the rule of its layout.

The DP (dpiat/struct.py) matches layers; what it leaves unwritten is every parameter no leaf kind claims (a
layer scale under another name, an attention's ``temperature``, ``q_bias``/``v_bias``, a GRN, an LSTM, a
CondConv's experts, numbered tokens, ...) and any norm whose DP position was lost to the block rule. For each
such target parameter ``M.attr``, the source module ``M'`` that corresponds to ``M`` is read from the DP's own
pairs (:class:`Correspondence`), and ``M'.attr`` (the same name) is copied into ``M.attr``.

    >>> import torch, timm, dpiat
    >>> src = timm.create_model("resmlp_12_224", img_size=32, num_classes=10)
    >>> dst = timm.create_model("resmlp_12_224", img_size=32, num_classes=10)
    >>> report = dpiat.transfer(src, dst, method="dpiat_struct")       # ResMLP's Affine and ls1/ls2 too
    >>> report.tensors_left, torch.equal(src.blocks[3].norm1.alpha, dst.blocks[3].norm1.alpha)
    ([], True)

Copy rules by layout (all of them the plain centre clip when the two shapes agree, so an identity transfer
copies every tensor whole):

- an LSTM / GRU's weights and biases: rows read as (gates, hidden), so gate i of the target comes from gate i
  of the source (as q, k, v of a fused projection);
- a CondConv's experts: each expert's flat kernel read as (out, in/groups, kh, kw);
- a parameter of an attention module with a known head count whose size is heads x head_dim on both sides
  (``q_bias``, ``v_bias``): read as (heads, head_dim), as the rows of q;
- bias tables: ``attention_biases`` ``(heads, r*r)`` (LeViT, EfficientFormer, TinyViT, EfficientViT-MSRA) and
  3-D ``relative_position_bias_table`` ``(heads, 2h-1, 2w-1)`` (MaxViT) resampled per head as an image;
  1-D relative tables ``(2s-1, dim)`` (MViTv2 ``rel_pos_h/w``, BoT/HaloNet ``height_rel``/``width_rel``)
  resampled along the offsets;
- position grids under other names (``pos_embed_0``, ``pos_embed1``, ``patch_pos``, ``pixel_pos``,
  ``pos_embed_win``, ...): the position-embedding rule of dpiat/struct.py;
- anything else: the centre rule.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from dpiat.clip import _clip_copy

HEAD_ATTRS = ("num_heads", "n_head", "heads", "n_heads", "num_attention_heads", "nhead")


def base_name(leaf_name: str) -> str:
    """``blocks.0.attn.qkv[q]`` -> ``blocks.0.attn.qkv``: the module a leaf belongs to."""
    return leaf_name.split("[", 1)[0]


def head_count(module: nn.Module) -> int | None:
    """The head count an attention module declares under one of the usual names (``num_heads``, nanoGPT's
    ``n_head``, ``heads``, ...); None when it declares none."""
    for attr in HEAD_ATTRS:
        h = getattr(module, attr, None)
        if isinstance(h, int) and not isinstance(h, bool) and h > 0:
            return h
    return None


class Correspondence:
    """Which source module corresponds to a target module, read from the DP's matched leaf pairs.

    For target module ``M``: the matched target leaves under ``M`` vote; a leaf at path ``M.r`` matched to
    source leaf ``X.r`` (the same path below) votes for ``X``; the most voted wins (the first on ties). With
    no such vote, the deepest common ancestor of the partners. With no matched leaf under ``M`` at all, the
    source counterpart of ``M``'s parent, then its child of the same name, or else, among the parents' direct
    children of ``M``'s kind (a norm, or the same class), the one at the same position when both parents have
    as many (``ln_1`` <- ``norm1`` in a block of a user's own transformer)."""

    def __init__(self, pairs, source_modules: dict, target_modules: dict, norms: tuple):
        self.pairs = [(base_name(s), base_name(t)) for s, t in pairs]
        self.source, self.target, self.norms = source_modules, target_modules, norms
        self.cache: dict[str, str | None] = {"": ""}

    def __call__(self, name: str) -> str | None:
        if name in self.cache:
            return self.cache[name]
        result = self._vote(name)
        if result is None:
            parent, _, last = name.rpartition(".")
            p = self(parent)
            if p is not None:
                result = self._child(parent, p, last)
        self.cache[name] = result
        return result

    def _vote(self, name: str) -> str | None:
        prefix = name + "."
        same_path: Counter = Counter()  # partner X.r for leaf M.r: X
        same_depth: Counter = Counter()  # partner x1...xk.y1..yd for leaf M.r, r of d parts: x1...xk
        for s, t in self.pairs:
            if t == name:
                rel = ""
            elif t.startswith(prefix):
                rel = t[len(prefix):]
            else:
                continue
            if not rel:
                same_path[s] += 1
                continue
            if s == rel:
                same_path[""] += 1
            elif s.endswith("." + rel):
                same_path[s[:-len(rel) - 1]] += 1
            parts, depth = s.split("."), rel.count(".") + 1
            if len(parts) >= depth:
                same_depth[".".join(parts[:len(parts) - depth])] += 1
        for votes in (same_path, same_depth):
            for cand, _ in votes.most_common():
                if cand in self.source:
                    return cand
        return None

    def _child(self, parent: str, source_parent: str, last: str) -> str | None:
        cand = f"{source_parent}.{last}" if source_parent else last
        if cand in self.source:
            return cand
        t_parent, s_parent = self.target.get(parent), self.source.get(source_parent)
        mine = self.target.get(f"{parent}.{last}" if parent else last)
        if t_parent is None or s_parent is None or mine is None:
            return None
        same = (lambda m: isinstance(m, self.norms)) if isinstance(mine, self.norms) else (lambda m: type(m) is type(mine))
        t_kids = [n for n, m in t_parent.named_children() if same(m)]
        s_kids = [n for n, m in s_parent.named_children() if same(m)]
        if len(t_kids) != len(s_kids) or last not in t_kids:
            return None
        k = s_kids[t_kids.index(last)]
        return f"{source_parent}.{k}" if source_parent else k


# ---------------------------------------------------------------------------------------------------------
# Copy rules by layout
# ---------------------------------------------------------------------------------------------------------


def factored_clip(a: torch.Tensor, b: torch.Tensor, fa: dict, fb: dict) -> int:
    """Centre-clip ``a`` into ``b`` where a dimension factored on both sides (into as many axes) is clipped
    axis by axis: rows (heads, head_dim) keep whole heads by head index and the centre of each head."""
    if a.dim() != b.dim():
        return 0
    a_shape, b_shape = [], []
    for d in range(a.dim()):
        x, y = fa.get(d), fb.get(d)
        if x and y and len(x) == len(y) and math.prod(x) == a.shape[d] and math.prod(y) == b.shape[d]:
            a_shape += x
            b_shape += y
        else:
            a_shape.append(a.shape[d])
            b_shape.append(b.shape[d])
    if len(a_shape) == a.dim():
        return _clip_copy(a, b)
    av = a.reshape(a_shape)
    try:
        bv = b.view(b_shape)
    except RuntimeError:  # a target that is not viewable this way: copy into a contiguous copy, then back
        tmp = b.contiguous().view(b_shape)
        n = _clip_copy(av, tmp)
        b.copy_(tmp.view(b.shape))
        return n
    return _clip_copy(av, bv)


def interpolate(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``x`` [1, C, *grid] resampled to ``size`` (bicubic in 2-D, linear in 1-D, antialiased when shrinking)."""
    shrink = any(s < g for s, g in zip(size, x.shape[2:]))
    mode = "bicubic" if len(size) == 2 else "linear"
    y = F.interpolate(x.float(), size=size, mode=mode, align_corners=False, antialias=shrink and len(size) == 2)
    return y.to(x.dtype)


def copy_pos_embed(a: torch.Tensor, b: torch.Tensor, ga, gb) -> tuple[int, bool]:
    """Position embedding: the grid resampled to the target's, prefix tokens (class, registers) taken from
    the front, the width centre-clipped. ``ga``/``gb``: (prefix tokens, (h, w)), or ("nhwc" / "nchw", (h, w))
    for a 4-D grid. Returns (elements written, resampled?)."""
    if ga is None or gb is None or isinstance(ga[0], str) != isinstance(gb[0], str) or \
            (isinstance(ga[0], str) and ga[0] != gb[0]):
        return _clip_copy(a, b), False
    if isinstance(ga[0], str):  # [1, h, w, dim] or [1, dim, h, w]
        image = a.permute(0, 3, 1, 2) if ga[0] == "nhwc" else a
        if ga[1] != gb[1]:
            image = interpolate(image, gb[1])
        return _clip_copy(image.permute(0, 2, 3, 1) if ga[0] == "nhwc" else image, b), ga[1] != gb[1]
    (pa, (ha, wa)), (pb, (hb, wb)) = ga, gb
    written = 0
    n = min(pa, pb)
    if n:
        written += _clip_copy(a[:, :n], b[:, :n])
    grid = a[:, pa:]
    if (ha, wa) != (hb, wb):
        image = grid.reshape(1, ha, wa, a.shape[-1]).permute(0, 3, 1, 2)
        grid = interpolate(image, (hb, wb)).permute(0, 2, 3, 1).reshape(1, hb * wb, a.shape[-1])
    written += _clip_copy(grid, b[:, pb:])
    return written, (ha, wa) != (hb, wb)


def copy_rel_bias(a: torch.Tensor, b: torch.Tensor, ga, gb) -> tuple[int, bool]:
    """Swin's relative position bias table [(2Wh-1)*(2Ww-1), heads]: resampled to the target's window, then
    the heads centre-clipped (the heads the target's qkv keeps)."""
    if ga is None or gb is None or ga == gb:
        return _clip_copy(a, b), False
    image = a.t().reshape(1, a.shape[1], ga[0], ga[1])
    table = interpolate(image, gb).reshape(a.shape[1], gb[0] * gb[1]).t()
    return _clip_copy(table, b), True


def _square(n: int) -> int | None:
    r = math.isqrt(n)
    return r if r > 0 and r * r == n else None


def layout4(p: torch.Tensor) -> str | None:
    """``"nchw"`` or ``"nhwc"`` for a 4-D position grid [1, C, h, w] / [1, h, w, C], read from which two
    dimensions are equal (square grids, as timm's are); None when that does not tell."""
    _, d1, d2, d3 = p.shape
    if d2 == d3 and d1 != d2:
        return "nchw"
    if d1 == d2 and d2 != d3:
        return "nhwc"
    return None


def grid4(p: torch.Tensor):
    """(layout, (h, w)) of a 4-D position grid, or None (see :func:`layout4`)."""
    layout = layout4(p)
    if layout is None:
        return None
    return layout, (tuple(p.shape[2:4]) if layout == "nchw" else tuple(p.shape[1:3]))


def copy_grid4(a: torch.Tensor, b: torch.Tensor) -> tuple[int, bool]:
    """A 4-D position grid: the spatial grid resampled to the target's, the channels centre-clipped."""
    return copy_pos_embed(a, b, grid4(a), grid4(b))


def copy_tokens_grid(a: torch.Tensor, b: torch.Tensor) -> tuple[int, bool]:
    """A 3-D position embedding [1, prefix + h*w, C] whose grid is square on both sides (a class token's row
    in front when the count is one more than a square): the grid resampled, the prefix taken from the front."""
    def grid(p):
        for prefix in (0, 1):
            side = _square(p.shape[1] - prefix)
            if side:
                return prefix, (side, side)
        return None

    ga, gb = grid(a), grid(b)
    if ga is None or gb is None or ga[0] != gb[0]:
        return _clip_copy(a, b), False
    return copy_pos_embed(a, b, ga, gb)


def copy_heads_table(a: torch.Tensor, b: torch.Tensor) -> tuple[int, bool]:
    """``attention_biases`` (heads, r*r) or a 3-D relative table (heads, H, W): one image per head, resampled
    to the target's, then the heads centre-clipped (the heads qkv keeps)."""
    if a.dim() == 2:
        ra, rb = _square(a.shape[1]), _square(b.shape[1])
        if ra is None or rb is None or ra == rb:
            return _clip_copy(a, b), False
        image = interpolate(a.reshape(1, a.shape[0], ra, ra), (rb, rb)).reshape(a.shape[0], rb * rb)
        return _clip_copy(image, b), True
    if a.dim() == 3 and a.shape[1:] != b.shape[1:]:
        image = interpolate(a.unsqueeze(0), tuple(b.shape[1:]))[0]
        return _clip_copy(image, b), True
    return _clip_copy(a, b), False


def copy_offsets_table(a: torch.Tensor, b: torch.Tensor) -> tuple[int, bool]:
    """A 1-D relative table (2s-1, dim): resampled along the offsets, then the width centre-clipped."""
    if a.dim() != 2 or a.shape[0] == b.shape[0]:
        return _clip_copy(a, b), False
    line = interpolate(a.t().unsqueeze(0), (b.shape[0],))[0].t()
    return _clip_copy(line, b), True


OFFSET_TABLES = ("rel_pos_h", "rel_pos_w", "rel_pos_t", "height_rel", "width_rel")


def _rnn_factors(module: nn.Module) -> dict:
    gates = {"LSTM": 4, "GRU": 3}.get(getattr(module, "mode", ""), 1)
    return {0: (gates, module.hidden_size)}


def copy_parameter(src: nn.Module, dst: nn.Module, attr: str, a: torch.Tensor, b: torch.Tensor,
                   src_heads, dst_heads) -> tuple[int, bool, str]:
    """Copy source ``src.attr`` (``a``) into target ``dst.attr`` (``b``) by the rule of its layout; returns
    (elements written, resampled?, rule name). ``*_heads``: (heads, head_dim) of the owning attention, or None."""
    if a.dim() != b.dim():
        return 0, False, "rank differs"
    if isinstance(src, nn.RNNBase) and isinstance(dst, nn.RNNBase) and src.mode == dst.mode:
        return factored_clip(a, b, _rnn_factors(src), _rnn_factors(dst)), False, "gates"
    ws, wd = getattr(src, "weight_shape", None), getattr(dst, "weight_shape", None)
    if attr == "weight" and isinstance(getattr(src, "num_experts", None), int) and ws and wd and a.dim() == 2:
        return factored_clip(a, b, {1: tuple(ws)}, {1: tuple(wd)}), False, "experts"
    if a.shape == b.shape:
        return _clip_copy(a, b), False, "whole"
    if attr == "attention_biases" or (attr == "relative_position_bias_table" and a.dim() == 3):
        n, r = copy_heads_table(a, b)
        return n, r, "bias table"
    if attr in OFFSET_TABLES:
        n, r = copy_offsets_table(a, b)
        return n, r, "offset table"
    if "pos" in attr and a.dim() == 4:
        n, r = copy_grid4(a, b)
        return n, r, "position grid"
    if "pos" in attr and a.dim() == 3 and a.shape[0] == 1:
        n, r = copy_tokens_grid(a, b)
        return n, r, "position grid"
    if src_heads and dst_heads:
        fa = {d: src_heads for d in range(a.dim()) if a.shape[d] == src_heads[0] * src_heads[1]}
        fb = {d: dst_heads for d in range(b.dim()) if b.shape[d] == dst_heads[0] * dst_heads[1]}
        if fa and fa.keys() == fb.keys():
            return factored_clip(a, b, fa, fb), False, "heads"
    return _clip_copy(a, b), False, "centre"

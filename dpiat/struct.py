"""``dpiat_struct``: DPIAT that knows the structure of transformers and LayerNorm networks (a named variant).

The faithful method (docs/method.md §1-5) transfers only Conv, ConvTranspose, BatchNorm and Linear layers,
and copies a fused attention projection as one tensor: the rows of timm's ``qkv`` are [q | k | v], so a
centre crop from a wider source gives the target's queries the source's last query rows and first key
rows. ``dpiat_struct`` keeps the faithful standardization, scores, DP and centre rule, and adds to the
structure what these networks are made of (docs/method.md, "dpiat_struct"):

- a fused ``qkv`` projection of an attention module (a module with a ``qkv`` Linear and ``num_heads``) is
  three layers, q, k and v, each scored and matched on its own; inside each, rows are (heads, head_dim), and
  the centre rule is applied per axis: whole heads are kept or pasted by head index (centre), head_dim is
  cropped or pasted inside each head (centre). The attention's output projection ``proj`` reads its input
  columns with the same windows, a ``gate`` its output rows, a norm over all heads its channels;
- LayerNorm (timm's LayerNorm2d included), GroupNorm, RMSNorm (torch's and timm's) are layers of their own
  kind: their weight and bias are clipped as BatchNorm's are;
- free parameters: layer scales (``gamma``, ``gamma_1``...), class / register / distillation tokens,
  position embeddings (the grid resampled to the target's grid, bicubic, then the width clipped) and Swin's
  relative position bias tables (resampled to the target's window, heads clipped like the heads of qkv);
- Swin's patch merging: its norm and its ``reduction`` input read (2x2 positions, channels), clipped per
  axis so that the four positions stay four positions.

A network without any of these (a CNN of Conv/BatchNorm/Linear) gets the same structure, matching and copy
as ``dpiat``, bit for bit (tested).

    >>> import timm, torch, dpiat
    >>> src = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=2).eval()
    >>> dst = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=2).eval()
    >>> report = dpiat.transfer(src, dst, method="dpiat_struct")
    >>> x = torch.randn(2, 3, 32, 32)
    >>> torch.equal(src(x), dst(x)), report.fraction_overwritten
    (True, 1.0)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dpiat.alignment import Aligner
from dpiat.clip import _clip_copy, copy_layers, one_thread
from dpiat.errors import DpiatError, NoTransferableLayersError
from dpiat.layers import is_dim, type_mask, weight_shape
from dpiat.matching import Matching
from dpiat.registry import register_method
from dpiat.structure import Block, Layer

# Kinds of the structure-aware leaves: mask bits above the ten PARAM bits (dpiat/layers.py), so that a leaf of
# one kind scores only against leaves of the same kind (shape score otherwise, as for PARAM layers).
NORM = 1 << 10
QUERY, KEY, VALUE = 1 << 11, 1 << 12, 1 << 13
POS_EMBED = 1 << 14
CLS_TOKEN, REG_TOKEN, DIST_TOKEN = 1 << 15, 1 << 16, 1 << 17
LAYER_SCALE = 1 << 18
REL_POS_BIAS = 1 << 19
KIND_NAMES = {NORM: "norm", QUERY: "q", KEY: "k", VALUE: "v", POS_EMBED: "pos_embed", CLS_TOKEN: "cls_token",
              REG_TOKEN: "reg_token", DIST_TOKEN: "dist_token", LAYER_SCALE: "layer_scale",
              REL_POS_BIAS: "rel_pos_bias"}


def _norm_classes() -> tuple[type, ...]:
    classes: list[type] = [nn.LayerNorm, nn.GroupNorm]  # timm's LayerNorm, LayerNorm2d, GroupNorm(1) subclass these
    if hasattr(nn, "RMSNorm"):
        classes.append(nn.RMSNorm)
    try:
        from timm.layers import norm as timm_norm
    except ImportError:  # timm is optional for this module
        return tuple(classes)
    for name in ("RmsNorm", "RmsNorm2d", "RmsNormFp32", "RmsNorm2dFp32",
                 "SimpleNorm", "SimpleNorm2d", "SimpleNormFp32", "SimpleNorm2dFp32"):
        cls = getattr(timm_norm, name, None)
        if isinstance(cls, type):
            classes.append(cls)
    return tuple(classes)


NORMS = _norm_classes()


class Part(Layer):
    """A leaf of the structure-aware standardization that the faithful one does not have, or a PARAM layer
    whose copy needs the structure: which tensors it covers and how their dimensions factor.

    ``attrs``: names of the tensors on ``module`` (``("weight", "bias")`` for a layer, ``("pos_embed",)`` for
    a free parameter); ``rows``: ``(index, count)`` when the part is one of ``count`` equal row blocks of the
    tensors (q, k, v of a fused qkv); ``factors``: ``{dim: (f1, f2, ...)}``, dimensions read as several axes,
    each clipped by the centre rule on its own (rows of q as (heads, head_dim)); ``grid``: what resampling
    needs (position embeddings: prefix tokens and grid; bias tables: the table's 2-D size)."""

    __slots__ = ("attrs", "rows", "factors", "grid")

    def __init__(self, name, module, mask, shape, attrs=("weight", "bias"), rows=None, factors=None, grid=None):
        super().__init__(name, module, mask, shape)
        self.attrs, self.rows, self.factors, self.grid = attrs, rows, factors or {}, grid

    def __repr__(self) -> str:
        kind = KIND_NAMES.get(self.mask) or type(self.module).__name__
        return f"Part({self.name!r}, {kind}{list(self.shape)})"

    def tensors(self) -> list[torch.Tensor | None]:
        out = []
        for attr in self.attrs:
            t = getattr(self.module, attr, None)
            if isinstance(t, torch.Tensor) and self.rows is not None:
                index, count = self.rows
                n = t.shape[0] // count
                t = t.narrow(0, index * n, n)
            out.append(t if isinstance(t, torch.Tensor) else None)
        return out

    def parameter_names(self) -> list[str]:
        base = self.name.split("[", 1)[0]
        if self.attrs == ("weight", "bias"):
            return [f"{base}.{a}" for a in self.attrs]
        return [base]


# ---------------------------------------------------------------------------------------------------------
# Standardization: the faithful walk (dpiat/structure.py) plus the leaves above
# ---------------------------------------------------------------------------------------------------------


def _heads(module: nn.Module) -> tuple[int, int] | None:
    """(heads, head_dim) of an attention module with a fused ``qkv`` Linear whose rows are
    [q | k | v] x heads x head_dim (timm's Attention, Swin's WindowAttention); None otherwise."""
    qkv = module._modules.get("qkv")
    heads = getattr(module, "num_heads", None)
    if not isinstance(qkv, nn.Linear) or not isinstance(heads, int) or heads <= 0:
        return None
    out = qkv.out_features
    if out % (3 * heads):
        return None
    head_dim = out // (3 * heads)
    declared = getattr(module, "head_dim", None)
    if isinstance(declared, int) and declared != head_dim:
        return None
    return heads, head_dim


def _merge_factors(module: nn.Module) -> tuple[int, int] | None:
    """(4, dim) for a patch merging module (Swin): ``reduction`` reads the channels of a 2x2 neighbourhood
    concatenated, position-major; None otherwise."""
    reduction = module._modules.get("reduction")
    dim = getattr(module, "dim", None)
    if isinstance(reduction, nn.Linear) and isinstance(dim, int) and dim > 0 and reduction.in_features == 4 * dim:
        return 4, dim
    return None


def _norm_leaf(name: str, module: nn.Module, factors=None) -> Layer:
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.numel() == 0:
        return Layer(name, module, 0)  # no affine parameters: a parameter-free leaf
    return Part(name, module, NORM, tuple(w.shape), factors=factors)


def _linear_leaf(name: str, module: nn.Module, factors: dict) -> Layer:
    return Part(name, module, type_mask(module), weight_shape(module), factors=factors)


def _special_children(module: nn.Module, prefix: str) -> dict:
    """Children of an attention or patch-merging module whose leaves need the structure: child name ->
    (depth, n_dim, entry) as the walk returns them."""
    out = {}
    heads = _heads(module)
    if heads is not None:
        h, d = heads
        attn_dim = h * d
        qkv = module._modules["qkv"]
        shape = (attn_dim, qkv.in_features)
        parts = [Part(f"{prefix}qkv[{p}]", qkv, kind, shape, rows=(i, 3), factors={0: heads})
                 for i, (p, kind) in enumerate((("q", QUERY), ("k", KEY), ("v", VALUE)))]
        out["qkv"] = (1, 1, parts)  # a list with one DIM layer: spliced into the attention block, as singles
        for child_name, child in module._modules.items():
            if child is None or child_name == "qkv":
                continue
            if isinstance(child, nn.Linear) and child_name == "proj" and child.in_features == attn_dim:
                out[child_name] = (0, 1, _linear_leaf(prefix + child_name, child, {1: heads}))
            elif isinstance(child, nn.Linear) and child_name == "gate" and child.out_features == attn_dim:
                out[child_name] = (0, 1, _linear_leaf(prefix + child_name, child, {0: heads}))
            elif isinstance(child, NORMS):
                w = getattr(child, "weight", None)
                if isinstance(w, torch.Tensor) and w.dim() == 1 and w.shape[0] == attn_dim:
                    out[child_name] = (0, 0, _norm_leaf(prefix + child_name, child, {0: heads}))
        return out
    merge = _merge_factors(module)
    if merge is not None:
        out["reduction"] = (0, 1, _linear_leaf(prefix + "reduction", module._modules["reduction"], {1: merge}))
        norm = module._modules.get("norm")
        w = getattr(norm, "weight", None)
        if isinstance(norm, NORMS) and isinstance(w, torch.Tensor) and w.dim() == 1 and w.shape[0] == 4 * merge[1]:
            out["norm"] = (0, 0, _norm_leaf(prefix + "norm", norm, {0: merge}))
    return out


def _free_kind(attr: str, p: torch.Tensor) -> int:
    if attr.endswith("pos_embed") and p.dim() >= 3:
        return POS_EMBED
    if attr == "cls_token":
        return CLS_TOKEN
    if attr == "reg_token":
        return REG_TOKEN
    if attr == "dist_token":
        return DIST_TOKEN
    if (attr == "gamma" or attr.startswith("gamma_")) and p.dim() == 1:
        return LAYER_SCALE
    if attr == "relative_position_bias_table" and p.dim() == 2:
        return REL_POS_BIAS
    return 0


def _pos_grid(owner: nn.Module, p: torch.Tensor):
    """(prefix tokens, (grid h, grid w)) of a ViT-style position embedding [1, prefix + h*w, dim], or
    ("nhwc", (h, w)) for one shaped [1, h, w, dim]; None when the grid cannot be read."""
    if p.dim() == 4:
        return "nhwc", (int(p.shape[1]), int(p.shape[2]))
    if p.dim() != 3:
        return None
    tokens = int(p.shape[1])
    prefix = 0 if getattr(owner, "no_embed_class", False) else int(getattr(owner, "num_prefix_tokens", 0) or 0)
    grid = getattr(getattr(owner, "patch_embed", None), "grid_size", None)
    if grid is not None and len(grid) == 2 and prefix + grid[0] * grid[1] == tokens:
        return prefix, (int(grid[0]), int(grid[1]))
    for pre in (prefix, 0, 1):  # no readable grid: a square one, if the token count allows
        side = math.isqrt(max(tokens - pre, 0))
        if side > 0 and side * side == tokens - pre:
            return pre, (side, side)
    return None


def _free_leaves(module: nn.Module, prefix: str) -> list[Part]:
    leaves = []
    for attr, p in module._parameters.items():
        if p is None or p.numel() == 0:
            continue
        kind = _free_kind(attr, p)
        if not kind:
            continue
        grid = None
        if kind == POS_EMBED:
            grid = _pos_grid(module, p)
        elif kind == REL_POS_BIAS:
            window = getattr(module, "window_size", None)
            if isinstance(window, (tuple, list)) and len(window) == 2:
                grid = (2 * int(window[0]) - 1, 2 * int(window[1]) - 1)
                if grid[0] * grid[1] != p.shape[0]:
                    grid = None
        # a bias table's heads (dimension 1) take the plain centre rule: the same heads as the module's qkv
        leaves.append(Part(prefix + attr, module, kind, tuple(p.shape), attrs=(attr,), grid=grid))
    return leaves


def _walk(module: nn.Module, name: str, level: int):
    """``dpiat.structure._flat`` with the leaves of this variant; the same rules of blocks and splicing."""
    if isinstance(module, NORMS):
        return 0, 0, _norm_leaf(name, module)
    mask = type_mask(module)
    if mask:
        return 0, 1 if is_dim(module) else 0, Layer(name, module, mask)
    prefix = name + "." if name else ""
    special = _special_children(module, prefix)
    kids = list(module.named_children())
    own = _free_leaves(module, prefix)
    child_level = level if len(kids) + len(own) == 1 else level + 1
    entries: list = list(own)  # a module's own parameters first, as in its state_dict
    n_blocks, n_single, n_dim = 0, len(own), 0
    for child_name, child in kids:
        hit = special.get(child_name)
        d, k, e = hit if hit is not None else _walk(child, prefix + child_name, child_level)
        n_dim += k
        if isinstance(e, list):
            if d > 1 or k < 2:
                for item in e:
                    entries.append(item)
                    if isinstance(item, list):
                        n_blocks += 1
                    else:
                        n_single += 1
            else:
                entries.append(e)
                n_blocks += 1
        else:
            entries.append(e)
            n_single += 1
    if n_single > n_blocks and level > 0:
        flat: list = []
        for item in entries:
            if isinstance(item, list):
                flat.extend(item)
            else:
                flat.append(item)
        entries, depth = flat, 1
    else:
        depth = 2
    if len(entries) == 1:
        return 1, n_dim, entries[0]
    if not entries:
        return 0, n_dim, Layer(name, module, 0)
    return depth, n_dim, Block(entries, name)


def standardize_struct(model: nn.Module) -> Block:
    """The nested block structure of ``model`` as ``dpiat_struct`` sees it (docs/method.md, "dpiat_struct");
    identical to :func:`dpiat.standardize` for networks without the layers above."""
    if not isinstance(model, nn.Module):
        raise DpiatError(f"expected a torch.nn.Module, got {type(model).__name__}. "
                         "Pass a model instance (e.g. timm.create_model(name)), or a timm name where accepted.")
    _, _, entry = _walk(model, "", 0)
    return entry if isinstance(entry, Block) else Block([entry], "")


def check_struct_transferable(blocks: Block, role: str, model: nn.Module) -> int:
    n = sum(1 for leaf in blocks.layers() if leaf.transferable)
    if n == 0:
        raise NoTransferableLayersError(
            f"the {role} ({type(model).__name__}) has no layer dpiat_struct can transfer: it needs Conv*, "
            "ConvTranspose*, BatchNorm*, Linear, LayerNorm/GroupNorm/RMSNorm modules or a known free parameter "
            "(pos_embed, cls_token, layer-scale gamma, ...).")
    return n


def match_struct(source: nn.Module, target: nn.Module, *, aligner: Aligner | None = None) -> Matching:
    """:func:`dpiat.match` on the structure-aware standardization (the same DP and tie rules)."""
    a, b = standardize_struct(source), standardize_struct(target)
    check_struct_transferable(a, "source", source)
    check_struct_transferable(b, "target", target)
    aligner = aligner or Aligner()
    value = aligner.align(a, b).value
    return Matching(value, aligner.leaf_pairs(a, b), a, b)


# ---------------------------------------------------------------------------------------------------------
# Copy
# ---------------------------------------------------------------------------------------------------------


def _factored_clip(a: torch.Tensor, b: torch.Tensor, fa: dict, fb: dict) -> int:
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


def _interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` [1, C, h, w] resampled to ``size`` (bicubic, antialiased when shrinking), in x's dtype."""
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    y = F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False, antialias=shrink)
    return y.to(x.dtype)


def _copy_pos_embed(a: torch.Tensor, b: torch.Tensor, ga, gb) -> tuple[int, bool]:
    """Position embedding: the grid resampled to the target's, prefix tokens (class, registers) taken from
    the front, the width centre-clipped. Returns (elements written, resampled?)."""
    if ga is None or gb is None or (ga[0] == "nhwc") != (gb[0] == "nhwc"):
        return _clip_copy(a, b), False
    if ga[0] == "nhwc":  # [1, h, w, dim]
        grid = a
        if ga[1] != gb[1]:
            grid = _interpolate(a.permute(0, 3, 1, 2), gb[1]).permute(0, 2, 3, 1)
        return _clip_copy(grid, b), ga[1] != gb[1]
    (pa, (ha, wa)), (pb, (hb, wb)) = ga, gb
    written = 0
    n = min(pa, pb)
    if n:
        written += _clip_copy(a[:, :n], b[:, :n])
    grid = a[:, pa:]
    if (ha, wa) != (hb, wb):
        image = grid.reshape(1, ha, wa, a.shape[-1]).permute(0, 3, 1, 2)
        grid = _interpolate(image, (hb, wb)).permute(0, 2, 3, 1).reshape(1, hb * wb, a.shape[-1])
    written += _clip_copy(grid, b[:, pb:])
    return written, (ha, wa) != (hb, wb)


def _copy_rel_bias(a: torch.Tensor, b: torch.Tensor, ga, gb) -> tuple[int, bool]:
    """Relative position bias table [(2Wh-1)*(2Ww-1), heads]: resampled to the target's window, then the
    heads centre-clipped (the heads the target's qkv keeps)."""
    if ga is None or gb is None or ga == gb:
        return _clip_copy(a, b), False
    image = a.t().reshape(1, a.shape[1], ga[0], ga[1])
    table = _interpolate(image, gb).reshape(a.shape[1], gb[0] * gb[1]).t()
    return _clip_copy(table, b), True


def _factors(leaf: Layer) -> dict:
    return leaf.factors if isinstance(leaf, Part) else {}


def _tensors(leaf: Layer) -> list:
    if isinstance(leaf, Part):
        return leaf.tensors()
    return [getattr(leaf.module, "weight", None), getattr(leaf.module, "bias", None)]


def copy_part(s: Layer, t: Layer) -> tuple[int, bool]:
    """Copy one matched pair of which at least one side is a :class:`Part`; (elements written, resampled?)."""
    written, resampled = 0, False
    for a, b in zip(_tensors(s), _tensors(t)):
        if a is None or b is None:
            continue
        if t.mask == POS_EMBED:
            n, r = _copy_pos_embed(a, b, s.grid, t.grid)
        elif t.mask == REL_POS_BIAS:
            n, r = _copy_rel_bias(a, b, s.grid, t.grid)
        else:
            n, r = _factored_clip(a, b, _factors(s), _factors(t)), False
        written += n
        resampled = resampled or r
    return written, resampled


def _covered(blocks: Block) -> set[str]:
    names = set()
    for leaf in blocks.layers():
        if isinstance(leaf, Part):
            names.update(leaf.parameter_names())
        elif leaf.transferable:
            names.update((f"{leaf.name}.weight", f"{leaf.name}.bias"))
    return names


def dpiat_struct(source: nn.Module, target: nn.Module):
    """DPIAT on the structure-aware standardization: q, k, v and heads, norms, layer scales, tokens, position
    embeddings and bias tables (module docstring; docs/method.md). Plain layer pairs are copied by the
    faithful copy; the others by the rules of their kind."""
    matching = match_struct(source, target)
    plain, parts = [], []
    for s, t, _ in matching.matched:
        if type(s) is Layer and type(t) is Layer:
            plain.append((s.module, t.module))
        else:
            parts.append((s, t))
    written = copy_layers(plain)
    kinds: dict[str, int] = {}
    resampled = []
    with torch.no_grad(), one_thread():
        for s, t in parts:
            n, r = copy_part(s, t)
            written += n
            kind = KIND_NAMES.get(t.mask, "heads" if t.mask else "")
            if kind:
                kinds[kind] = kinds.get(kind, 0) + 1
            if r:
                resampled.append(t.name)
    covered = _covered(matching.target_blocks)
    not_handled = [n for n, _ in target.named_parameters() if n not in covered]
    return matching, written, {"structured_pairs": kinds, "resampled": resampled,
                               "parameters_never_transferable": not_handled}


register_method("dpiat_struct", dpiat_struct,
                summary="DPIAT that splits q/k/v and heads and also transfers norms, layer scales, tokens and "
                        "position embeddings (transformers, ConvNeXt)", structure=standardize_struct)

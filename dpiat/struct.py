"""``dpiat_struct``: DPIAT that knows the structure of transformers and LayerNorm networks (a named variant).

The faithful method (docs/method.md §1-5) transfers only Conv, ConvTranspose, BatchNorm and Linear layers,
and copies a fused attention projection as one tensor: the rows of timm's ``qkv`` are [q | k | v], so a
centre crop from a wider source gives the target's queries the source's last query rows and first key
rows. ``dpiat_struct`` keeps the faithful standardization, scores, DP and centre rule, and adds to the
structure what these networks are made of (docs/method.md, "dpiat_struct"):

- a fused [q | k | v] projection (timm's ``qkv``, nanoGPT's ``c_attn``, ``nn.MultiheadAttention``'s
  ``in_proj_weight``, PVT's ``kv`` beside ``q``) is three layers, q, k and v, each scored and matched on its
  own; with a head count (``num_heads``, ``n_head``, ``heads``, ...) rows are (heads, head_dim), and the centre
  rule is applied per axis: whole heads are kept or pasted by head index (centre), head_dim is cropped or
  pasted inside each head (centre); without one, the projection is still split in three (and the report says
  so). The output projection (``proj``, ``c_proj``, ``out_proj``, ...) reads its input columns with the same
  windows, a ``gate`` its output rows, a norm over all heads its channels;
- LayerNorm (timm's LayerNorm2d included), GroupNorm, RMSNorm (torch's and timm's) are layers of their own
  kind: their weight and bias are clipped as BatchNorm's are;
- free parameters: layer scales (``gamma``, ``gamma_1``...), class / register / distillation tokens,
  position embeddings (the grid resampled to the target's grid, bicubic, then the width clipped) and Swin's
  relative position bias tables (resampled to the target's window, heads clipped like the heads of qkv);
- Swin's patch merging: its norm and its ``reduction`` input read (2x2 positions, channels), clipped per
  axis so that the four positions stay four positions;
- norms do not tip the block vote of a module that holds a container of blocks, and tie it to a block
  elsewhere (:func:`_walk`);
- after the DP's pairs are copied, the general rule (dpiat/struct_rules.py): every target parameter still
  unwritten, other than a Conv/Linear/BatchNorm weight or bias, is matched with its module and copied from
  the same-named parameter of the corresponding source module, by the rule of its layout.

A network without any of these (a CNN of Conv/BatchNorm/Linear) gets the same structure, matching and copy
as ``dpiat``, bit for bit (tested). Wherever it carries a module's parameters it also carries the module's
persistent buffers (BatchNorm running statistics by the centre rule of the weights, as ``dpiat_bn``; any other
by the rule of a parameter of its shape); buffers derived from the config (non-persistent) are never touched.
What stays unwritten is named in ``report.tensors_left`` and ``report.buffers_left``.

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
from torch import nn

from dpiat.alignment import Aligner
from dpiat.clip import _clip_copy, copy_layers, one_thread, persistent_buffers
from dpiat.errors import DpiatError, NoTransferableLayersError
from dpiat.layers import is_dim, type_mask, weight_shape
from dpiat.matching import Matching, match
from dpiat.registry import register_method
from dpiat.structure import Block, Layer

from dpiat import struct_rules as rules  # noqa: E402  (the general rule and the copy rules by layout)

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


# Names of a fused [q | k | v] projection (timm, nanoGPT, others) and of the output projection reading the heads.
FUSED_QKV = ("qkv", "c_attn", "qkv_proj", "to_qkv", "Wqkv", "wqkv")
OUT_PROJ = ("proj", "c_proj", "out_proj", "o_proj", "to_out", "proj_out")


def _head_split(module: nn.Module, attn_dim: int):
    """(heads, head_dim) of an attention module whose projections are ``attn_dim`` wide, from the head count it
    declares (``num_heads``, ``n_head``, ``heads``, ...) or its ``head_dim``; None when it declares neither;
    False when what it declares contradicts ``attn_dim`` (another layout: not split at all)."""
    heads = rules.head_count(module)
    declared = getattr(module, "head_dim", None)
    declared = declared if isinstance(declared, int) and declared > 0 else None
    if heads is None:
        if declared is None:
            return None
        return (attn_dim // declared, declared) if attn_dim % declared == 0 else False
    if attn_dim % heads or (declared is not None and declared != attn_dim // heads):
        return False
    return heads, attn_dim // heads


def _fused(module: nn.Module):
    """The fused projection of an attention module: (child name, Linear, parts, heads), where ``parts`` is
    ``("q", "k", "v")`` for a [q | k | v] projection and ``("k", "v")`` for a [k | v] one beside a ``q``
    Linear (PVT); ``heads`` is (heads, head_dim), or None when the module declares no head count (then the
    projection is still split into its parts, and the report says so). None: no fused projection."""
    for name in FUSED_QKV:
        lin = module._modules.get(name)
        if isinstance(lin, nn.Linear) and lin.out_features and lin.out_features % 3 == 0:
            heads = _head_split(module, lin.out_features // 3)
            return None if heads is False else (name, lin, ("q", "k", "v"), heads)
    kv, q = module._modules.get("kv"), module._modules.get("q")
    if isinstance(kv, nn.Linear) and isinstance(q, nn.Linear) and kv.out_features == 2 * q.out_features > 0:
        heads = _head_split(module, q.out_features)
        return None if heads is False else ("kv", kv, ("k", "v"), heads)
    return None


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


PART_KINDS = {"q": QUERY, "k": KEY, "v": VALUE}


def _qkv_parts(prefix: str, module: nn.Module, attrs, parts, heads, rows: int, width: int) -> list[Part]:
    shape = (rows, width)
    factors = {0: heads} if heads else None
    return [Part(f"{prefix}[{p}]", module, PART_KINDS[p], shape, attrs=attrs, rows=(i, len(parts)), factors=factors)
            for i, p in enumerate(parts)]


def _mha_parts(module: nn.Module, prefix: str) -> list[Part]:
    """q, k and v of ``nn.MultiheadAttention``'s packed ``in_proj_weight`` / ``in_proj_bias`` ([q | k | v] rows,
    heads after heads, as timm's qkv)."""
    w = module._parameters.get("in_proj_weight")
    if not isinstance(module, nn.MultiheadAttention) or w is None or not module._qkv_same_embed_dim:
        return []
    heads = (module.num_heads, module.head_dim)
    return _qkv_parts(prefix + "in_proj", module, ("in_proj_weight", "in_proj_bias"), ("q", "k", "v"), heads,
                      module.embed_dim, int(w.shape[1]))


def _special_children(module: nn.Module, prefix: str) -> dict:
    """Children of an attention or patch-merging module whose leaves need the structure: child name ->
    (depth, n_dim, entry) as the walk returns them."""
    out = {}
    fused = _fused(module)
    mha = isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim
    if fused is not None or mha:
        if fused is not None:
            name, lin, parts, heads = fused
            attn_dim = lin.out_features // len(parts)
            out[name] = (1, 1, _qkv_parts(prefix + name, lin, ("weight", "bias"), parts, heads, attn_dim,
                                          lin.in_features))  # a list with one DIM layer: spliced, as singles
            q = module._modules.get("q") if parts == ("k", "v") else None
            if q is not None:
                out["q"] = (0, 1, Part(prefix + "q", q, QUERY, weight_shape(q), factors={0: heads} if heads else None))
        else:
            heads, attn_dim = (module.num_heads, module.head_dim), module.embed_dim
        if heads is None:
            return out
        for child_name, child in module._modules.items():
            if child is None or child_name in out:
                continue
            if isinstance(child, nn.Linear) and child_name in OUT_PROJ and child.in_features == attn_dim:
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
    ("nhwc", (h, w)) / ("nchw", (h, w)) for one shaped [1, h, w, dim] / [1, dim, h, w] (SAM's / Hiera's), told
    apart by which two sizes are equal (:func:`dpiat.struct_rules.layout4`); None when the grid cannot be read."""
    if p.dim() == 4:
        return rules.grid4(p)
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


def _is_norm(item) -> bool:
    return isinstance(item, Part) and item.mask == NORM


def _walk(module: nn.Module, name: str, level: int):
    """``dpiat.structure._flat`` with the leaves of this variant; the same rules of blocks and splicing, but
    for two about norms (without norms, in a CNN, the vote is the faithful one):

    - in a module that holds a container of blocks, norms do not count as single layers in the vote. A stage
      of PVT-v2 B1 ([downsample conv, its norm, 2 blocks, norm]) would otherwise be one flat block while B2's
      (4 blocks) is a container of blocks, and no block of one could meet a block of the other;
    - in any other module, a tie between singles and blocks is a block when norms are among the singles: a
      plain pre-norm block (norm1, attn, norm2, mlp) would otherwise be dissolved into its parent, its norms
      loose between the blocks of its attention and MLP, where no block of a timm ViT can meet them."""
    if isinstance(module, NORMS):
        return 0, 0, _norm_leaf(name, module)
    mask = type_mask(module)
    if mask:
        return 0, 1 if is_dim(module) else 0, Layer(name, module, mask)
    prefix = name + "." if name else ""
    special = _special_children(module, prefix)
    kids = list(module.named_children())
    mha = _mha_parts(module, prefix)  # q, k, v of a packed projection: one DIM layer, as a fused qkv
    own = mha + _free_leaves(module, prefix)
    child_level = level if len(kids) + len(own) == 1 else level + 1
    entries: list = list(own)  # a module's own parameters first, as in its state_dict
    n_blocks, n_single, n_dim = 0, len(own), 1 if mha else 0
    n_norms, holds_container = 0, False
    for child_name, child in kids:
        hit = special.get(child_name)
        d, k, e = hit if hit is not None else _walk(child, prefix + child_name, child_level)
        n_dim += k
        if isinstance(e, list):
            holds_container = holds_container or d > 1
            if d > 1 or k < 2:
                for item in e:
                    entries.append(item)
                    if isinstance(item, list):
                        n_blocks += 1
                    else:
                        n_single += 1
                        n_norms += _is_norm(item)
            else:
                entries.append(e)
                n_blocks += 1
        else:
            entries.append(e)
            n_single += 1
            n_norms += _is_norm(e)
    if holds_container:
        n_single -= n_norms
    # a tie with norms among the singles is a block: a pre-norm transformer block (norm1, attn, norm2, mlp) is
    # one unit, as timm's is thanks to its placeholder modules (ls1, drop_path1, ...)
    tie_with_norms = n_norms and not holds_container and n_single == n_blocks
    if (n_single > n_blocks or tie_with_norms) and level > 0:
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
    return match(source, target, aligner=aligner, structure=standardize_struct, check=check_struct_transferable)


# ---------------------------------------------------------------------------------------------------------
# Copy
# ---------------------------------------------------------------------------------------------------------


def _tensors(leaf: Layer) -> list:
    if isinstance(leaf, Part):
        return leaf.tensors()
    return [getattr(leaf.module, "weight", None), getattr(leaf.module, "bias", None)]


def copy_part(s: Layer, t: Layer) -> tuple[int, bool]:
    """Copy one matched pair of which at least one side is a :class:`Part`; (elements written, resampled?)."""
    written, resampled = 0, False
    fs, ft = (s.factors if isinstance(s, Part) else {}), (t.factors if isinstance(t, Part) else {})
    for a, b in zip(_tensors(s), _tensors(t)):
        if a is None or b is None:
            continue
        if t.mask == POS_EMBED:
            n, r = rules.copy_pos_embed(a, b, s.grid, t.grid)
        elif t.mask == REL_POS_BIAS:
            n, r = rules.copy_rel_bias(a, b, s.grid, t.grid)
        elif fs or ft:
            n, r = rules.factored_clip(a, b, fs, ft), False
        else:
            n, r = _clip_copy(a, b), False
        written += n
        resampled = resampled or r
    return written, resampled


def _module_rule(where, unwritten: list[str]):
    """The general rule (dpiat/struct_rules.py) for the target parameters the DP left unwritten: each is
    matched with its module (``where``: a :class:`dpiat.struct_rules.Correspondence`) and copied from the
    same-named parameter of the corresponding source module. Not applied to the weight and bias of Conv /
    Linear / BatchNorm layers, which are the DP's alone (as in faithful ``dpiat``: an unmatched layer stays
    unmatched). Returns (elements written, names written, resampled names, rules used)."""
    s_modules, t_modules = where.source, where.target
    written, done, resampled, used = 0, [], [], {}
    for full in unwritten:
        owner, _, attr = full.rpartition(".")
        dst = t_modules.get(owner)
        if dst is None or (type_mask(dst) and attr in ("weight", "bias")):
            continue
        other = where(owner)
        src = s_modules.get(other) if other is not None else None
        a, b = getattr(src, attr, None), getattr(dst, attr, None)
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
            continue
        n, r, rule = rules.copy_parameter(src, dst, attr, a, b, _attention_heads(src), _attention_heads(dst))
        if n:
            written += n
            done.append(full)
            used[rule] = used.get(rule, 0) + 1
            if r:
                resampled.append(full)
    return written, done, resampled, used


def _copy_buffer(src: nn.Module, dst: nn.Module, attr: str, a: torch.Tensor, b: torch.Tensor,
                 s_leaf: Layer | None, t_leaf: Layer | None) -> bool:
    """One persistent buffer by the rule of a parameter of its shape: the factored clip of the module's weight
    when the buffer has the weight's shape (a norm read per head), else the rule of its layout (equal shapes
    whole, BatchNorm statistics by the centre rule of their weights). A buffer that is not floating point (a
    count, an index table) is taken only at the same shape: cropping an index would not be an index."""
    if a.dim() != b.dim():
        return False
    if not (a.is_floating_point() and b.is_floating_point()) and a.shape != b.shape:
        return False
    if isinstance(s_leaf, Part) and isinstance(t_leaf, Part) and (s_leaf.factors or t_leaf.factors) \
            and s_leaf.rows is None and t_leaf.rows is None \
            and tuple(a.shape) == s_leaf.shape and tuple(b.shape) == t_leaf.shape:
        return rules.factored_clip(a, b, s_leaf.factors, t_leaf.factors) > 0
    n, _, _ = rules.copy_parameter(src, dst, attr, a, b, _attention_heads(src), _attention_heads(dst))
    return n > 0


def _carry_buffers(matching: Matching, where, by_module: list[str]) -> int:
    """The source's persistent buffers, wherever the transfer carried a module's parameters: for a module the
    DP matched, from its partner (the last pair, as for its parameters); for one the general rule wrote, from
    the module it was matched with; for a module without parameters of its own, from the module the general
    rule matches it with. A Conv/Linear/BatchNorm the DP left unmatched keeps its buffers, as its parameters,
    and so does a module whose parameters stayed unwritten. Buffers derived from the config (non-persistent)
    are never touched. Returns the number of buffers written; those left are found by the caller."""
    s_modules, t_modules = where.source, where.target
    names = {id(m): n for n, m in t_modules.items()}
    partner: dict[str, tuple] = {}  # target module name -> (source module, source leaf, target leaf)
    for s, t, _ in matching.matched:
        name = names.get(id(t.module))
        if name is not None:
            partner[name] = (s.module, s, t)
    for full in by_module:
        owner = full.rpartition(".")[0]
        if owner not in partner:
            other = where(owner)
            if other in s_modules:
                partner[owner] = (s_modules[other], None, None)
    carried = 0
    for name, dst in t_modules.items():
        own = persistent_buffers(dst)
        if not own:
            continue
        hit = partner.get(name)
        if hit is None:
            if type_mask(dst) or any(p is not None for p in dst._parameters.values()):
                continue  # its parameters were not carried: neither are its buffers
            other = where(name)
            hit = (s_modules[other], None, None) if other in s_modules else None
        if hit is None:
            continue
        src, s_leaf, t_leaf = hit
        theirs = persistent_buffers(src)
        for attr, b in own.items():
            a = theirs.get(attr)
            if a is not None and _copy_buffer(src, dst, attr, a, b, s_leaf, t_leaf):
                carried += 1
    return carried


def _attention_heads(module: nn.Module):
    if isinstance(module, nn.MultiheadAttention):
        return module.num_heads, module.head_dim
    fused = _fused(module)
    return fused[3] if fused is not None else None


def _versions(model: nn.Module) -> dict[str, int]:
    """Every parameter's version counter: in-place writes (copy_, the C copy) bump it, so a parameter whose
    counter did not move was not written. Inference tensors keep no counter and are left out (not tracked)."""
    return {n: p._version for n, p in model.named_parameters() if not p.is_inference()}


def dpiat_struct(source: nn.Module, target: nn.Module):
    """DPIAT on the structure-aware standardization: q, k, v and heads, norms, layer scales, tokens, position
    embeddings and bias tables (module docstring; docs/method.md). Plain layer pairs are copied by the
    faithful copy; the others by the rules of their kind; every parameter still unwritten after that by the
    general rule (matched with its module, :func:`_module_rule`); then the persistent buffers of every module
    whose parameters were carried, BatchNorm running statistics included (:func:`_carry_buffers`)."""
    matching = match_struct(source, target)
    before = _versions(target)
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
        unwritten = [n for n, v in _versions(target).items() if v == before[n]]
        s_modules, t_modules = dict(source.named_modules()), dict(target.named_modules())
        where = rules.Correspondence([(s.name, t.name) for s, t, _ in matching.matched], s_modules, t_modules, NORMS)
        n, by_module, more, used = _module_rule(where, unwritten)
        buffers = _carry_buffers(matching, where, by_module)
    written += n
    no_heads = sorted({base for leaf in matching.target_blocks.layers() if isinstance(leaf, Part)
                       and leaf.mask in (QUERY, KEY, VALUE) and not leaf.factors
                       for base in [leaf.name.split("[", 1)[0]]})
    return matching, written, {"structured_pairs": kinds, "resampled": resampled + more,
                               "module_rule": by_module, "module_rule_layouts": used,
                               "qkv_split_without_heads": no_heads, "buffers_carried": buffers}


register_method("dpiat_struct", dpiat_struct,
                summary="DPIAT that splits q/k/v and heads and also transfers norms, layer scales, tokens and "
                        "position embeddings (transformers, ConvNeXt)", structure=standardize_struct)

"""Standardization: a module tree -> nested blocks of layers (docs/method.md §2, exactly).

The module tree is walked in registration order (``named_children``). Each PARAM module (Conv, ConvTranspose,
BatchNorm, Linear) is a leaf and so is every other module without children; containers become *blocks*
(lists of layers) or are spliced into their parent, following the authors' rules:

    >>> import timm, dpiat
    >>> blocks = dpiat.standardize(timm.create_model("tf_efficientnet_b0", pretrained=False))
    >>> [item.name for item in blocks[:2]], blocks[2].name
    (['conv_stem', 'bn1'], 'blocks.0.0')
    >>> print(blocks[2].describe())     # one DepthwiseSeparableConv block
    blocks.0.0 [conv_dw, bn1, aa, se.conv_reduce, se.act1, se.conv_expand, se.gate, conv_pw, bn2, drop_path]

Entries are :class:`Layer` (a leaf, with its ``named_modules()`` name) or :class:`Block` (a list).
Both carry an interned integer ``sig`` describing what scoring looks at (PARAM types and weight shapes),
so equal-looking blocks are aligned once and the result reused.
"""

from __future__ import annotations

from torch import nn

from dpiat.errors import DpiatError
from dpiat.layers import is_dim, type_mask, weight_shape
from dpiat.models import as_model

_MODULE_NAMED_CHILDREN = nn.Module.named_children

_SIGS: dict[tuple, int] = {}  # interned signatures: equal structure <-> equal int


def _intern(key: tuple) -> int:
    sig = _SIGS.get(key)
    if sig is None:
        sig = _SIGS[key] = len(_SIGS)
    return sig


class Layer:
    """A leaf of the standardized structure: one module and its name in the model."""

    __slots__ = ("name", "module", "mask", "shape", "sig")

    def __init__(self, name: str, module: nn.Module, mask: int | None = None, shape=None):
        self.name, self.module = name, module
        self.mask = type_mask(module) if mask is None else mask
        # A PARAM module without a weight (BatchNorm(affine=False)) has nothing to score or copy.
        if shape is None:
            shape = weight_shape(module) if self.mask else None
        self.shape = shape
        if shape is None:
            self.mask = 0
        key = ("L", self.mask, shape)
        sig = _SIGS.get(key)
        self.sig = _intern(key) if sig is None else sig

    @property
    def transferable(self) -> bool:
        return self.mask != 0

    def __repr__(self) -> str:
        if not self.mask:
            return f"Layer({self.name!r}, {type(self.module).__name__})"
        return f"Layer({self.name!r}, {type(self.module).__name__}{list(self.shape)})"


class Block(list):
    """A list of :class:`Layer` and :class:`Block` items; ``name`` is the module it came from."""

    __slots__ = ("name", "sig")

    def __init__(self, items, name: str):
        super().__init__(items)
        self.name = name
        self.sig = _intern(("B",) + tuple(item.sig for item in self))

    def layers(self):
        """All leaves, depth first, in order."""
        for item in self:
            if isinstance(item, Block):
                yield from item.layers()
            else:
                yield item

    def describe(self, indent: int = 0) -> str:
        """One line per block: its name and its items (nested blocks on their own lines)."""
        pad = "  " * indent
        if not any(isinstance(i, Block) for i in self):
            return f"{pad}{self.name or '<model>'} [" + ", ".join(_short(i.name, self.name) for i in self) + "]"
        lines = [f"{pad}{self.name or '<model>'}"]
        for item in self:
            lines.append(item.describe(indent + 1) if isinstance(item, Block) else f"{pad}  {item!r}")
        return "\n".join(lines)

    def tree(self) -> list:
        """The structure as nested lists of module names (what tests and users inspect)."""
        return [i.tree() if isinstance(i, Block) else i.name for i in self]


def _short(name: str, prefix: str) -> str:
    return name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else name


# type(module) -> (PARAM mask, is DIM, plain): what standardization needs of a module's class, looked up
# once per class instead of ten isinstance tests per module. "plain" classes keep nn.Module's own
# named_children and define no class attribute ``weight``, so their children are read from ``_modules`` and
# their weight from ``_parameters`` directly: exactly what named_children / getattr would return.
_CLASS_INFO: dict[type, tuple[int, int, bool]] = {}


def _class_info(module: nn.Module) -> tuple[int, int, bool]:
    cls = type(module)
    mask = type_mask(module)
    plain = (getattr(cls, "named_children", None) is _MODULE_NAMED_CHILDREN and not hasattr(cls, "weight")
             and type(module) is module.__class__)
    info = _CLASS_INFO[cls] = (mask, 1 if mask and is_dim(module) else 0, plain)
    return info


def _leaf_shape(module: nn.Module, plain: bool):
    """``weight_shape(module)``; for a plain class, without going through ``nn.Module.__getattr__``."""
    if plain and "weight" not in module.__dict__:
        params = module.__dict__.get("_parameters")
        if params is not None and "weight" in params:
            w = params["weight"]
            return tuple(w.shape) if w is not None else None
    return weight_shape(module)


def _flat(module: nn.Module, name: str, level: int):
    """Returns (depth, n_dim, entry) exactly as in docs/method.md; entry is a Layer, a list, or a Block."""
    info = _CLASS_INFO.get(type(module))
    if info is None:
        info = _class_info(module)
    mask, dim, plain = info
    if mask:
        return 0, dim, Layer(name, module, mask, _leaf_shape(module, plain))
    if plain:  # nn.Module.named_children, inlined: no None children, each child module once
        kids = []
        memo = set()
        for child_name, child in module._modules.items():
            if child is not None and child not in memo:
                memo.add(child)
                kids.append((child_name, child))
    else:
        kids = list(module.named_children())
    child_level = level if len(kids) == 1 else level + 1  # single-child wrappers add no level
    entries: list = []
    n_blocks = n_single = n_dim = 0
    prefix = name + "." if name else ""
    for child_name, child in kids:
        d, k, e = _flat(child, prefix + child_name, child_level)
        n_dim += k
        if isinstance(e, list):
            if d > 1 or k < 2:
                # a container of blocks, or a tiny group with fewer than 2 DIM layers: splice its items here
                for item in e:
                    entries.append(item)
                    if isinstance(item, list):
                        n_blocks += 1
                    else:
                        n_single += 1
            else:
                entries.append(e)
                n_blocks += 1
        else:  # a leaf (depth > 1 only ever comes with a Block)
            entries.append(e)
            n_single += 1
    if n_single > n_blocks and level > 0:
        flat: list = []
        for item in entries:  # a block: nested lists are opened one level
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


def standardize(model: nn.Module | str) -> Block:
    """The nested block structure of ``model`` (docs/method.md §2); a timm name is built on the meta device."""
    if not isinstance(model, nn.Module):
        if not isinstance(model, str):
            raise DpiatError(f"expected a torch.nn.Module or a timm name, got {type(model).__name__}")
        model = as_model(model)
    _, _, entry = _flat(model, "", 0)
    return entry if isinstance(entry, Block) else Block([entry], "")

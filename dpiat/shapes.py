"""The shape structure of a model: what ranking needs of it, without the model (the torch side of
:mod:`dpiat.recommender`, which imports this module; this one knows nothing of the recommender's cache).

A standardized model (``dpiat.standardize``, or the structure of another method) is encoded as a table of
distinct leaves ``[PARAM type mask, weight shape, shapes of the tensors a transfer writes]`` and the nested
blocks as lists of indices into that table; :func:`decode` gives back a :class:`~dpiat.structure.Block` whose
leaves carry those shapes, which is all the alignment and the clip-window arithmetic read.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from dpiat.alignment import Aligner
from dpiat.errors import NoTransferableLayersError
from dpiat.structure import Block, Layer


class ShapeLayer(Layer):
    """A leaf read back from the cache: no module, but the shapes of the tensors a transfer would write."""

    __slots__ = ("tensor_shapes",)

    def __init__(self, mask: int, shape, tensor_shapes):
        super().__init__("", None, mask, shape)
        self.tensor_shapes = tensor_shapes


def tensor_shapes(leaf: Layer) -> tuple:
    """Shapes of the tensors a copy into / from ``leaf`` touches, in copy order (None where absent)."""
    shapes = getattr(leaf, "tensor_shapes", None)
    if shapes is not None:
        return shapes
    if hasattr(leaf, "tensors"):  # a structure-aware leaf (dpiat_struct): its own tensors
        tensors = leaf.tensors()
    else:  # the faithful copy: weight and bias (dpiat/clip.py)
        tensors = (getattr(leaf.module, "weight", None), getattr(leaf.module, "bias", None))
    return tuple(tuple(t.shape) if hasattr(t, "shape") else None for t in tensors)


def encode(blocks: Block, n_params: int) -> dict:
    """The JSON-able shape structure of a standardized model: a table of distinct leaves
    ``[mask, weight shape, tensor shapes]`` and the nested blocks as lists of indices into it."""
    table: list = []
    index: dict = {}
    n_transferable = 0

    def walk(block: Block) -> list:
        nonlocal n_transferable
        out = []
        for item in block:
            if isinstance(item, Block):
                out.append(walk(item))
                continue
            if item.mask:
                n_transferable += 1
                key = (item.mask, item.shape, tensor_shapes(item))
            else:
                key = (0, None, ())
            j = index.get(key)
            if j is None:
                j = index[key] = len(table)
                table.append([key[0], list(key[1]) if key[1] is not None else None,
                              [list(s) if s is not None else None for s in key[2]]])
            out.append(j)
        return out

    tree = walk(blocks)
    return {"leaves": table, "tree": tree, "n_transferable": n_transferable, "params": n_params}


def decode(entry: dict) -> Block:
    """The :class:`~dpiat.structure.Block` of an :func:`encode`-d structure (leaves are :class:`ShapeLayer`)."""
    leaves = [ShapeLayer(int(m), tuple(s) if s is not None else None,
                         tuple(tuple(t) if t is not None else None for t in ts)) for m, s, ts in entry["leaves"]]

    def build(items: list) -> Block:
        return Block([build(i) if isinstance(i, list) else leaves[i] for i in items], "")

    return build(entry["tree"])


def written(source_shapes: tuple, target_shapes: tuple) -> int:
    """Elements the centre clip writes: per tensor present on both sides with the same rank, the product of
    the per-dimension minima (dpiat/clip.py)."""
    total = 0
    for a, b in zip(source_shapes, target_shapes):
        if a is not None and b is not None and len(a) == len(b):
            total += math.prod(min(x, y) for x, y in zip(a, b))
    return total


def structure_fn(method: str):
    """(cache folder name, standardization, transferability check) of ``method``; an unknown method fails
    with the close names."""
    from dpiat.pipeline import STRUCTURES
    from dpiat.ranking import _structure_of

    structure, check = _structure_of(method)
    return (method if method in STRUCTURES else "dpiat"), structure, check


def structure_code(method: str) -> tuple[str, str]:
    """``(digest, kind)``: a digest of the code that standardizes for ``method`` (its standardization's
    module, dpiat/structure.py and dpiat/layers.py) and the kind of structure (``dpiat`` or the method's own):
    the cache and the shipped index are valid only for the code they were made with."""
    kind, structure, _ = structure_fn(method)
    code = hashlib.sha256()
    for path in sorted({inspect.getsourcefile(structure), inspect.getsourcefile(Block),
                        inspect.getsourcefile(sys.modules["dpiat.layers"].type_mask)}):
        code.update(Path(path).read_bytes())
    return code.hexdigest()[:12], kind


def needs_own_structure(target: nn.Module | str, model_kwargs: dict | None = None) -> bool:
    """True when ``target`` has layers that only ``dpiat_struct`` transfers (attention q/k/v, LayerNorm /
    GroupNorm / RMSNorm, tokens, position embeddings, layer scales...): what ``recommend(method="auto")``
    reads to pick ``dpiat_struct`` over the faithful ``dpiat``."""
    from dpiat.models import as_model
    from dpiat.struct import KIND_NAMES, standardize_struct

    kinds = 0
    for bit in KIND_NAMES:
        kinds |= bit
    blocks = standardize_struct(as_model(target, **(model_kwargs or {})))
    return any(leaf.mask & kinds for leaf in blocks.layers())


def build_entry(arch: str, method: str) -> dict:
    """Build ``arch`` on the meta device and encode its structure, or say why it cannot be ranked
    (``{"skipped": reason}``)."""
    from dpiat.models import create_model
    from dpiat.pipeline import _n_parameters

    _, structure, check = structure_fn(method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = create_model(arch, device="meta")
            blocks = structure(model)
            check(blocks, "candidate", model)
    except NoTransferableLayersError:
        return {"skipped": "no layer the method can transfer"}
    except Exception as e:  # noqa: BLE001 -- any failure of a third-party constructor skips that model only
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".rstrip(": ")
        return {"skipped": f"cannot be built on the meta device ({reason[:200]})"}
    return encode(blocks, _n_parameters(model))


@dataclass
class Target:
    blocks: Block
    n_transferable: int
    params: int
    digest: str  # of the method and the target's own shape structure


def target_structure(target: nn.Module | str, method: str, model_kwargs: dict) -> Target:
    from dpiat.models import as_model
    from dpiat.pipeline import _n_parameters

    _, structure, check = structure_fn(method)
    model = as_model(target, **model_kwargs)
    blocks = structure(model)
    n = check(blocks, "target", model)
    params = _n_parameters(model)
    code = json.dumps([method, encode(blocks, params)], separators=(",", ":"))
    return Target(blocks, n, params, hashlib.sha256(code.encode()).hexdigest()[:20])


def score_pair(aligner: Aligner, entry: dict, target: Target) -> list[float]:
    """``[similarity, overwritten]`` of a candidate (its cache entry) as the source for ``target``."""
    blocks = decode(entry)
    ab = aligner.align(blocks, target.blocks).value
    ba = aligner.align(target.blocks, blocks).value
    sim = (ab * ba / (entry["n_transferable"] * target.n_transferable)) ** 0.5
    n = sum(written(s.tensor_shapes, tensor_shapes(t))
            for s, t, _ in aligner.leaf_pairs(blocks, target.blocks) if s is not None and t is not None)
    return [sim, n / target.params if target.params else 0.0]


__all__ = ["ShapeLayer", "encode", "decode", "written", "tensor_shapes", "structure_fn", "structure_code",
           "needs_own_structure", "build_entry", "Target", "target_structure", "score_pair"]

"""Architecture similarity and source ranking (docs/method.md §6).

    sim(A, B) = sqrt( V(A->B) * V(B->A) / ( V(A->A) * V(B->B) ) )      in [0, 1], symmetric

    >>> import dpiat
    >>> round(dpiat.similarity("tf_efficientnet_b1", "tf_efficientnet_b0"), 4)   # meta device, no memory
    0.8967
    >>> dpiat.rank_sources("tf_efficientnet_b0", ["resnet50", "tf_efficientnet_b2", "mixnet_l"])[0][0]
    'tf_efficientnet_b2'
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dpiat.alignment import Aligner
from dpiat.errors import UnknownNameError
from dpiat.matching import Matching, check_transferable
from dpiat.matching import match as _match
from dpiat.models import as_model
from dpiat.structure import Block, standardize

# Built-in candidates for ranking: ImageNet CNNs of the paper's families and common baselines.
DEFAULT_CANDIDATES: tuple[str, ...] = (
    "tf_efficientnet_b0", "tf_efficientnet_b1", "tf_efficientnet_b2", "tf_efficientnet_b3",
    "tf_efficientnet_b4", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "tf_efficientnet_lite3",
    "tf_efficientnetv2_b0", "tf_efficientnetv2_b1", "tf_efficientnetv2_b2", "tf_efficientnetv2_b3",
    "mixnet_s", "mixnet_m", "mixnet_l", "mixnet_xl", "tf_mixnet_s", "tf_mixnet_m", "tf_mixnet_l",
    "rexnet_100", "rexnet_130", "rexnet_150", "rexnet_200", "mnasnet_100", "semnasnet_100",
    "mobilenetv2_100", "mobilenetv2_140", "mobilenetv3_large_100", "mobilenetv3_small_100",
    "fbnetc_100", "spnasnet_100", "tinynet_a", "tinynet_b", "tinynet_c", "tinynet_d", "tinynet_e",
    "lcnet_100", "ghostnet_100", "resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d",
    "regnety_016", "densenet121", "dla34", "vgg11_bn",
)


def _structure_of(method: str):
    """The standardization ``method`` matches on, and the check that a model has something to transfer;
    an unknown method name fails with the close names."""
    from dpiat.pipeline import METHODS, STRUCTURES

    if method not in METHODS:
        raise UnknownNameError("transfer method", method, METHODS)
    structure = STRUCTURES.get(method)
    if structure is None:
        return standardize, check_transferable
    from dpiat.struct import check_struct_transferable

    return structure, check_struct_transferable


def match(source: nn.Module | str, target: nn.Module | str, method: str = "dpiat", *,
          aligner: Aligner | None = None) -> Matching:
    """Which source layer feeds which target layer under ``method``'s matching (no copying; the meta device
    will do, and a timm name is built there). ``method="dpiat"``: the faithful matching
    (:func:`dpiat.matching.match`); ``"dpiat_struct"``: its structure (q/k/v, norms, tokens, position
    embeddings... as leaves of their own); the other named variants match as ``dpiat`` does.

        >>> import dpiat
        >>> m = dpiat.match("deit_tiny_patch16_224", "vit_tiny_patch16_224", method="dpiat_struct")
        >>> m.table().splitlines()[0].split()[:4]  # one row per target layer, its source layer beside it
        ['target', 'layer', 'shape', 'source']
    """
    structure, check = _structure_of(method)
    return _match(source, target, aligner=aligner, structure=structure, check=check)


class _Structures:
    """Standardized structures and self-values, computed once per model within a call."""

    def __init__(self, aligner: Aligner, method: str = "dpiat"):
        self.aligner = aligner
        self.structure, self.check = (standardize, check_transferable) if method == "dpiat" else _structure_of(method)

    def get(self, model: nn.Module | str) -> tuple[Block, float]:
        m = as_model(model)
        blocks = self.structure(m)
        n = self.check(blocks, "model", m)
        # V(X->X) equals the number of PARAM layers of X (each layer matches itself with score 1); for
        # dpiat_struct the number of its transferable leaves, for the same reason.
        return blocks, float(n)


def _sim(aligner: Aligner, a: tuple[Block, float], b: tuple[Block, float]) -> float:
    ab = aligner.align(a[0], b[0]).value
    ba = aligner.align(b[0], a[0]).value
    return (ab * ba / (a[1] * b[1])) ** 0.5


def similarity(a: nn.Module | str, b: nn.Module | str, method: str = "dpiat") -> float:
    """Symmetric architecture similarity in [0, 1]; ``a``/``b`` are modules or timm names. ``method``: the
    transfer method whose matching is measured (``dpiat_struct`` counts its own layers: q/k/v, norms,
    tokens...; the other named variants match as ``dpiat`` does)."""
    structs = _Structures(Aligner(), method)
    return _sim(structs.aligner, structs.get(a), structs.get(b))


def similarity_matrix(models: Sequence[nn.Module | str], method: str = "dpiat") -> list[list[float]]:
    """``M[i][j] = similarity(models[i], models[j], method)`` (symmetric, ones on the diagonal)."""
    structs = _Structures(Aligner(), method)
    built = [structs.get(m) for m in models]
    k = len(built)
    out = [[1.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1, k):
            out[i][j] = out[j][i] = _sim(structs.aligner, built[i], built[j])
    return out


def _architecture(model: nn.Module | str) -> str | None:
    if isinstance(model, str):
        return model.split(".", 1)[0]  # "resnet50.a1_in1k" -> "resnet50"
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture")


def rank_sources(target: nn.Module | str, candidates: Sequence[nn.Module | str] | None = None,
                 method: str = "dpiat") -> list[tuple[nn.Module | str, float]]:
    """Candidates sorted by similarity to ``target`` (of ``method``'s matching), most similar first, as
    ``(candidate, sim)``. ``candidates=None``: the built-in :data:`DEFAULT_CANDIDATES` without the target's
    own architecture (``dpiat rank`` does the same); candidates you name are all ranked, the target too."""
    if candidates is None:
        arch = _architecture(target)
        candidates = [c for c in DEFAULT_CANDIDATES if c != arch]
    structs = _Structures(Aligner(), method)
    t = structs.get(target)
    scored = [(c, _sim(structs.aligner, t, structs.get(c))) for c in candidates]
    return sorted(scored, key=lambda cs: -cs[1])

"""DPIAT: transfer trained weights between networks of different architectures.

    >>> import timm, dpiat
    >>> src = timm.create_model("tf_efficientnet_b2")          # trained weights loaded here
    >>> dst = timm.create_model("tf_efficientnet_b0")
    >>> report = dpiat.transfer(src, dst)                      # copies in place
    >>> round(dpiat.similarity("tf_efficientnet_b2", "tf_efficientnet_b0"), 4)
    0.804

The faithful method follows the authors' reference exactly (``docs/method.md``); improved variants get
names of their own (``dpiat.METHODS``, ``dpiat/variants.py``).
"""

import importlib

# Names are imported on first use (PEP 562), so ``import dpiat`` does not import torch or timm: the command
# line answers a cached ``dpiat recommend`` in a fraction of a second. Importing dpiat.inits or dpiat.pipeline
# registers every built-in transfer method (faithful ``dpiat`` and its named variants) as it did before.
_EXPORTS = {
    "Aligner": "alignment", "align": "alignment", "clip_copy": "clip",
    "DpiatError": "errors", "NoTransferableLayersError": "errors", "UnknownNameError": "errors",
    "WeightsError": "errors",
    "available_inits": "inits", "get_init": "inits", "initialize": "inits", "register_init": "inits",
    "Matching": "matching", "match": "ranking", "create_model": "models",
    "DEFAULT_CANDIDATES": "ranking", "rank_sources": "ranking", "similarity": "ranking",
    "similarity_matrix": "ranking", "Recommendation": "recommender", "recommend": "recommender",
    "Block": "structure", "Layer": "structure", "standardize": "structure",
    "METHODS": "pipeline", "TransferReport": "pipeline", "register_method": "pipeline", "transfer": "pipeline",
    "load_weights": "weights", "read_state_dict": "weights", "save_weights": "weights",
}
_SUBMODULES = {"alignment", "atomic", "cli", "clip", "errors", "ghn", "inits", "layers", "matching", "models",
               "pipeline", "plots", "pretrained", "ranking", "recommender", "shapes", "struct", "structure", "variants",
               "weights", "wsel", "zoo"}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"dpiat.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"dpiat.{name}")
    raise AttributeError(f"module 'dpiat' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


__version__ = "0.1.0"

__all__ = [
    "Aligner", "Block", "DEFAULT_CANDIDATES", "DpiatError", "Layer", "Matching", "NoTransferableLayersError",
    "METHODS", "TransferReport", "UnknownNameError", "WeightsError", "align", "available_inits", "clip_copy",
    "create_model", "get_init", "initialize", "load_weights", "match", "rank_sources", "read_state_dict",
    "register_init", "register_method", "save_weights", "similarity", "similarity_matrix", "standardize", "transfer",
    "recommend", "Recommendation",
]

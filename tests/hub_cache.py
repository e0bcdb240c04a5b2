"""A local Hugging Face hub cache made inside a test: what a machine that downloaded a tag before holds.

The layout is huggingface_hub's: ``<cache>/models--<owner>--<name>/refs/main`` names a commit and
``snapshots/<commit>/`` holds the files. The weights are a seeded random init of the architecture (what the
tests compare against), never downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_tag(cache: Path, tag: str, *, seed: int = 0, config: bool = False) -> dict[str, torch.Tensor]:
    """Put ``tag`` (``arch.tag``, hub repository ``timm/<tag>``) into the hub cache ``cache``; return its weights.
    ``config``: also its config.json, as ``hf-hub:timm/<tag>`` names need."""
    arch = tag.split(".", 1)[0]
    torch.manual_seed(seed)
    weights = {k: v.contiguous() for k, v in timm.create_model(arch).state_dict().items()}
    repo = cache / f"models--timm--{tag}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    save_file(weights, snapshot / "model.safetensors")
    if config:
        cfg = timm.models.get_pretrained_cfg(tag).to_dict()
        (snapshot / "config.json").write_text(json.dumps({"architecture": arch, "num_classes": cfg["num_classes"],
                                                          "pretrained_cfg": cfg}))
    return weights

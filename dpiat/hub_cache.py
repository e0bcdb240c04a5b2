"""Weights at hand put into the Hugging Face hub cache under a pretrained tag, so that the tag's name then loads
offline (``dpiat cache-tag``; docs/pretrained-sources.md, "Using a tag offline").

    >>> from dpiat.hub_cache import cache_tag
    >>> cache_tag("tf_efficientnet_lite0.in1k", "zoo:efficientnet_lite0_imagenet")   # doctest: +SKIP
    PosixPath('~/.cache/huggingface/hub/models--timm--tf_efficientnet_lite0.in1k/snapshots/c1ca8a98.../model.safetensors')
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dpiat.errors import DpiatError, WeightsError
from dpiat.pretrained import WEIGHT_FILES, _registry_cfg, hub_cache


def cache_tag(tag: str, weights: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Put ``weights`` (``zoo:<name>`` of :mod:`dpiat.zoo`, or a safetensors / torch state-dict file of the tag's
    architecture) into the hub cache (``cache_dir``, default :func:`hub_cache`) as timm's download of ``tag``
    (``arch.tag``) would lie there, so that the tag then loads offline: ``models--<owner>--<name>/snapshots/
    <commit>/model.safetensors`` with ``refs/main`` naming ``<commit>``, here the SHA-1 of the file written (the
    same weights give the same snapshot). The weights are first loaded strictly into the architecture as timm
    builds it for that tag (its classes): a file that does not fit is refused and nothing is written. Returns
    the file written."""
    from safetensors.torch import save

    if tag.startswith("hf-hub:") or "." not in tag:
        example = next(iter(_tags_of(tag)), f"{tag}.<tag>")
        raise DpiatError(f"{tag!r} is an architecture: give the tag too ({tag}.<tag>, e.g. {example}; dpiat "
                         "recommend lists them)")
    full, cfg = _registry_cfg(tag)
    if not cfg.get("hf_hub_id"):
        raise DpiatError(f"timm fetches {full} from a URL, not from the Hugging Face hub: give the weights to "
                         "dpiat transfer --source-weights FILE instead")
    filename = cfg.get("hf_hub_filename") or WEIGHT_FILES[0]
    if not filename.endswith(".safetensors"):
        raise DpiatError(f"timm reads {full} from {filename!r}, not a safetensors file: give the weights to dpiat "
                         "transfer --source-weights FILE instead")
    model = _tag_model(full, cfg, weights)
    sd = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    data = save(sd, metadata={"format": "pt"})
    commit = hashlib.sha1(data).hexdigest()
    repo, _, revision = cfg["hf_hub_id"].partition("@")
    root = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache()
    folder = root / f"models--{repo.replace('/', '--')}"
    path = folder / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / (revision or "main")).write_text(commit)
    return path


def _tags_of(arch: str) -> list[str]:
    import timm

    return timm.list_pretrained(f"{arch}.*") if not arch.startswith("hf-hub:") else []


def _tag_model(full: str, cfg: dict, weights: str):
    """The tag's architecture, as timm builds it for the tag (its classes and channels), holding ``weights``."""
    import timm

    from dpiat.weights import load_weights

    arch = full.split(".", 1)[0]
    kwargs = {"num_classes": cfg.get("num_classes") or 1000}
    if weights.startswith("zoo:"):
        from dpiat.zoo import load_zoo
        from dpiat.zoo_index import ZOO_ARCHITECTURES

        name = weights[len("zoo:"):]
        if ZOO_ARCHITECTURES.get(name, arch) != arch:
            raise DpiatError(f"{weights} is a {ZOO_ARCHITECTURES[name]}, not a {arch}: put it under a tag of "
                             f"{ZOO_ARCHITECTURES[name]} (e.g. {next(iter(_tags_of(ZOO_ARCHITECTURES[name])), '')})")
        return load_zoo(name, **kwargs)
    if not Path(weights).is_file():
        raise DpiatError(f"--weights {weights!r}: no such file (a safetensors or torch state dict of {arch}, or "
                         "zoo:<name>)")
    model = timm.create_model(arch, **kwargs)
    try:
        load_weights(model, weights)
    except WeightsError as e:
        detail = str(e).split("\n  ")[1:2]
        raise DpiatError(f"the weights in {weights} do not fit {arch} (the architecture of {full}, "
                         f"{kwargs['num_classes']} classes): {'; '.join(detail) or e}") from None
    return model

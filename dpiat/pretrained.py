"""A source named by a pretrained tag, built with its pretrained weights: local copy first, no retry loop.

    >>> import dpiat
    >>> src = dpiat.create_model("resnet18.a1_in1k", pretrained=True)     # timm's weights of that tag
    >>> report = dpiat.transfer("resnet18.a1_in1k", "resnet34")          # the same: a tag means its weights
    >>> dpiat.create_model("resnet18", pretrained=True)                  # a bare name: timm's default tag

Names: ``<architecture>.<tag>`` as ``timm.list_pretrained()`` lists them (``convnext_tiny.fb_in22k``), or
``hf-hub:<repo>`` (``hf-hub:timm/resnet18.a1_in1k``). The weights are loaded by timm's own loader (its
checkpoint filters, a new classifier when ``num_classes`` differs, the stem adapted to ``in_chans``), from a
file read safely (safetensors, or ``torch.load(weights_only=True)``).

Where the file comes from, first that applies:

1. the local Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), or torch's hub folder for the few tags that timm fetches from a URL: a file
   there is used as it is, without asking the hub for a newer one, so a pre-downloaded tag works offline;
2. a download, unless ``HF_HUB_OFFLINE=1``, and only after the hub answered a connection within
   :data:`CONNECT_TIMEOUT` seconds.

Otherwise :class:`PretrainedUnavailableError` (a ``DpiatError``) names the tag and the fixes, in one line,
within seconds: huggingface_hub would retry an unreachable hub for about 25 s before failing.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from dpiat.errors import DpiatError, UnknownNameError

CONNECT_TIMEOUT = 3.0  # seconds: how long the hub (or the proxy in between) may take to accept a connection
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a hub repository, in order
FILE_HINT = "give a weights file instead (dpiat.load_weights; dpiat transfer --source-weights FILE)"


ZOO_HINT = "--source-weights zoo:{zoo}"  # how the CLI names a dpiat.zoo entry (the harness: source.weights=zoo:...)


class PretrainedUnavailableError(DpiatError):
    """Pretrained weights that are neither in the local cache nor downloadable now. Where :mod:`dpiat.zoo`
    installs the same architecture's weights offline, the message offers them first."""

    def __init__(self, name: str, where: str, why: str, file_hint: str = FILE_HINT, zoo_hint: str = ZOO_HINT):
        self.name, self.where, self.why = name, where, why
        super().__init__(self._text(file_hint, zoo_hint))

    def _text(self, file_hint: str, zoo_hint: str) -> str:
        fetch = f"python -c \"import timm; timm.create_model('{self.name}', pretrained=True)\""
        zoo = _zoo_for(self.name)
        offline_copy = (f"use the {zoo[0]} weights installed with dpiat ({zoo_hint.format(zoo=zoo[0])}), or put "
                        f"them under this tag: dpiat cache-tag {self.name} --weights zoo:{zoo[0]}; or " if zoo else "")
        return (f"cannot load the pretrained weights of {self.name!r} ({self.where}): {self.why}. Fix: "
                f"{offline_copy}connect to the internet; or pre-download them on a connected machine ({fetch}), "
                f"copy its hub cache (~/.cache/huggingface/hub) into {hub_cache()} and set HF_HUB_OFFLINE=1; or "
                f"{file_hint}")

    def with_hint(self, file_hint: str, zoo_hint: str = "source.weights=zoo:{zoo}") -> "PretrainedUnavailableError":
        """The same error, its fixes worded for another interface (by default the harness's source.weights)."""
        return PretrainedUnavailableError(self.name, self.where, self.why, file_hint, zoo_hint)


def _zoo_for(name: str) -> list[str]:
    """The :mod:`dpiat.zoo` entries of ``name``'s architecture (``arch.tag``); none where the zoo's package is
    not installed."""
    from dpiat.zoo_index import zoo_for

    return zoo_for(name.split(".", 1)[0]) if not name.startswith("hf-hub:") else []


def is_pretrained_name(name: object) -> bool:
    """True for a name that says which trained weights: ``arch.tag`` or ``hf-hub:<repo>``."""
    return isinstance(name, str) and (name.startswith("hf-hub:") or "." in name)


def hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _cache_words() -> str:
    return f"hub cache ({hub_cache()})"


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _reachable(url: str) -> str | None:
    """None when ``url``'s host (or the proxy for it) accepts a connection within CONNECT_TIMEOUT, else why not."""
    target = urlparse(url)
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("ALL_PROXY") \
        or os.environ.get("all_proxy")
    host = urlparse(proxy) if proxy else target
    port = host.port or (443 if (host.scheme or "https") == "https" else 80)
    try:
        with socket.create_connection((host.hostname, port), timeout=CONNECT_TIMEOUT):
            return None
    except OSError as e:
        reason = e.strerror or type(e).__name__
        return f"{host.hostname} cannot be reached ({reason})"


def _cached_hub_file(repo: str, filename: str, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=str(hub_cache()), revision=revision)
    return found if isinstance(found, str) else None


def _hub_file(name: str, repo: str, filenames: tuple[str, ...], revision: str | None) -> str:
    """The first of ``filenames`` that the hub repository has: from the cache, else downloaded."""
    where = f"{repo} on the Hugging Face hub"
    for filename in filenames:
        found = _cached_hub_file(repo, filename, revision)
        if found:
            return found
    if offline():
        raise PretrainedUnavailableError(name, where, f"not in the local {_cache_words()}, and HF_HUB_OFFLINE "
                                                      "is set")
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    why = _reachable(constants.ENDPOINT)
    if why:
        raise PretrainedUnavailableError(name, where, f"not in the local {_cache_words()}, and {why}")
    for filename in filenames:
        try:
            return hf_hub_download(repo, filename, revision=revision, cache_dir=str(hub_cache()))
        except EntryNotFoundError:
            continue
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PretrainedUnavailableError(name, where, f"the download failed ({first[:200]})") from None
    raise PretrainedUnavailableError(name, where, f"the repository has none of {', '.join(filenames)}")


def _url_file(name: str, url: str) -> str | None:
    """The torch-hub copy of ``url`` when cached; None when it may be downloaded (timm does that)."""
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if cached.is_file():
        return str(cached)
    where = url
    if offline():
        raise PretrainedUnavailableError(name, where, f"not in torch's hub folder ({cached.parent}), and "
                                                      "HF_HUB_OFFLINE is set")
    why = _reachable(url)
    if why:
        raise PretrainedUnavailableError(name, where, f"not in torch's hub folder ({cached.parent}), and {why}")
    return None


def _registry_cfg(name: str) -> tuple[str, dict]:
    """(``arch.tag``, timm's pretrained config of it) for ``arch.tag`` or a bare ``arch`` (its default tag); the
    architecture is checked by the caller (:func:`dpiat.models.create_model`, which imports this module)."""
    import timm
    from timm.models import get_pretrained_cfg

    arch, _, tag = name.partition(".")
    if tag:
        known = timm.list_pretrained(f"{arch}.*")
        if name not in known:
            raise UnknownNameError(f"pretrained tag of {arch}", name, known or [f"(none: {arch} has no pretrained "
                                                                                "weights in timm)"])
    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise DpiatError(f"timm has no pretrained weights for {name!r}: pick a name from "
                         f"timm.list_pretrained('{arch}*') or give a weights file")
    full = name if tag else f"{arch}.{cfg.tag}" if cfg.tag else arch
    return full, cfg.to_dict()


@contextmanager
def _quiet_timm_loader():
    """timm's INFO lines about the file it loads (Hydra shows INFO): the caller says where the weights came from."""
    loggers = [logging.getLogger(n) for n in ("timm.models._builder", "timm.models._helpers", "timm.models._hub")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def load_pretrained(name: str, **kwargs):
    """``name`` (``arch.tag``, a bare ``arch`` for timm's default tag, or ``hf-hub:<repo>``) built by
    ``timm.create_model`` with its pretrained weights; ``kwargs`` go to timm (num_classes, in_chans, ...).
    The model's ``pretrained_cfg["file"]`` is the file the weights came from."""
    with _quiet_timm_loader():
        return _load_pretrained(name, **kwargs)


def _load_pretrained(name: str, **kwargs):
    import timm

    if name.startswith("hf-hub:"):
        repo, _, revision = name[len("hf-hub:"):].partition("@")
        config = _hub_file(name, repo, ("config.json",), revision or None)
        weights = _hub_file(name, repo, WEIGHT_FILES, revision or None)
        folder = Path(weights).parent
        if Path(config).parent != folder:  # two snapshots: timm's local-dir reads one folder
            raise DpiatError(f"{name}: config.json and the weights sit in different snapshots of the hub cache "
                             f"({Path(config).parent}, {folder}); delete one of them")
        model = timm.create_model(f"local-dir:{folder}", pretrained=True, **kwargs)
        model.pretrained_cfg = {**(getattr(model, "pretrained_cfg", None) or {}), "file": weights,
                                "hf_hub_id": repo}
        return model
    full, cfg = _registry_cfg(name)
    if cfg.get("hf_hub_id"):
        repo, _, revision = cfg["hf_hub_id"].partition("@")
        names = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else WEIGHT_FILES
        path = _hub_file(full, repo, names, revision or None)
    else:
        path = _url_file(full, cfg["url"])
    overlay = {"file": path, "source": ""} if path else {}
    model = timm.create_model(full, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    if path is None:  # downloaded by timm from its URL
        model.pretrained_cfg = {**model.pretrained_cfg, "file": _url_file(full, cfg["url"])}
    return model


__all__ = ["load_pretrained", "is_pretrained_name", "PretrainedUnavailableError", "hub_cache", "offline",
           "CONNECT_TIMEOUT"]

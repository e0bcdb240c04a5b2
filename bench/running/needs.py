"""Files a plan's runs read that nothing in the plan makes, and where to get them.

An init option that names a file (``checkpoint``: the GHN-2 of ``init=ghn``) must exist before the runs start,
unless a prerequisite of the grid writes it (``bench/train_ghn.py ... out_dir=<folder>`` makes
``<folder>/ghn.pt``). Each missing file gets one line saying which runs need it and what to do: the official
GHN-2 checkpoints of ppuda (``paper_imagenet`` names ``${paths.checkpoints}/ghn2_imagenet.pt``) with where to
download them and how to check the download (docs/ghn.md, section 1), any other file with the option that
points elsewhere.

    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"init": {"name": "ghn", "checkpoint": "/nowhere/ghn2_imagenet.pt"}})
    >>> print(missing_files([cfg], []))  # doctest: +ELLIPSIS
    ['the ghn runs need /nowhere/ghn2_imagenet.pt (init.checkpoint), the official GHN-2 checkpoint: get ...']
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

PPUDA = "github.com/facebookresearch/ppuda"
# The released GHN-2 checkpoints: file name in ppuda's checkpoints/ folder -> git blob id (docs/ghn.md, section 1).
OFFICIAL_GHN2 = {
    "ghn2_imagenet.pt": "7b5d6733e9fdf0069bc6186cad3a0b1b54fda68d",
    "ghn2_cifar10.pt": "4f290e0fad1b73066eeabb50be52e0c377d0b15b",
}
FILE_OPTIONS = ("checkpoint",)  # init options whose value is a file the run reads


def made_by_prerequisites(path: str, prerequisites: Iterable[Any]) -> bool:
    """A prerequisite writes ``path``: one of its ``<key>_dir=<folder>`` arguments holds it (e.g. out_dir)."""
    target = Path(path).resolve()
    for task in prerequisites:
        for arg in getattr(task, "argv", task)[1:]:
            key, sep, value = str(arg).partition("=")
            if sep and key.endswith("dir") and value and Path(value).resolve() in target.parents:
                return True
    return False


def describe(path: str, option: str, inits: list[str]) -> str:
    """One line: which runs need ``path`` and how to get it or point elsewhere."""
    who = f"the {'/'.join(inits)} runs need {path} (init.{option})"
    blob = OFFICIAL_GHN2.get(Path(path).name)
    if blob:
        name = Path(path).name
        return (f"{who}, the official GHN-2 checkpoint: get checkpoints/{name} of {PPUDA}, save it as {path} and "
                f"check it with `git hash-object {path}` (must print {blob}; docs/ghn.md section 1), or point to "
                f"your copy with init.{option}=<path>")
    return (f"{who}, which does not exist and no prerequisite of the grid writes: give init.{option}=<path of an "
            f"existing file>" + (" (an official ghn2_*.pt of " + PPUDA + ", or a bench/train_ghn.py out_dir's ghn.pt)"
                                 if "ghn" in inits else ""))


def missing_files(cfgs: Iterable[Any], prerequisites: Iterable[Any]) -> list[str]:
    """One line per file that the runs of ``cfgs`` read, that does not exist and that no prerequisite writes."""
    prerequisites = list(prerequisites)
    needed: dict[tuple[str, str], list[str]] = {}
    for cfg in cfgs:
        for option in FILE_OPTIONS:
            value = cfg.init.get(option)
            if not isinstance(value, str) or not value or Path(value).exists():
                continue
            if made_by_prerequisites(value, prerequisites):
                continue
            inits = needed.setdefault((value, option), [])
            if cfg.init.name not in inits:
                inits.append(cfg.init.name)
    return [describe(path, option, inits) for (path, option), inits in needed.items()]

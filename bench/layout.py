"""Where runs live: the experiment folder's tree, the path half of every run's identity.

::

    <paths.runs>/<experiment>/           experiment_path
        <pair>/<init>/seed<k>/           target_path: one target run (bench/running/folder.py says what is in it)
        sources/<model>/seed<k>/         source_path: a source's training, shared by the experiment's targets
        manifests/                       bench/sweep.py's task lists, submission records and job logs
        ghn/                             a GHN-2 meta-training, where an experiment's grid puts one (out_dir)

:class:`bench.running.folder.RunFolder` builds a run's folder from these, Hydra's output folder is the same
path (the ``run_folder`` resolver of conf/config.yaml: :func:`hydra_dir`), the sweep plan finds finished runs
with them and the table reads runs through :func:`target_folders`.

    >>> str(target_path(experiment_path("results/runs", "proxy"), "tinynet_d_to_e", "dpiat", 2))
    'results/runs/proxy/tinynet_d_to_e/dpiat/seed2'
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

SOURCES = "sources"
MANIFESTS = "manifests"  # never named seed*, so no target folder is found in it


def experiment_path(runs: str | Path, experiment: str) -> Path:
    return Path(runs) / experiment


def target_path(experiment_dir: str | Path, pair: str, init: str, seed: int) -> Path:
    return Path(experiment_dir) / pair / init / f"seed{seed}"


def source_path(experiment_dir: str | Path, model: str, seed: int) -> Path:
    return Path(experiment_dir) / SOURCES / model / f"seed{seed}"


def target_folders(experiment_dir: str | Path) -> Iterator[Path]:
    """The target run folders under an experiment folder (started or not), in path order."""
    for seed_dir in sorted(Path(experiment_dir).glob("*/*/seed*")):
        if seed_dir.parent.parent.name != SOURCES and seed_dir.is_dir():
            yield seed_dir


def hydra_dir(kind: str, cfg: Any) -> Path:
    """Hydra's output folder for a composed config: the ``run_folder`` resolver of the conf/ files.

    ``target`` (hydra.run.dir of bench/run.py), ``source`` (of bench/train_source.py), ``experiment`` and
    ``target_subdir`` (hydra.sweep.dir and .subdir of a ``-m`` sweep: the same folders as single runs).
    """
    experiment = experiment_path(cfg.paths.runs, cfg.experiment_name)
    if kind == "target":
        return target_path(experiment, cfg.pair.name, cfg.init.name, cfg.seed)
    if kind == "target_subdir":
        return target_path("", cfg.pair.name, cfg.init.name, cfg.seed)
    if kind == "source":
        return source_path(experiment, cfg.pair.source, cfg.source.seed)
    if kind == "experiment":
        return experiment
    raise ValueError(f"run_folder: unknown kind {kind!r} (target, target_subdir, source, experiment)")

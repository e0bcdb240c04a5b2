"""The run folder's ``run.json``: its schema, and atomic reads and writes.

A run folder is ``results/runs/<experiment>/<pair>/<init>/seed<k>/``; its ``run.json`` is the single
source of truth that sweeps, resumes and the aggregation read. Schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "status": "running" | "finished" | "failed",
      "failure_reason": null | "loss became NaN at epoch 3, step 17",
      "failure_kind": null | "diverged" | "error",   # a diverged run is not retried when re-run
      "experiment": "proxy", "pair": "tinynet_d_to_e", "init": "dpiat", "seed": 0,
      "source": "tinynet_d" | null,          # timm name of the source (null for source-free inits)
      "target": "tinynet_e",                 # timm name of the target
      "data": "fashion_mnist",
      "epochs": 4,                           # planned number of training epochs
      "similarity": 0.92 | null,             # dpiat.similarity(source, target) when there is a source
      "init_metrics": null | {"val_top1": .., "val_top5": .., "val_loss": .., "val_samples": ..},  # before training
      "metrics": [                           # one entry per finished epoch, epoch counts from 1
        {"epoch": 1, "val_top1": 0.61, "val_top5": 0.97, "val_loss": 1.02, "train_loss": 1.40,
         "images_seen": 5000, "wall_seconds": 40.2, "val_samples": 10000},
        # images_seen and wall_seconds count from the start of training (cumulative, across resumes);
        # train_loss is the epoch's mean; val_samples the images validated (all processes together)
        ...
      ],
      "best_val_top1": 0.81 | null, "final_val_top1": 0.80 | null,
      "init_report": {...},                  # what the init method returned (dpiat.inits)
      "source_weights": null | {"weights": "train" | "timm" | "none" | "file" | "zoo:<name>", ...},
      "config": {...},                       # the resolved Hydra config
      "git_commit": "abc123..." | null, "git_dirty": false | null,
      "versions": {"python": .., "torch": .., "timm": .., "lightning": .., "cuda": ..},
      "hardware": {"device": "cpu" | "NVIDIA H100 ...", "n_devices": 1, "cpu_count": 2, "hostname": ..},
      "slurm": null | {"job_id": .., "array_job_id": .., "array_task_id": .., "restart_count": ..},
      "wandb_run_id": null | "...", "data_hash": "sha1 of the data file list (or of the in-memory arrays)",
      "wall_seconds": 312.5,                 # summed over resumed segments
      "segments": 2,                         # how many times the run was started or resumed
      "updated": "2026-11-25T21:52:43Z"
    }

Accuracies are fractions in [0, 1]. Writes are atomic (temp file in the same folder, fsync, rename), so
a killed process never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dpiat.atomic import atomic_open

SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed")
RUN_FILE = "run.json"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the new file, never a mix."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_run(path: str | os.PathLike) -> dict:
    """Read a run.json (or the run.json inside a run folder). Raises ValueError if malformed."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_FILE
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(run, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(run).__name__}")
    missing = [k for k in ("status", "experiment", "pair", "init", "seed", "metrics") if k not in run]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    if run["status"] not in STATUSES:
        raise ValueError(f"{path}: status {run['status']!r} is not one of {STATUSES}")
    if not isinstance(run["metrics"], list):
        raise ValueError(f"{path}: 'metrics' must be a list")
    return run

"""``run.json``, the record of one run: its schema, the writer's steps and the readers' checks, in one place.

The harness writes a run.json when a run starts and after every epoch; a resume, a sweep plan and the
aggregation read it. :data:`FIELDS` lists its keys in the order they are written, each with its default and
meaning, and every writer and reader here goes through that list::

    >>> [f.name for f in FIELDS][:8]
    ['schema_version', 'status', 'failure_reason', 'failure_kind', 'experiment', 'pair', 'init', 'seed']
    >>> list(epoch_entry(epoch=1, val_top1=0.5, val_top5=0.9, val_loss=1.2, train_loss=1.4, images_seen=5000,
    ...                  val_samples=1000, wall_seconds=12.5))[:3]
    ['epoch', 'val_top1', 'val_top5']

Adding a key: append a :class:`Field` with its default, or an :data:`EPOCH_FIELDS` entry for an optional
per-epoch value (and a :class:`RunRecord` field with its check when a table reads it). Files written before
it lack the key and still read; the writer adds a top-level key with its default when such a run resumes.
Accuracies are fractions in [0, 1]; ``schema_version`` is 1 for every file so far.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
STATUSES = ("running", "finished", "failed")
REQUIRED = ("status", "experiment", "pair", "init", "seed", "metrics")  # what any decision on a run reads


@dataclass(frozen=True)
class Field:
    name: str
    default: Any
    doc: str
    segment: bool = False  # rewritten at every start and resume of the run


FIELDS: tuple[Field, ...] = (
    Field("schema_version", SCHEMA_VERSION, "version of this schema", segment=True),
    Field("status", "running", "running | finished | failed", segment=True),
    Field("failure_reason", None, "why it failed, e.g. 'training loss became nan at epoch 3, step 17'", segment=True),
    Field("failure_kind", None, "null | diverged (not retried when re-run) | error", segment=True),
    Field("experiment", None, "experiment_name", segment=True),
    Field("pair", None, "the pair's name (a conf/pair/ file; 'sources' for a source's training)", segment=True),
    Field("init", None, "the init method's name ('random' for a source's training)", segment=True),
    Field("seed", None, "the run seed (a source's: source.seed)", segment=True),
    Field("source", None, "timm name of the pair's source network, or null", segment=True),
    Field("target", None, "timm name of the network trained", segment=True),
    Field("data", None, "the data set's name", segment=True),
    Field("epochs", None, "planned training epochs", segment=True),
    Field("config", None, "the resolved config: what the run computes with, compared on every restart",
          segment=True),
    Field("git_commit", None, "commit of the checkout that ran it (null outside git)", segment=True),
    Field("git_dirty", None, "uncommitted changes to tracked files", segment=True),
    Field("versions", None, "python, torch, torchvision, timm, lightning, torchmetrics, hydra, dpiat, cuda, cudnn",
          segment=True),
    Field("hardware", None, "device, n_devices, cpu_count, torch_threads, hostname, cpu_model, cpu_capability, "
          "torch_interop_threads", segment=True),
    Field("slurm", None, "null, or job_id, array_job_id, array_task_id, restart_count", segment=True),
    Field("similarity", None, "dpiat.similarity(source, target) when the pair has a source"),
    Field("init_metrics", None, "val_top1, val_top5, val_loss, val_samples of the initialised target, before "
          "training, and val_top1_bn, val_loss_bn unless eval.bn_batches=0"),
    Field("metrics", [], "one entry per finished epoch (EPOCH_FIELDS)"),
    Field("best_val_top1", None, "highest val_top1 over the epochs so far"),
    Field("final_val_top1", None, "val_top1 of the last planned epoch, once finished"),
    Field("init_report", None, "what the init method returned (dpiat.inits)"),
    Field("source_weights", None, "where the source's weights came from: weights = train | timm | none | file | "
          "zoo:<name>, and details"),
    Field("data_hash", None, "sha1 of the data's file list (or of the in-memory arrays)"),
    Field("wall_seconds", 0.0, "seconds of all segments together"),
    Field("segments", 0, "how many times the run was started or resumed"),
    Field("wandb_run_id", None, "the W&B run it logs to (derived from the run's identity), or null"),
    Field("updated", None, "UTC time of the last write"),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)

EPOCH_FIELDS: dict[str, str] = {
    "epoch": "counts from 1",
    "val_top1": "validation top-1 after the epoch",
    "val_top5": "validation top-5",
    "val_loss": "validation cross-entropy",
    "train_loss": "mean training loss of the epoch",
    "images_seen": "training images since the start of training (cumulative across resumes)",
    "val_samples": "images validated, all processes together",
    "wall_seconds": "seconds since the start of training (cumulative across resumes)",
    "val_top1_bn": "validation top-1 with BatchNorm statistics recomputed on eval.bn_batches fixed training "
                   "batches (bench/running/bn_eval.py); absent when eval.bn_batches=0",
    "val_loss_bn": "validation cross-entropy, BatchNorm recalibrated",
}
EPOCH_REQUIRED = tuple(EPOCH_FIELDS)[:8]  # every entry has these; the keys after them are optional


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------


def start_segment(existing: dict | None, identity: dict, provenance: dict, wandb_run_id: str | None) -> dict:
    """The record at a start or resume: ``existing`` (None for a new run) with this segment's fields rewritten.

    ``identity`` holds experiment .. config, ``provenance`` git_commit .. slurm. Keys keep their place in
    ``existing``; missing ones are added in schema order, so a new file's keys are in :data:`FIELDS` order.
    ``wandb_run_id`` None keeps the recorded id.
    """
    values = {"schema_version": SCHEMA_VERSION, "status": "running", "failure_reason": None, "failure_kind": None,
              **identity, **provenance}
    segment = [f.name for f in FIELDS if f.segment]
    if sorted(values) != sorted(segment):
        raise KeyError(f"a segment rewrites exactly {segment}, got {sorted(values)}")
    record = dict(existing or {})
    record.update({k: values[k] for k in segment})
    for f in FIELDS:
        record.setdefault(f.name, copy.deepcopy(f.default))
    record["final_val_top1"] = None
    record["segments"] = int(record["segments"]) + 1
    if wandb_run_id is not None:
        record["wandb_run_id"] = wandb_run_id
    return record


def epoch_entry(**values: Any) -> dict:
    """One ``metrics`` entry: the :data:`EPOCH_REQUIRED` keys and any optional ones, in :data:`EPOCH_FIELDS` order."""
    unknown, missing = set(values) - set(EPOCH_FIELDS), set(EPOCH_REQUIRED) - set(values)
    if unknown or missing:
        raise KeyError(f"an epoch entry holds {list(EPOCH_REQUIRED)} and optionally the other keys of EPOCH_FIELDS; "
                       f"unknown: {sorted(unknown)}, missing: {sorted(missing)}")
    return {k: values[k] for k in EPOCH_FIELDS if k in values}


def updated_now() -> str:
    """The ``updated`` stamp."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------


def read_run(path: str | os.PathLike) -> dict:
    """A run.json (or the run.json inside a run folder) with the keys any decision reads; ValueError if not."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_FILE
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(run, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(run).__name__}")
    missing = [k for k in REQUIRED if k not in run]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    if run["status"] not in STATUSES:
        raise ValueError(f"{path}: status {run['status']!r} is not one of {STATUSES}")
    if not isinstance(run["metrics"], list):
        raise ValueError(f"{path}: 'metrics' must be a list")
    return run


@dataclass(frozen=True)
class RunRecord:
    """What a table reads from one run.json, checked and typed."""

    path: Path
    pair: str
    init: str
    seed: int
    status: str
    failure_reason: str | None
    source: str | None
    target: str
    data: str
    epochs: int  # planned
    similarity: float | None
    init_top1: float | None  # before any training (epoch 0)
    top1: dict[int, float] = field(default_factory=dict)  # epoch -> val_top1
    init_top1_bn: float | None = None  # the same, BatchNorm recalibrated (absent in runs without it)
    top1_bn: dict[int, float] = field(default_factory=dict)  # epoch -> val_top1_bn

    @property
    def key(self) -> tuple[str, str, int]:
        """Runs are comparable only when these agree."""
        return (self.target, self.data, self.epochs)

    def curve(self, n: int, bn: bool = False) -> list[float] | None:
        """val_top1 (``bn``: val_top1_bn) at epochs 1..n, or None if the run has not got all of them."""
        values = self.top1_bn if bn else self.top1
        if any(e not in values for e in range(1, n + 1)):
            return None
        return [values[e] for e in range(1, n + 1)]

    def describe(self, n: int) -> str:
        """'seed2 failed (1/4 epochs): <reason>', for notes."""
        done = sum(e in self.top1 for e in range(1, n + 1))
        text = f"seed{self.seed} {self.status} ({done}/{n} epochs)"
        return text + (f": {self.failure_reason}" if self.status == "failed" and self.failure_reason else "")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _integer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _name(x: Any) -> bool:
    return isinstance(x, str) and bool(x)


def _fraction(x: Any, what: str, path: Path) -> float:
    if not _number(x) or not 0 <= x <= 1:
        hint = " (a percentage? accuracies are fractions)" if _number(x) and 1 < x <= 100 else ""
        raise ValueError(f"{path}: {what} must be a fraction in [0, 1], got {x!r}{hint}")
    return float(x)


# key, check, what it must be: the values a table reads, in the order they are checked
_TABLE_CHECKS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("target", _name, "a model name"),
    ("data", _name, "a data set name"),
    ("epochs", lambda v: _integer(v) and v >= 1, "a positive integer"),
    ("seed", _integer, "an integer"),
    ("init", lambda v: isinstance(v, str), "a string"),
    ("pair", _name, "a pair name"),
    ("source", lambda v: v is None or isinstance(v, str), "a model name or null"),
    ("similarity", lambda v: v is None or _number(v), "a number or null"),
    ("init_metrics", lambda v: v is None or isinstance(v, dict), "an object or null"),
)


def load_record(path: str | os.PathLike) -> RunRecord:
    """Read and check everything a table needs from one run.json; ValueError (naming the path) if malformed."""
    path = Path(path)
    raw = read_run(path)
    for key, ok, what in _TABLE_CHECKS:
        if not ok(raw.get(key)):
            raise ValueError(f"{path}: {key!r} must be {what}, got {raw.get(key)!r}")
    init = raw.get("init_metrics") or {}
    init_top1, init_top1_bn = (None if init.get(k) is None else _fraction(init[k], f"init_metrics.{k}", path)
                               for k in ("val_top1", "val_top1_bn"))
    top1, top1_bn = {}, {}
    for i, m in enumerate(raw["metrics"]):
        if not isinstance(m, dict):
            raise ValueError(f"{path}: metrics[{i}] must be an object, got {m!r}")
        epoch = m.get("epoch")
        if not (_integer(epoch) and epoch >= 1):
            raise ValueError(f"{path}: metrics[{i}].epoch must be an integer >= 1, got {epoch!r}")
        top1[epoch] = _fraction(m.get("val_top1"), f"metrics[{i}].val_top1", path)  # a resumed epoch: last wins
        if m.get("val_top1_bn") is not None:
            top1_bn[epoch] = _fraction(m["val_top1_bn"], f"metrics[{i}].val_top1_bn", path)
    reason, similarity = raw.get("failure_reason"), raw.get("similarity")
    return RunRecord(path, raw["pair"], raw["init"], raw["seed"], raw["status"],
                     None if reason is None else str(reason), raw.get("source"), raw["target"], raw["data"],
                     raw["epochs"], None if similarity is None else float(similarity), init_top1, top1,
                     init_top1_bn, top1_bn)

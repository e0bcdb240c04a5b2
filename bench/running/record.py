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

A run killed outright (SIGKILL, a node lost, out of memory) cannot write ``status``: its run.json says
``running`` for ever. So a running run records its ``owner`` (host, pid and that process's start time) and keeps
``updated`` fresh (a heartbeat, at least every :data:`HEARTBEAT_SECONDS` while it trains), and a reader asks
:func:`liveness`: on the owner's host the process itself is checked; from another host the heartbeat's age.
A run nobody trains any more is *interrupted*: resumable (:meth:`bench.running.folder.RunFolder.decide`
resumes it), never averaged into a table (:mod:`bench.results.cells`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
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
    Field("recipe", None, "the fine-tuning recipe's name (config recipe, one of grid.recipes), or null",
          segment=True),
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
    Field("owner", None, "the process training the run (this segment's): host (its hostname), pid, pid_start "
          "(the process's start in clock ticks after boot, /proc/<pid>/stat, so that a recycled pid is not "
          "taken for it; null off Linux) and boot_id (the kernel's, null off Linux); null once that process "
          "stopped without finishing (interrupted: Ctrl-C, SIGTERM, a SLURM requeue); see liveness()",
          segment=True),
    Field("similarity", None, "dpiat.similarity(source, target) when the pair has a source"),
    Field("init_metrics", None, "val_top1, val_top5, val_loss, val_samples of the initialised target, before "
          "training, and val_top1_bn, val_loss_bn unless eval.bn_batches=0, heldout_top1(_bn) when data.heldout > 0"),
    Field("metrics", [], "one entry per finished epoch (EPOCH_FIELDS)"),
    Field("best_val_top1", None, "highest val_top1 over the epochs so far"),
    Field("final_val_top1", None, "val_top1 of the last planned epoch, once finished"),
    Field("init_report", None, "what the init method returned (dpiat.inits)"),
    Field("source_weights", None, "where the source's weights came from: weights = train | timm | none | file | "
          "zoo:<name>, and details"),
    Field("data_hash", None, "sha1 of the data's file list (or of the in-memory arrays)"),
    Field("wall_seconds", 0.0, "seconds of all segments together (a segment killed outright: up to its last "
          "finished epoch)"),
    Field("segments", 0, "how many times the run was started or resumed"),
    Field("wandb_run_id", None, "the W&B run it logs to (derived from the run's identity), or null"),
    Field("updated", None, "UTC time of the last write; while the run trains, a heartbeat: rewritten at least "
          "every HEARTBEAT_SECONDS"),
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
    "heldout_top1": "top-1 on the held-out training images (data.heldout: a fixed slice of the training split "
                    "that no run trains on; what a recipe is selected on); absent when data.heldout=0",
    "heldout_top1_bn": "the same, BatchNorm recalibrated; absent when data.heldout=0 or eval.bn_batches=0",
}
EPOCH_REQUIRED = tuple(EPOCH_FIELDS)[:8]  # every entry has these; the keys after them are optional


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------


def start_segment(existing: dict | None, identity: dict, provenance: dict, wandb_run_id: str | None) -> dict:
    """The record at a start or resume: ``existing`` (None for a new run) with this segment's fields rewritten.

    ``identity`` holds experiment .. config, ``provenance`` git_commit .. slurm; ``owner`` is this process. Keys
    keep their place in ``existing``; missing ones are added in schema order, so a new file's keys are in
    :data:`FIELDS` order. ``wandb_run_id`` None keeps the recorded id.
    """
    values = {"schema_version": SCHEMA_VERSION, "status": "running", "failure_reason": None, "failure_kind": None,
              **identity, **provenance, "owner": owner_now()}
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
# Who trains a run, and whether it still does
# ---------------------------------------------------------------------------------------------------------

# A training run rewrites ``updated`` at least this often (bench/running/recorder.py beats at batch ends, so a
# gap can be longer only outside batches: start-up, an init method's transfer, a checkpoint save).
HEARTBEAT_SECONDS = 60
# From another host, a run whose heartbeat is older than this is taken for dead. Thirty heartbeats: a slow
# shared file system, a long gap between batches (a big init, a large checkpoint written to NFS) or the clocks
# of two hosts a few minutes apart do not make a live run look dead, and a killed one is resumable by the next
# sweep within half an hour. A false "dead" is the costly mistake: two processes would train one folder.
STALE_AFTER_SECONDS = 30 * 60
_HAS_PROC = Path("/proc/self/stat").exists()  # Linux: a pid's start time tells a reused pid from its owner


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces), or None if no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (/proc/<pid>/stat field 22); None without one."""
    fields = _proc_stat(pid) if _HAS_PROC else None
    return int(fields[19]) if fields and len(fields) > 19 else None


def boot_id() -> str | None:
    """This boot of the kernel (pids and start times count from it), or None off Linux."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def owner_now() -> dict:
    """run.json's ``owner`` for this process."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": process_start(pid), "boot_id": boot_id()}


def _owner_alive(owner: dict) -> bool:
    """Whether the process ``owner`` describes (on this host) still runs: the same pid, start time and boot."""
    pid = owner["pid"]
    if owner.get("boot_id") and boot_id() and owner["boot_id"] != boot_id():
        return False  # rebooted since: every process of that boot is gone
    if _HAS_PROC:
        fields = _proc_stat(pid)
        if fields is None or fields[0] == "Z":  # gone, or a zombie its parent has not reaped yet
            return False
        start = int(fields[19]) if len(fields) > 19 else None
        return owner.get("pid_start") is None or start == owner["pid_start"]  # else the pid was reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def heartbeat_age(run: dict, now: datetime | None = None) -> float | None:
    """Seconds since run.json's ``updated``, or None when it has none (or an unreadable one)."""
    try:
        then = datetime.strptime(str(run.get("updated")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return ((now or datetime.now(timezone.utc)) - then).total_seconds()


@dataclass(frozen=True)
class Liveness:
    """What a run is now: its recorded ``status``, or ``interrupted`` for a "running" run nobody trains."""

    state: str  # running | interrupted | finished | failed
    why: str = ""  # running / interrupted: what says so
    here: bool = False  # running: its owner is a process on this host, checked (not presumed from a heartbeat)


def liveness(run: dict, now: datetime | None = None) -> Liveness:
    """Whether a run whose run.json says ``running`` is still trained, and by what.

    ``owner`` null: stopped (interrupted) by its process. On the owner's host: running while that process (pid,
    start time, boot) lives; this very process counts as gone (it is asking, so it is not training that run now:
    it was interrupted earlier in this process). From another host, or with no owner recorded (files written
    before ``owner`` existed): running while the heartbeat is younger than :data:`STALE_AFTER_SECONDS`. A file
    without ``updated`` (not the harness's: it stamps every write) is taken at its word.
    """
    if run.get("status") != "running":
        return Liveness(str(run.get("status")))
    if "owner" in run and run["owner"] is None:  # the harness lets go of a run it stops without finishing
        return Liveness("interrupted", "stopped before finishing")
    owner = run.get("owner") if isinstance(run.get("owner"), dict) else {}
    host, pid = owner.get("host"), owner.get("pid")
    if host == socket.gethostname() and _integer(pid):
        if pid == os.getpid() and owner.get("pid_start") == process_start(pid):
            return Liveness("interrupted", f"interrupted earlier in this process ({pid})")
        if _owner_alive(owner):
            return Liveness("running", f"process {pid} on this host ({host}) trains it", here=True)
        return Liveness("interrupted", f"its process {pid} on {host} is gone")
    age = heartbeat_age(run, now)
    where = f"process {pid} on {host}" if host else "owner not recorded"
    if age is None:  # nothing to judge by
        return Liveness("running", f"{where}, no heartbeat recorded")
    if age > STALE_AFTER_SECONDS:
        return Liveness("interrupted", f"{where}, no heartbeat for {_duration(age)}")
    return Liveness("running", f"{where}, heartbeat {_duration(max(age, 0.0))} ago")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
    status: str  # finished | failed | running | interrupted (recorded running, trained by nobody: liveness())
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
    status_why: str = ""  # running / interrupted: what says so (Liveness.why)
    title: str | None = None  # config.pair.title: the pair in words, for plots (bench/results/titles.py)
    source_weights: str | None = None  # config.source.weights (train, none, timm, zoo:<name>, a path)
    recipe: str | None = None  # the fine-tuning recipe (grid.recipes), or None
    recipe_settings: tuple[str, ...] | None = None  # its optim settings, as config.grid.recipes recorded them
    heldout_top1: dict[int, float] = field(default_factory=dict)  # epoch -> heldout_top1 (data.heldout > 0)
    heldout_top1_bn: dict[int, float] = field(default_factory=dict)  # epoch -> heldout_top1_bn
    distill: str = "none"  # config.distill.kind: a distilled run trains with the pair's source as its teacher

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
        """'seed2 failed (1/4 epochs): <reason>', 'seed3 interrupted (resumable) (2/4 epochs): <why>', for notes."""
        done = sum(e in self.top1 for e in range(1, n + 1))
        state = "interrupted (resumable)" if self.status == "interrupted" else self.status
        text = f"seed{self.seed} {state} ({done}/{n} epochs)"
        if self.status == "failed" and self.failure_reason:
            return f"{text}: {self.failure_reason}"
        return f"{text}: {self.status_why}" if self.status == "interrupted" and self.status_why else text


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
    top1, top1_bn, heldout, heldout_bn = {}, {}, {}, {}
    for i, m in enumerate(raw["metrics"]):
        if not isinstance(m, dict):
            raise ValueError(f"{path}: metrics[{i}] must be an object, got {m!r}")
        epoch = m.get("epoch")
        if not (_integer(epoch) and epoch >= 1):
            raise ValueError(f"{path}: metrics[{i}].epoch must be an integer >= 1, got {epoch!r}")
        top1[epoch] = _fraction(m.get("val_top1"), f"metrics[{i}].val_top1", path)  # a resumed epoch: last wins
        if m.get("val_top1_bn") is not None:
            top1_bn[epoch] = _fraction(m["val_top1_bn"], f"metrics[{i}].val_top1_bn", path)
        for key, values in (("heldout_top1", heldout), ("heldout_top1_bn", heldout_bn)):
            if m.get(key) is not None:
                values[epoch] = _fraction(m[key], f"metrics[{i}].{key}", path)
    reason, similarity = raw.get("failure_reason"), raw.get("similarity")
    live = liveness(raw)  # a "running" run whose process is gone reads as interrupted
    return RunRecord(path, raw["pair"], raw["init"], raw["seed"], live.state,
                     None if reason is None else str(reason), raw.get("source"), raw["target"], raw["data"],
                     raw["epochs"], None if similarity is None else float(similarity), init_top1, top1,
                     init_top1_bn, top1_bn, live.why, **_labels(raw.get("config")), **_recipe(raw, path),
                     heldout_top1=heldout, heldout_top1_bn=heldout_bn)


def _recipe(raw: dict, path: Path) -> dict[str, Any]:
    """The run's recipe and the settings its recorded config gives it (grid.recipes); None without one."""
    recipe = raw.get("recipe")
    if not (recipe is None or _name(recipe)):
        raise ValueError(f"{path}: 'recipe' must be a recipe name or null, got {recipe!r}")
    config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    recipes = (config.get("grid") or {}).get("recipes") if isinstance(config.get("grid"), dict) else None
    settings = recipes.get(recipe) if recipe and isinstance(recipes, dict) else None
    return {"recipe": recipe, "recipe_settings": None if not isinstance(settings, list) else
            tuple(str(x) for x in settings)}


def _labels(config: Any) -> dict[str, str | None]:
    """The words a plot may show for the run's pair, from its recorded config (absent in older records)."""
    config = config if isinstance(config, dict) else {}
    pair, source = config.get("pair"), config.get("source")
    title = pair.get("title") if isinstance(pair, dict) else None
    weights = source.get("weights") if isinstance(source, dict) else None
    distill = config.get("distill") if isinstance(config.get("distill"), dict) else {}
    return {"title": title if isinstance(title, str) and title else None,
            "source_weights": weights if isinstance(weights, str) else None,
            "distill": str(distill.get("kind") or "none")}

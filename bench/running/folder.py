"""A run folder: one run's identity, its files, and the decision to start, resume, skip or refuse it.

Every run of the benchmark is a folder whose path is its identity, and the same rules decide what to do with
it, whoever asks (a run, a source training, a GHN meta-training, the sweep plan)::

    kind    folder (bench/layout.py)                              record           resume point
    target  <paths.runs>/<experiment>/<pair>/<init>/seed<k>/     run.json         checkpoints/last.ckpt
    source  <paths.runs>/<experiment>/sources/<model>/seed<k>/   run.json         checkpoints/last.ckpt
    ghn     out_dir of bench/train_ghn.py                        train_log.json   ghn.pt

:meth:`RunFolder.decide`: a finished run is skipped, a started one (it has a resume point) resumes, anything
else starts. A run that another process trains right now (run.json says ``running`` and its owner lives:
:func:`bench.running.record.liveness`) is ``running``: the harness refuses to train it a second time when that
process is on this host, and the sweep plan leaves it out; a ``running`` run whose process is gone (killed
outright) is interrupted and resumes like any other. It refuses a folder that holds another configuration once
the run has results, a resume point or is finished (a run that failed before any result may restart with the
mistake fixed), and a run that diverged before (it would diverge again). Settings that do not change what a run
computes may change between its segments (:data:`RESUMABLE_CHANGES`). The identity also names the run in log
lines and in W&B.

A target or source folder also holds ``checkpoints/best.ckpt``, ``csv/segment<k>/metrics.csv`` (one per
start or resume) and Hydra's ``.hydra/``; a source's also ``weights.safetensors`` with ``weights.json``
(which epoch it is). Only process 0 writes; every process reads, so that all of them decide alike.

    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"paths": {"runs": "results/runs"}, "experiment_name": "proxy", "seed": 1,
    ...     "epochs": 3, "pair": {"name": "tinynet_d_to_e", "source": "tinynet_d", "target": "tinynet_e"},
    ...     "init": {"name": "dpiat"}})
    >>> folder = RunFolder.target(cfg)
    >>> str(folder.path), folder.wandb_id
    ('results/runs/proxy/tinynet_d_to_e/dpiat/seed1', '6cb72ecc5c51d43b')
    >>> folder.label
    'target tinynet_e (tinynet_d_to_e/dpiat/seed1)'
    >>> RunFolder.target(OmegaConf.merge(cfg, {"paths": {"runs": "/nonexistent"}})).decide().action
    'start'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bench.config import source_config
from bench.errors import RunFolderError
from bench.files import atomic_write_json
from bench.layout import SOURCES, experiment_path, source_path, target_run_path
from bench.running import record as schema

SOURCE_WEIGHTS = "weights.safetensors"  # a trained source's best epoch, what targets load
SOURCE_ORIGIN = "weights.json"  # which epoch's checkpoint SOURCE_WEIGHTS holds

# Config keys that may change between the segments of one run without changing what it computes.
RESUMABLE_CHANGES = ("epochs", "paths", "logger", "grid", "data.root", "data.num_workers", "data.download",
                     "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.enable_progress_bar",
                     "trainer.log_every_n_steps", "pair.title")  # pair.title: a label for plots
# Keys added to the schema after runs were recorded, with their defaults: a record without one ran as if it
# had the default (bench/config.py), so absent equals that default and those runs keep their identity.
ADDED_KEYS = {"data.decoder": "pil", "data.pin_memory": None, "data.persistent_workers": False,
              "trainer.compile": False, "trainer.cudnn_benchmark": None, "data.heldout": 0, "recipe": None,
              "distill.kind": "none", "distill.alpha": 0.9, "distill.temperature": 4.0}
# bench/train_ghn.py settings that do not change the GHN it trains: not part of its recorded identity.
GHN_NOT_IDENTITY = ("out_dir", "eval", "threads", "device")


# ---------------------------------------------------------------------------------------------------------
# What a folder holds
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Files:
    record: str  # the record file
    checkpoint: str  # the resume point, relative to the folder
    identity_key: str  # the record's key holding the identity config
    results_key: str  # the record's key holding per-epoch results
    resumable: tuple[str, ...]  # identity keys that may change between segments
    conflict: str  # "<folder> already holds <conflict> (<differences>). <remedy>"
    remedy: str


RUN_FILES = Files(schema.RUN_FILE, "checkpoints/last.ckpt", "config", "metrics", RESUMABLE_CHANGES,
                  "a run with another configuration", "A run folder is one run: choose another experiment_name "
                  "(or paths.runs) for this configuration, or delete the folder to start it again.")
GHN_FILES = Files("train_log.json", "ghn.pt", "settings", "epochs", (), "a GHN trained with other settings",
                  "Choose another out_dir, or delete the folder to retrain.")


@dataclass(frozen=True)
class Decision:
    action: str  # start | resume | finished | running | conflict | diverged
    record: dict | None = None  # the record as found
    checkpoint: Path | None = None  # the resume point, if any
    reason: str = ""  # why: a conflict's or a divergence's message; running: what says it runs
    here: bool = False  # running: the owner is a process on this host, checked (else presumed from its heartbeat)
    interrupted: str = ""  # start / resume of a run recorded running whose process is gone: why it is taken so


@dataclass(frozen=True)
class RunFolder:
    """One run's identity and folder. Build it with :meth:`target`, :meth:`source` or :meth:`ghn`."""

    kind: str  # target | source | ghn
    path: Path
    config: dict  # the identity: what the run computes with, recorded and compared on every restart
    epochs: int  # planned
    seed: int
    network: str = ""  # the timm model it trains
    experiment: str = ""
    pair: str = ""
    init: str = ""
    source_network: str | None = None  # the pair's source (recorded by every run of the pair)
    recipe: str | None = None  # the target's fine-tuning recipe (grid.recipes), or None

    @classmethod
    def target(cls, cfg: Any) -> RunFolder:
        """The run of ``cfg.pair.target`` from ``cfg.init`` with run seed ``cfg.seed``."""
        path = target_run_path(cfg)  # in the experiment folder, or its adhoc/ when off the experiment's grid
        return cls("target", path, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), cfg.epochs,
                   cfg.seed, cfg.pair.target, cfg.experiment_name, cfg.pair.name, cfg.init.name, cfg.pair.source,
                   cfg.get("recipe"))

    @classmethod
    def source(cls, cfg: Any) -> RunFolder:
        """The training of ``cfg.pair.source`` on the experiment's data with the source's own budget and
        schedule (:func:`bench.config.source_config`), shared by every target run.

        Its identity is what defines that training, so that targets with other seeds, inits or pairs share it.
        """
        s, own = cfg.source, source_config(cfg)
        experiment = s.get("experiment") or cfg.experiment_name  # source.experiment: another's sources
        config = {"experiment_name": experiment, "model": cfg.pair.source, "seed": s.seed,
                  "epochs": s.epochs, "lr": own.optim.lr,
                  "num_classes": s.num_classes or cfg.data.num_classes, "in_chans": s.in_chans or cfg.data.in_chans,
                  **{k: OmegaConf.to_container(own[k], resolve=True, enum_to_str=True)
                     for k in ("data", "optim", "trainer", "eval", "logger", "paths")}}
        path = source_path(experiment_path(cfg.paths.runs, experiment), cfg.pair.source, s.seed)
        return cls("source", path, config, s.epochs, s.seed, cfg.pair.source, experiment, SOURCES, "random")

    @classmethod
    def ghn(cls, cfg: Any) -> RunFolder:
        """A GHN-2 meta-training (conf/train_ghn.yaml): its folder is ``out_dir``."""
        settings = OmegaConf.to_container(cfg, resolve=True)
        for key in GHN_NOT_IDENTITY:
            settings.pop(key, None)
        settings["data"].pop("eval_batch_size", None)
        return cls("ghn", Path(cfg.out_dir), settings, int(cfg.epochs), cfg.seed)

    # -- names ---------------------------------------------------------------------------------------------
    @property
    def files(self) -> Files:
        return GHN_FILES if self.kind == "ghn" else RUN_FILES

    @property
    def label(self) -> str:
        """How log lines name the run."""
        if self.kind == "target":
            return f"target {self.network} ({self._recipe_part}{self.pair}/{self.init}/seed{self.seed})"
        if self.kind == "source":
            return f"source {self.network} seed {self.seed}"
        return f"GHN-2 meta-training {self.path}"

    @property
    def wandb_name(self) -> str:
        """The W&B run's name; the seeds of one experiment, pair (or source) and init form a W&B group."""
        middle = f"{self._recipe_part}{self.pair}/{self.init}" if self.kind == "target" else f"{SOURCES}/{self.network}"
        return f"{self.experiment}/{middle}/seed{self.seed}"

    @property
    def _recipe_part(self) -> str:
        return f"{self.recipe}/" if self.recipe else ""

    @property
    def wandb_group(self) -> str:
        return self.wandb_name.rsplit("/", 1)[0]

    @property
    def wandb_id(self) -> str:
        """Deterministic, so that a resumed or requeued run appends to the same W&B run."""
        return hashlib.sha1(f"{self.wandb_name}/{self.kind}".encode()).hexdigest()[:16]

    def identity(self, data: str) -> dict:
        """The identity keys of run.json (:mod:`bench.running.record`), ``data`` being the data set's name."""
        return {"experiment": self.experiment, "pair": self.pair, "init": self.init, "seed": self.seed,
                "recipe": self.recipe, "source": self.source_network, "target": self.network, "data": data,
                "epochs": self.epochs, "config": self.config}

    # -- files ---------------------------------------------------------------------------------------------
    @property
    def record_path(self) -> Path:
        return self.path / self.files.record

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def read(self) -> dict | None:
        """The record, or None when there is none yet."""
        path = self.record_path
        if not path.exists():
            return None
        try:
            if self.files is RUN_FILES:
                return schema.read_run(path)
            return json.loads(path.read_text())
        except ValueError as e:  # json.JSONDecodeError is a ValueError too
            raise RunFolderError(f"{e}. Move the file away (or delete the run folder) to start this run "
                                 "afresh.") from None

    def write(self, run: dict) -> None:
        if self.files is RUN_FILES:
            run["updated"] = schema.updated_now()
        atomic_write_json(self.record_path, run)

    def resume_checkpoint(self) -> Path | None:
        """The resume point (``checkpoints/last.ckpt``, saved at the end of an epoch; ``ghn.pt``), or None.

        Not the ``hpc_ckpt_*.ckpt`` that Lightning writes on SLURM's SIGUSR1: it is taken mid-epoch (even
        mid-step), and Lightning cannot resume it exactly with these data loaders (it warns so). Measured on
        the local SLURM cluster: a smoke run requeued by SIGUSR1 and resumed from its hpc checkpoint ended at
        top-1 0.8663, the same run uninterrupted at 0.8802. Resumed from last.ckpt, the requeued run repeats
        the epochs after that checkpoint and ends bit-identical (tests/test_slurm.py). So a SLURM time limit
        must exceed one epoch plus start-up, or the run never gets past that epoch.
        """
        path = self.path / self.files.checkpoint
        return path if path.exists() else None

    # -- the decision --------------------------------------------------------------------------------------
    def is_complete(self, run: dict) -> bool:
        return run.get("status") == "finished" and len(run.get(self.files.results_key) or []) >= self.epochs

    def decide(self) -> Decision:
        """What to do with this folder now: start, resume, finished (skip), running (trained by another process
        now) or conflict / diverged (refuse)."""
        existing, ckpt = self.read(), self.resume_checkpoint()
        files = self.files
        if existing is None:
            if ckpt is not None:
                return Decision("conflict", None, ckpt, f"{self.path} has {files.checkpoint} but no {files.record}, "
                                "so what it was trained with is unknown; delete the folder to start the run again.")
            return Decision("start")
        # A run with results is protected from another config; one that failed before any (a wrong path,
        # say) may be started again with the mistake fixed.
        if existing.get(files.results_key) or ckpt is not None or existing.get("status") == "finished":
            diffs = config_differences(existing.get(files.identity_key) or {}, self.config, files.resumable)
            if diffs:
                listed = "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "")
                return Decision("conflict", existing, ckpt,
                                f"{self.path} already holds {files.conflict} ({listed}). {files.remedy}")
        if self.is_complete(existing):
            return Decision("finished", existing, ckpt)
        if existing.get("status") == "failed" and existing.get("failure_kind") == "diverged":
            return Decision("diverged", existing, ckpt,
                            f"{self.label} failed before: {existing.get('failure_reason')}. It would fail again the "
                            f"same way; delete {self.path} to run it anyway.")
        interrupted = ""
        if files is RUN_FILES and existing.get("status") == "running":
            live = schema.liveness(existing)
            if live.state == "running":
                return Decision("running", existing, ckpt, live.why, here=live.here)
            interrupted = live.why
        return Decision("resume" if ckpt else "start", existing, ckpt, interrupted=interrupted)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_differences(old: dict, new: dict, resumable: tuple[str, ...] = RESUMABLE_CHANGES) -> list[str]:
    """'key: old -> new' for every flattened key whose values differ, ignoring the ``resumable`` keys."""
    a, b = flatten(old), flatten(new)
    a = {**{k: v for k, v in ADDED_KEYS.items() if k in b}, **a}  # what an older record ran with

    def ignored(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in resumable)

    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if not ignored(k) and a.get(k) != b.get(k)]

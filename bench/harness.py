"""One benchmark run, from a composed config to a finished run folder.

:func:`run` is what ``bench/run.py`` calls after Hydra composed the config: it builds the data, gets the
source network (trained here and cached, timm's, a file, or none), initialises the target with the init
method named in ``cfg.init`` (``dpiat.initialize``), validates it once (``init_metrics``), then trains it
with the paper's recipe, writing run.json after every epoch. Re-running the same command resumes from the
newest checkpoint, or returns at once when the run is finished. Errors a user can fix raise
:class:`dpiat.errors.DpiatError` with the fix in the message, and leave ``status: failed`` in run.json.

From Python (tests do this)::

    from hydra import compose, initialize_config_dir
    from bench.config import CONF_DIR
    from bench.harness import run
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke", "paths.runs=/tmp/runs"])
    record = run(cfg)                    # the run.json, as a dict
    print(record["final_val_top1"])
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import dpiat
from bench import sources
from bench.config import init_options
from bench.data import build_datamodule
from bench.lit import Classifier, DivergedError, build_loggers, build_trainer, finish_loggers, reseed
from bench.run_folder import (EpochRecorder, RunFolder, check_same_run, git_state, global_rank, hardware,
                              is_complete, slurm_ids, versions)
from bench.runfile import SCHEMA_VERSION
from dpiat.errors import DpiatError


class AlreadyFailed(DpiatError):
    """A run that diverged before: re-running it would fail the same way."""


class Interrupted(DpiatError):
    """Training stopped early without an error (e.g. Lightning's graceful shutdown): resumable."""


@dataclass
class RunSpec:
    """What identifies and defines one run (a target run, or the training of a source)."""

    folder: Path
    experiment: str
    pair: str
    init: str
    seed: int
    source: str | None
    target: str
    epochs: int
    config: dict  # the resolved config recorded in run.json, compared on resume
    init_options: dict = field(default_factory=dict)
    lr: float | None = None
    monitor: tuple[str, str] = ("val_top1", "max")  # best.ckpt: targets by accuracy, sources by loss
    role: str = "target"


def run_dir(cfg: Any) -> Path:
    """The run folder; the same formula as ``hydra.run.dir`` in conf/config.yaml."""
    return Path(cfg.paths.runs) / cfg.experiment_name / cfg.pair.name / cfg.init.name / f"seed{cfg.seed}"


def target_spec(cfg: DictConfig) -> RunSpec:
    return RunSpec(folder=run_dir(cfg), experiment=cfg.experiment_name, pair=cfg.pair.name, init=cfg.init.name,
                   seed=cfg.seed, source=cfg.pair.source, target=cfg.pair.target, epochs=cfg.epochs,
                   config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                   init_options=init_options(cfg.init))


def source_spec(cfg: DictConfig) -> RunSpec:
    """The training of ``cfg.pair.source``: the same data and recipe; what defines it is all it records."""
    s = cfg.source
    config = {"experiment_name": cfg.experiment_name, "model": cfg.pair.source, "seed": s.seed,
              "epochs": s.epochs, "lr": s.lr if s.lr is not None else cfg.optim.lr,
              "num_classes": s.num_classes or cfg.data.num_classes, "in_chans": s.in_chans or cfg.data.in_chans,
              **{k: OmegaConf.to_container(cfg[k], resolve=True, enum_to_str=True)
                 for k in ("data", "optim", "trainer", "logger", "paths")}}
    return RunSpec(folder=sources.source_folder(cfg), experiment=cfg.experiment_name, pair="sources", init="random",
                   seed=s.seed, source=None, target=cfg.pair.source, epochs=s.epochs, config=config,
                   lr=s.lr, monitor=("val_loss", "min"), role="source")


def check_config(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise DpiatError("these settings have no value: " + ", ".join(missing) + ". Give them on the command "
                         "line, e.g. " + " ".join(f"{k}=..." for k in missing) + ".")
    if not isinstance(cfg.init.name, str):
        raise DpiatError(f"init.name must be the name of an init method, got {cfg.init.name!r}")
    method = dpiat.get_init(cfg.init.name)  # UnknownNameError for a yaml whose method is not registered
    dpiat.models.check_model_name(cfg.pair.target)
    if method.needs_source:
        if not cfg.pair.source:
            raise DpiatError(f"init {cfg.init.name!r} needs a source network, and pair {cfg.pair.name!r} has none")
        dpiat.models.check_model_name(cfg.pair.source)
    if cfg.epochs < 1:
        raise DpiatError(f"epochs must be at least 1, got {cfg.epochs}")


def print_rank0(message: str) -> None:
    if global_rank() == 0:
        print(message, flush=True)


def run(cfg: DictConfig, *, log: Callable[[str], None] = print_rank0) -> dict:
    """Run (or resume, or skip) the run ``cfg`` describes; return its run.json."""
    check_config(cfg)
    sources.new_launch()
    spec = target_spec(cfg)

    def get_source() -> tuple[torch.nn.Module, dict]:
        train = lambda: execute(source_spec(cfg), cfg, log=log)  # noqa: E731
        return sources.get_source(cfg, train, log=log)

    return execute(spec, cfg, get_source=get_source, log=log)


def execute(spec: RunSpec, cfg: DictConfig, *, get_source: Callable[[], tuple] | None = None,
            log: Callable[[str], None] = print_rank0) -> dict:
    """Train ``spec`` in its folder: skip it when finished, resume it when started, else start it."""
    folder = RunFolder(spec.folder)
    writer = global_rank() == 0
    where = f"({spec.pair}/{spec.init}/seed{spec.seed})" if spec.role == "target" else f"seed {spec.seed}"
    label = f"{spec.role} {spec.target} {where}"
    existing = folder.read()  # every process reads, so that all of them decide alike; only process 0 writes
    ckpt = folder.resume_checkpoint()
    if existing is not None:
        # A run with results is protected from another config; a run that failed before any (a wrong path,
        # say) may be started again with the mistake fixed.
        if existing["metrics"] or ckpt is not None or existing["status"] == "finished":
            check_same_run(existing, spec.config, folder)
        if is_complete(existing, spec.epochs):
            log(f"{label}: already finished ({_summary(existing)}), {folder.path}")
            return existing
        if existing["status"] == "failed" and existing.get("failure_kind") == "diverged":
            raise AlreadyFailed(f"{label} failed before: {existing.get('failure_reason')}. It would fail again the "
                                f"same way; delete {folder.path} to run it anyway.")
    record = _start_record(existing, spec, cfg)
    if writer:
        folder.write(record)
    log(f"{label}: {'resuming from ' + str(ckpt) if ckpt else 'starting'} in {folder.path}")
    t0 = time.perf_counter()
    wall0 = float(record.get("wall_seconds") or 0.0)

    def save(**changes: Any) -> None:
        record.update(changes, wall_seconds=round(wall0 + time.perf_counter() - t0, 3))
        if writer:
            folder.write(record)

    loggers: list = []
    try:
        reseed(spec.seed)
        target_name = spec.target
        dm = build_datamodule(cfg.data, model_name=target_name, seed=spec.seed)
        dm.setup()
        record["data_hash"] = dm.data_hash
        if ckpt is None:
            model, init_report, similarity, source_info = _initialised_target(spec, cfg, get_source, log)
            save(init_report=init_report, similarity=similarity, source_weights=source_info)
        else:  # the checkpoint holds the weights; the init was recorded by the first segment
            model = _new_model(target_name, cfg, spec.seed)
        module = Classifier(model, num_classes=cfg.data.num_classes, optim=cfg.optim, epochs=spec.epochs,
                            seed=spec.seed, lr=spec.lr, max_loss=cfg.trainer.max_loss,
                            channels_last=cfg.trainer.channels_last)
        recorder = EpochRecorder(folder, record, global_batch=cfg.data.batch_size, write=writer)
        name = f"{spec.experiment}/{spec.pair}/{spec.init}/seed{spec.seed}"
        loggers = build_loggers(cfg, folder.path, run_name=name, wandb_id=record.get("wandb_run_id"),
                                segment=record["segments"])
        trainer = build_trainer(cfg, folder.path, epochs=spec.epochs, monitor=spec.monitor[0], mode=spec.monitor[1],
                                callbacks=[recorder], loggers=loggers)
        if ckpt is None and spec.role == "target":  # a source starts from random init: nothing to learn there
            (res,) = trainer.validate(module, datamodule=dm, verbose=False)
            init_metrics = {k: float(res[k]) for k in ("val_top1", "val_top5", "val_loss")}
            init_metrics["val_samples"] = int(res["val_samples"])
            log(f"{label}: after init, val_top1 {init_metrics['val_top1']:.4f}, "
                f"val_loss {init_metrics['val_loss']:.4f}")
            save(init_metrics=init_metrics)
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
        if len(record["metrics"]) < spec.epochs or trainer.interrupted:
            raise Interrupted(f"{label}: training stopped after {len(record['metrics'])} of {spec.epochs} epochs; "
                              "run the same command again to resume")
        metrics = record["metrics"]
        save(status="finished", final_val_top1=metrics[-1]["val_top1"],
             best_val_top1=max(m["val_top1"] for m in metrics), failure_reason=None, failure_kind=None)
        log(f"{label}: finished, val_top1 {metrics[-1]['val_top1']:.4f} (best {record['best_val_top1']:.4f}) "
            f"after {spec.epochs} epochs, {record['wall_seconds']:.0f} s")
        return record
    except (Interrupted, KeyboardInterrupt, SystemExit):
        save()  # interrupted, not failed: status stays "running" and the next attempt resumes
        raise
    except DivergedError as e:
        save(status="failed", failure_reason=str(e), failure_kind="diverged")
        raise
    except DpiatError as e:
        save(status="failed", failure_reason=str(e), failure_kind="error")
        raise
    except Exception as e:
        save(status="failed", failure_reason=f"{type(e).__name__}: {e}", failure_kind="error")
        raise
    finally:
        finish_loggers(loggers)


def _new_model(name: str, cfg: DictConfig, seed: int) -> torch.nn.Module:
    reseed(seed)  # the random init is a function of the seed alone, whatever ran before
    return dpiat.create_model(name, num_classes=cfg.data.num_classes, in_chans=cfg.data.in_chans)


def _initialised_target(spec: RunSpec, cfg: DictConfig, get_source, log) -> tuple:
    method = dpiat.get_init(spec.init)
    source, source_info = (get_source() if method.needs_source and get_source else (None, None))
    model = _new_model(spec.target, cfg, spec.seed)
    report = dpiat.initialize(spec.init, model, source=source, **spec.init_options)
    similarity = None
    if spec.source and global_rank() == 0:
        try:
            similarity = float(dpiat.similarity(spec.source, spec.target))
        except DpiatError as e:
            log(f"note: no similarity for {spec.source} -> {spec.target}: {e}")
    if source is not None:
        log(f"init {spec.init}: {report.get('n_matched', '?')}/{report.get('n_target_layers', '?')} target layers "
            f"from {spec.source}, {100 * report.get('fraction_overwritten', 0):.1f}% of parameters overwritten")
    return model, report, similarity, source_info


def _start_record(existing: dict | None, spec: RunSpec, cfg: DictConfig) -> dict:
    commit, dirty = git_state()
    record = dict(existing or {})
    record.update({
        "schema_version": SCHEMA_VERSION, "status": "running", "failure_reason": None, "failure_kind": None,
        "experiment": spec.experiment, "pair": spec.pair, "init": spec.init, "seed": spec.seed,
        "source": spec.source, "target": spec.target, "data": cfg.data.name, "epochs": spec.epochs,
        "config": spec.config, "git_commit": commit, "git_dirty": dirty, "versions": versions(),
        "hardware": hardware(cfg.trainer), "slurm": slurm_ids(),
    })
    for key, default in (("similarity", None), ("init_metrics", None), ("metrics", []), ("best_val_top1", None),
                         ("final_val_top1", None), ("init_report", None), ("source_weights", None),
                         ("data_hash", None), ("wall_seconds", 0.0), ("segments", 0)):
        record.setdefault(key, default)
    record["final_val_top1"] = None
    record["segments"] = int(record["segments"]) + 1  # how many times the run was started or resumed
    if cfg.logger.wandb and cfg.logger.wandb_mode != "disabled":
        # Deterministic, so that a resumed or requeued run appends to the same W&B run.
        ident = f"{spec.experiment}/{spec.pair}/{spec.init}/seed{spec.seed}/{spec.role}"
        record["wandb_run_id"] = hashlib.sha1(ident.encode()).hexdigest()[:16]
    else:
        record.setdefault("wandb_run_id", None)
    return record


def _summary(run: dict) -> str:
    final = run.get("final_val_top1")
    return f"val_top1 {final:.4f}" if isinstance(final, (int, float)) else f"{len(run.get('metrics') or [])} epochs"

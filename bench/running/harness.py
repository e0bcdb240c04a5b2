"""Train one run folder, from its decision to its last epoch: the same steps for a target and a source.

:func:`execute` asks the :class:`~bench.running.folder.RunFolder` what to do (skip a finished run, refuse a
conflicting or diverged one), writes run.json at the start of the segment, builds the data, makes the fresh
model with ``initialise`` (resuming, the checkpoint holds the weights instead), validates an initialised target
once (``init_metrics``), then fits it with the paper's recipe in Lightning, run.json after every epoch
(:mod:`bench.running.recorder`) and a heartbeat in between (:mod:`bench.running.heartbeat`). An error leaves
``status: failed`` and its reason in run.json; an interruption leaves the run resumable (``running`` with no
``owner``); a run that a live process on this host trains already is refused. Its callers say what a run is:
:func:`bench.running.target.run` (a target, initialised by its init method) and :mod:`bench.running.sources` (a
source's training).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import dpiat
from bench.data.datasets import check_data_present
from bench.data.module import build_datamodule
from bench.errors import USER_ERRORS, AlreadyFailed, DivergedError, Interrupted, RunFolderError
from bench.running import heartbeat, provenance
from bench.running import record as schema
from bench.running.folder import RunFolder
from bench.running.lit import Classifier, build_loggers, build_trainer, finish_loggers, global_rank
from bench.running.recorder import EpochRecorder
from bench.seeding import reseed

# A fresh run's model, and the run.json keys that say how it was made (init_report, similarity, source_weights).
Initialised = tuple[torch.nn.Module, dict]


def print_rank0(message: str) -> None:
    if global_rank() == 0:
        print(message, flush=True)


def model_kwargs(cfg: Any, role: str) -> dict:
    """The pair's extra timm arguments of its ``source`` or ``target`` (``pair.source_kwargs`` /
    ``pair.target_kwargs``, e.g. ``{img_size: 32, patch_size: 4, depth: 6}`` for a ViT), as a plain dict."""
    kwargs = cfg.pair.get(f"{role}_kwargs") or {}
    return dict(OmegaConf.to_container(kwargs, resolve=True) if isinstance(kwargs, DictConfig) else kwargs)


def fresh_model(name: str, cfg: DictConfig, seed: int, role: str = "target") -> torch.nn.Module:
    """``name`` with timm's initialisation, as a function of the seed alone (whatever ran before); ``role``
    (target | source) chooses the pair's extra timm arguments."""
    reseed(seed)
    return dpiat.create_model(name, num_classes=cfg.data.num_classes, in_chans=cfg.data.in_chans,
                              **model_kwargs(cfg, role))


def pin_threads(trainer: Any) -> None:
    """``trainer.threads`` intra-op threads for this process (None leaves torch's default); provenance records it."""
    if trainer.threads:
        torch.set_num_threads(int(trainer.threads))


def init_loss_text(metrics: dict, num_classes: int) -> str:
    """``val_loss X`` of the initialised target for the log, explained when it is far above a uniform guess's
    ln(classes): with running statistics that do not fit the weights (faithful DPIAT copies weights and leaves
    the target's BatchNorm statistics at their defaults, mean 0 and variance 1), eval-mode activations grow
    layer after layer and the cross-entropy explodes, while the recalibrated evaluation beside it does not."""
    loss = metrics["val_loss"]
    text = f"val_loss {loss:.4f}"
    if not math.isfinite(loss) or loss <= 10 * math.log(max(num_classes, 2)):
        return text
    bn = f"; recalibrated: val_loss_bn {metrics['val_loss_bn']:.4f}" if "val_loss_bn" in metrics else ""
    return (f"{text} (huge because the protocol evaluates with BatchNorm running statistics that do not fit "
            f"these weights: the init set weights, not statistics, e.g. faithful DPIAT leaves the defaults, mean 0 "
            f"and variance 1{bn})")


def execute(folder: RunFolder, cfg: DictConfig, initialise: Callable[[], Initialised], *, lr: float | None = None,
            monitor: tuple[str, str] = ("val_top1", "max"), log: Callable[[str], None] = print_rank0,
            teacher_of: Callable[[], tuple] | None = None) -> dict:
    """Train ``folder``'s run: skip it when finished, resume it when started, else start it; return its run.json.

    ``lr`` overrides ``cfg.optim.lr``; ``monitor`` chooses ``checkpoints/best.ckpt`` (targets: highest
    val_top1; sources: lowest val_loss).
    """
    decision = folder.decide()  # every process reads, so that all of them decide alike; only process 0 writes
    existing, ckpt = decision.record, decision.checkpoint
    if decision.action == "conflict":
        raise RunFolderError(decision.reason)
    if decision.action == "diverged":
        raise AlreadyFailed(decision.reason)
    if decision.action == "finished":
        log(f"{folder.label}: already finished ({_summary(existing)}), {folder.path}")
        return existing
    if decision.action == "running" and global_rank() == 0:  # another rank sees its own process 0 as the owner
        if decision.here:
            raise RunFolderError(f"{folder.label} is being trained by another process ({decision.reason}); two must "
                                 "not train one folder: wait for it to finish, or stop it and run this again to resume")
        log(f"{folder.label}: run.json says another host trains it ({decision.reason}), which cannot be checked "
            f"from here; training it here all the same (a job requeued onto another node looks the same)")
    if folder.kind == "source":  # on its way to a target run: say what trains before the target can start
        log(f"source {folder.network}: trained here first, as the target's source: {folder.epochs} epochs x "
            f"{cfg.data.train_subset or 'all'} training images of {cfg.data.name} "
            f"({getattr(cfg.optim.name, 'value', cfg.optim.name)}, lr {lr or cfg.optim.lr:g}); a line after every "
            "epoch, and the targets that need it wait for it")
    check_data_present(cfg.data)  # a wrong data.root is refused before the run folder is written
    wandb = cfg.logger.wandb and cfg.logger.wandb_mode != "disabled"
    pin_threads(cfg.trainer)
    run = schema.start_segment(existing, folder.identity(cfg.data.name), provenance.collect(cfg.trainer),
                               folder.wandb_id if wandb else None)
    writer = global_rank() == 0
    if writer:
        folder.write(run)
    was = f" (interrupted before: {decision.interrupted})" if decision.interrupted else ""
    done = len((existing or {}).get(folder.files.results_key) or [])  # epochs finished before this segment
    resuming = f"resuming after epoch {done} of {folder.epochs} from {ckpt}" if ckpt else "starting"
    log(f"{folder.label}: {resuming} in {folder.path}{was}")
    t0 = time.perf_counter()
    # a segment killed outright (SIGKILL, a lost node) never wrote its wall_seconds; its finished epochs did
    kept = [m.get("wall_seconds") for m in run.get(folder.files.results_key) or [] if isinstance(m, dict)]
    wall0 = max([float(run.get("wall_seconds") or 0.0), *[float(w) for w in kept if isinstance(w, (int, float))]])

    def save(**changes: Any) -> None:
        run.update(changes, wall_seconds=round(wall0 + time.perf_counter() - t0, 3))
        if writer:
            folder.write(run)

    loggers: list = []
    heartbeat.hold(folder, run, write=writer)  # until it stops, its run.json's `updated` stays fresh
    try:
        reseed(folder.seed)
        dm = build_datamodule(cfg.data, model_name=folder.network, seed=folder.seed)
        dm.setup()
        run["data_hash"] = dm.data_hash
        if ckpt is None:
            model, made = initialise()
            save(**made)
        else:  # the checkpoint holds the weights; the init was recorded by the first segment
            model = fresh_model(folder.network, cfg, folder.seed, role="source" if folder.kind == "source" else "target")
        n_bn = int(cfg.eval.bn_batches)
        # a distilled target's teacher, the pair's trained source (bench.running.teacher), from the caller
        teacher, distill = teacher_of() if teacher_of is not None else (None, None)
        if distill is not None:
            save(distill=distill)
        module = Classifier(model, num_classes=cfg.data.num_classes, optim=cfg.optim, epochs=folder.epochs,
                            seed=folder.seed, lr=lr, max_loss=cfg.trainer.max_loss,
                            channels_last=cfg.trainer.channels_last, compile=bool(cfg.trainer.get("compile", False)),
                            recalibration=(lambda: dm.recalibration_batches(n_bn)) if n_bn else None,
                            heldout=dm.heldout_dataloader if dm.num_heldout else None, teacher=teacher,
                            distill_alpha=cfg.distill.alpha if distill else 0.9,
                            distill_temperature=cfg.distill.temperature if distill else 4.0)
        recorder = EpochRecorder(folder, run, global_batch=cfg.data.batch_size, write=writer, log=log)
        loggers = build_loggers(cfg, folder.path, segment=run["segments"], wandb_id=run.get("wandb_run_id"),
                                wandb_name=folder.wandb_name, wandb_group=folder.wandb_group)
        trainer = build_trainer(cfg, folder.path, epochs=folder.epochs, monitor=monitor[0], mode=monitor[1],
                                callbacks=[recorder], loggers=loggers)
        if ckpt is None and folder.kind == "target":  # a source starts from random init: nothing to learn there
            t_eval = time.perf_counter()
            (res,) = trainer.validate(module, datamodule=dm, verbose=False)
            init_metrics = {k: float(res[k]) for k in ("val_top1", "val_top5", "val_loss")}
            # what epoch 0 costs a user: the evaluation, and within it the BatchNorm pass (time to accuracy counts it)
            init_metrics["seconds_evaluation"] = round(time.perf_counter() - t_eval, 3)
            if module.recalibration_seconds is not None:
                init_metrics["seconds_bn_recalibration"] = round(module.recalibration_seconds, 3)
            init_metrics["val_samples"] = int(res["val_samples"])
            init_metrics.update({k: float(res[k]) for k in ("val_top1_bn", "val_loss_bn", "heldout_top1",
                                                             "heldout_top1_bn") if k in res})
            bn = f" (BatchNorm recalibrated: {init_metrics['val_top1_bn']:.4f})" if "val_top1_bn" in res else ""
            log(f"{folder.label}: after init, val_top1 {init_metrics['val_top1']:.4f}{bn}, "
                f"{init_loss_text(init_metrics, cfg.data.num_classes)}")
            save(init_metrics=init_metrics)
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
        if len(run["metrics"]) < folder.epochs or trainer.interrupted:
            raise Interrupted(f"{folder.label}: training stopped after {len(run['metrics'])} of {folder.epochs} "
                              "epochs; run the same command again to resume")
        metrics = run["metrics"]
        save(status="finished", final_val_top1=metrics[-1]["val_top1"],
             best_val_top1=max(m["val_top1"] for m in metrics), failure_reason=None, failure_kind=None)
        log(f"{folder.label}: finished, val_top1 {metrics[-1]['val_top1']:.4f} (best {run['best_val_top1']:.4f}) "
            f"after {folder.epochs} epochs, {run['wall_seconds']:.0f} s")
        return run
    except Interrupted:
        save(owner=None)  # interrupted, not failed: status stays "running", nobody owns it, the next attempt resumes
        raise
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; Lightning turns it (and SIGTERM) into a SystemExit
        save(owner=None)
        raise Interrupted(f"interrupted after epoch {len(run['metrics'])} of {folder.epochs} ({folder.label}): "
                          "rerun the same command to resume") from None
    except DivergedError as e:
        save(status="failed", failure_reason=str(e), failure_kind="diverged")
        raise
    except USER_ERRORS as e:
        save(status="failed", failure_reason=str(e), failure_kind="error")
        raise
    except Exception as e:
        save(status="failed", failure_reason=f"{type(e).__name__}: {e}", failure_kind="error")
        raise
    finally:
        heartbeat.release(folder)
        finish_loggers(loggers)


def _summary(run: dict) -> str:
    final = run.get("final_val_top1")
    return f"val_top1 {final:.4f}" if isinstance(final, (int, float)) else f"{len(run.get('metrics') or [])} epochs"

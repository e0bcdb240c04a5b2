"""After every epoch: its entry in run.json, written before the epoch's checkpoint.

:class:`EpochRecorder` is the Lightning callback through which a run's results reach its folder. Lightning
runs checkpoint callbacks last, so an epoch's metrics are on disk before its ``last.ckpt``: a run killed in
between recomputes that epoch on resume (deterministically) and replaces the entry. What an entry holds is
:data:`bench.running.record.EPOCH_FIELDS`. Between epochs, every batch end gives the heartbeat its chance
(:mod:`bench.running.heartbeat`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import lightning.pytorch as pl

from bench.errors import DivergedError
from bench.running import heartbeat
from bench.running import record as schema
from bench.running.folder import RunFolder


class EpochRecorder(pl.Callback):
    """Appends one metrics entry to the run's record after every validation epoch of ``fit``.

    Every process keeps the record up to date (all of them decide from it); only ``write=True`` writes it.
    """

    def __init__(self, folder: RunFolder, run: dict, *, global_batch: int, write: bool,
                 log: Callable[[str], None] = print):
        # not self.log: Lightning sets that name on callbacks to the LightningModule's log
        self.folder, self.run, self.global_batch, self.write, self.say = folder, run, global_batch, write, log
        self._t0 = 0.0
        self._wall_base = 0.0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        done = trainer.current_epoch  # epochs already trained (restored from a checkpoint)
        kept = [m for m in self.run["metrics"] if m["epoch"] <= done]
        self._wall_base = kept[-1]["wall_seconds"] if kept else 0.0
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        heartbeat.beat()

    def on_validation_batch_end(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        heartbeat.beat()  # also the init's validation, and a long validation epoch

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        m = trainer.callback_metrics
        epoch = trainer.current_epoch + 1
        optional = {k: float(m[k]) for k in ("val_top1_bn", "val_loss_bn", "heldout_top1", "heldout_top1_bn")
                    if k in m}
        entry = schema.epoch_entry(
            epoch=epoch, val_top1=float(m["val_top1"]), val_top5=float(m["val_top5"]),
            val_loss=float(m["val_loss"]), train_loss=float(module.train_loss.compute()),
            images_seen=int(trainer.global_step * self.global_batch), val_samples=int(m["val_samples"]),
            wall_seconds=round(self._wall_base + time.perf_counter() - self._t0, 3), **optional)
        metrics = [e for e in self.run["metrics"] if e["epoch"] < epoch] + [entry]
        self.run["metrics"] = metrics
        self.run["best_val_top1"] = max(e["val_top1"] for e in metrics)
        if self.write:
            self.folder.write(self.run)
        bn = f" (BatchNorm recalibrated {entry['val_top1_bn']:.4f})" if "val_top1_bn" in entry else ""
        if "heldout_top1" in entry:
            bn += f", heldout_top1 {entry['heldout_top1']:.4f}"
        self.say(f"{self.folder.label}: epoch {epoch}/{self.folder.epochs}: train_loss {entry['train_loss']:.4f}, "
                 f"val_top1 {entry['val_top1']:.4f}{bn}, val_loss {entry['val_loss']:.4f}, "
                 f"{entry['wall_seconds']:.0f} s")
        if not all(map(math.isfinite, (entry["val_loss"], entry["train_loss"]))):
            raise DivergedError(f"validation loss became {entry['val_loss']:g} (training loss "
                                f"{entry['train_loss']:g}) at epoch {epoch}")

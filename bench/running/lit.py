"""Training any timm classifier with the paper's recipe: one LightningModule, one Trainer factory.

:class:`Classifier` wraps a model: cross-entropy, Adam/SGD with the per-epoch LambdaLR of the protocol,
top-1/top-5 accuracy and loss as torchmetrics (reduced across DDP processes), a divergence check every step
(a non-finite or exploding loss stops the run with :class:`DivergedError`), and the global RNGs reseeded
from (seed, epoch) at every epoch start, so a run resumed from an end-of-epoch checkpoint repeats exactly
what an uninterrupted run does. :func:`build_trainer` adds ``last``/``best`` checkpoints, the loggers, the
progress bar and the precision/DDP/cuDNN switches; ``compile=True`` runs the
network through ``torch.compile``.

    >>> import dpiat
    >>> from bench.config import data_config, OptimConfig
    >>> from bench.data.module import build_datamodule
    >>> dm = build_datamodule(data_config("digits"), seed=0)
    >>> module = Classifier(dpiat.create_model("test_efficientnet", num_classes=10, in_chans=1),
    ...                     num_classes=10, optim=OptimConfig(), epochs=1, seed=0)
    >>> import lightning.pytorch as pl
    >>> pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False).fit(module, dm)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from bench.errors import ConfigError, DivergedError
from bench.running import quiet  # noqa: F401  (silences Lightning's known-harmless lines: bench/running/quiet.py)
from bench.running.bn_eval import has_batchnorm, recalibrated
from bench.running.teacher import distillation_loss
from bench.seeding import DROPOUT, epoch_seed, reseed


def global_rank() -> int:
    """This process's rank as Lightning sees it (from RANK / LOCAL_RANK / SLURM_PROCID); 0 when alone."""
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def lr_factor(epoch: int, optim: Any, epochs: int) -> float:
    """The learning-rate multiplier for (0-based) ``epoch``.

    ``mocked_cosine`` is the paper's: ``min + (1 - min) * (1 + cos(pi * e / mock_epochs)) / 2``, so a 50-epoch
    run stops half way down a 100-epoch cosine.

    >>> from bench.config import OptimConfig
    >>> round(lr_factor(50, OptimConfig(), 50), 3), round(lr_factor(100, OptimConfig(), 50), 3)
    (0.55, 0.1)
    """
    schedule = getattr(optim.schedule, "value", optim.schedule)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine_steps":
        raise ValueError("cosine_steps is stepped per step: use step_lr_factor")
    span = optim.mock_epochs if schedule == "mocked_cosine" else epochs
    e = min(epoch, span)
    return optim.min_factor + (1 - optim.min_factor) * (1 + math.cos(math.pi * e / span)) / 2


def step_lr_factor(step: int, total: int, warmup: int) -> float:
    """``cosine_steps``: linear warm-up over ``warmup`` steps, then a cosine from 1 to 0 at step ``total``.

    >>> [round(step_lr_factor(s, 10, 2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    t = min(step - warmup, total - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * t))


def warmed_lr_factor(step: int, steps_per_epoch: int, warmup: int, optim: Any, epochs: int) -> float:
    """A per-epoch schedule with a linear warm-up (``optim.warmup_steps``): the factor of the step's epoch
    (:func:`lr_factor`) times ``(step + 1) / warmup`` for the first ``warmup`` steps, times 1 after them.

    >>> from bench.config import OptimConfig
    >>> o = OptimConfig(schedule="constant")
    >>> [warmed_lr_factor(s, 39, 4, o, 3) for s in (0, 1, 3, 4, 100)]
    [0.25, 0.5, 1.0, 1.0, 1.0]
    """
    ramp = (step + 1) / warmup if step < warmup else 1.0
    return lr_factor(step // steps_per_epoch, optim, epochs) * ramp


class Classifier(pl.LightningModule):
    """``recalibration``: a function giving the fixed training batches of the BatchNorm-recalibrated
    evaluation (:mod:`bench.running.bn_eval`), or None to evaluate only as the protocol does. ``heldout``: a
    function giving (images, labels) batches of held-out training images (``data.heldout``), evaluated after
    each validation like it (``heldout_top1``, and ``heldout_top1_bn`` through the recalibrated copy), or None."""

    def __init__(self, model: nn.Module, *, num_classes: int, optim: Any, epochs: int, seed: int,
                 lr: float | None = None, max_loss: float = 1000.0, channels_last: bool = False,
                 recalibration: Callable[[], Iterable[torch.Tensor]] | None = None, compile: bool = False,
                 heldout: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]] | None = None,
                 teacher: nn.Module | None = None, distill_alpha: float = 0.9, distill_temperature: float = 4.0):
        super().__init__()
        self.model, self.optim_cfg, self.epochs, self.seed = model, optim, epochs, seed
        self.lr = lr if lr is not None else optim.lr
        self.max_loss, self.channels_last, self.compile_model = max_loss, channels_last, compile
        self._compiled: list[nn.Module] = []  # torch.compile's wrapper, in a list: not a submodule, so the
        #                                        checkpoints keep the plain model's keys
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        self.val_samples = SumMetric()
        self.recalibration = recalibration if recalibration is not None and has_batchnorm(model) else None
        if self.recalibration is not None:
            self.val_loss_bn = MeanMetric(nan_strategy="disable")
            self.val_top1_bn = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self._recalibrated: list[nn.Module] = []  # a list, so the copy is no submodule (not in checkpoints)
        # the distillation teacher (bench.running.teacher), in a list: no submodule, so neither the checkpoints,
        # the optimiser nor DDP's gradient sync see it
        self._teacher: list[nn.Module] = [teacher] if teacher is not None else []
        self.distill_alpha, self.distill_temperature = float(distill_alpha), float(distill_temperature)
        self.recalibration_seconds: float | None = None  # of the latest evaluation's BatchNorm pass
        self.heldout = heldout
        if heldout is not None:  # torchmetrics states are not persistent: checkpoints are the same without them
            self.heldout_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
            self.heldout_top1_bn = MulticlassAccuracy(num_classes, top_k=1, average="micro")

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self._teacher:
            teacher = self._teacher[0].to(self.device)
            self._teacher = [teacher.to(memory_format=torch.channels_last) if self.channels_last else teacher]
        if self.compile_model and not self._compiled:
            self._compiled = [torch.compile(self.model)]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self._compiled[0] if self._compiled else self.model)(x)

    # -- training ----------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # Dropout and drop-path draw from the global RNG: tie it to (seed, epoch, rank) so that resuming
        # from the checkpoint of the previous epoch replays this epoch bit for bit.
        reseed(epoch_seed(self.seed, self.current_epoch, self.global_rank, DROPOUT))
        self.train_loss.reset()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x).float()
        if self._teacher:  # the teacher sees the very batch the student trains on
            with torch.no_grad():
                teacher_logits = self._teacher[0](self.prepare(x)).float()
            loss = distillation_loss(logits, teacher_logits, y, alpha=self.distill_alpha,
                                     temperature=self.distill_temperature)
        else:
            loss = F.cross_entropy(logits, y)
        self._check_loss(loss, batch_idx)
        self.train_loss.update(loss.detach())
        self.log("train_loss_step", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def _check_loss(self, loss: torch.Tensor, batch_idx: int) -> None:
        value = loss.detach().float().item()
        bad = not math.isfinite(value) or value > self.max_loss
        # Every process must stop at the same step, or the others would wait forever in the gradient sync.
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            if not bad:
                what = "became non-finite or exploded in another process"
            elif not math.isfinite(value):
                what = f"became {value:g}"
            else:
                what = f"exploded to {value:.4g} (> trainer.max_loss={self.max_loss:g})"
            raise DivergedError(f"training loss {what} at epoch {self.current_epoch + 1}, "
                                f"step {batch_idx + 1} of the epoch (global step {self.global_step + 1})")

    # -- validation --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        if self.recalibration is not None:
            context = self.trainer.strategy.precision_plugin.val_step_context
            t0 = time.perf_counter()
            self._recalibrated = [recalibrated(self.model, self.recalibration(), prepare=self.prepare,
                                               context=context)]
            self.recalibration_seconds = time.perf_counter() - t0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x).float()
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.val_top1.update(logits, y)
        self.val_top5.update(logits, y)
        self.val_samples.update(len(y))
        # Logging the metric objects makes Lightning reduce them across processes at epoch end.
        self.log("val_top1", self.val_top1, on_step=False, on_epoch=True, prog_bar=True)
        self.log_dict({"val_top5": self.val_top5, "val_loss": self.val_loss, "val_samples": self.val_samples},
                      on_step=False, on_epoch=True)
        if self._recalibrated:  # the same images through the recalibrated copy: one pass over the data
            logits = self._recalibrated[0](self.prepare(x)).float()
            self.val_loss_bn.update(F.cross_entropy(logits, y), weight=len(y))
            self.val_top1_bn.update(logits, y)
            self.log_dict({"val_top1_bn": self.val_top1_bn, "val_loss_bn": self.val_loss_bn}, on_step=False,
                          on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        if self.heldout is not None:
            self._evaluate_heldout()
        self._recalibrated = []

    @torch.no_grad()
    def _evaluate_heldout(self) -> None:
        """Top-1 on the held-out training images, as validated (the network as it is, and its recalibrated copy
        when there is one). Eval mode, no gradients, no random numbers: training is the same with it or without."""
        was_training = self.model.training
        self.model.eval()
        self.heldout_top1.reset()
        self.heldout_top1_bn.reset()
        with self.trainer.strategy.precision_plugin.val_step_context():
            for x, y in self.heldout():
                x, y = self.prepare(x), y.to(self.device)
                self.heldout_top1.update(self(x).float(), y)
                if self._recalibrated:
                    self.heldout_top1_bn.update(self._recalibrated[0](x).float(), y)
        self.model.train(was_training)
        # compute() reduces over DDP processes (each evaluated its own share); the values are then logged as is
        self.log("heldout_top1", self.heldout_top1.compute(), on_step=False, on_epoch=True)
        if self._recalibrated:
            self.log("heldout_top1_bn", self.heldout_top1_bn.compute(), on_step=False, on_epoch=True)

    # -- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.optim_cfg
        name = getattr(o.name, "value", o.name)
        if name == "adam":
            opt = torch.optim.Adam(self.parameters(), lr=self.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        elif name == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=o.momentum, nesterov=o.nesterov,
                                  weight_decay=o.weight_decay)
        else:
            raise ConfigError(f"unknown optimiser {name!r}: adam or sgd")
        if getattr(o.schedule, "value", o.schedule) == "cosine_steps":
            total = int(self.trainer.estimated_stepping_batches)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: step_lr_factor(s, total, o.warmup_steps))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        warmup = int(getattr(o, "warmup_steps", 0) or 0)
        if warmup:  # the epoch's factor times a linear warm-up, stepped per step (its state is checkpointed)
            per_epoch = max(int(self.trainer.estimated_stepping_batches) // max(int(self.trainer.max_epochs), 1), 1)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: warmed_lr_factor(s, per_epoch, warmup, o, self.epochs))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, o, self.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


# ---------------------------------------------------------------------------------------------------------
# The Trainer
# ---------------------------------------------------------------------------------------------------------


def on_gpu(trainer_cfg: Any) -> bool:
    accelerator = trainer_cfg.accelerator
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def build_loggers(cfg: Any, folder: Path, *, segment: int = 1, wandb_id: str | None = None, wandb_name: str = "",
                  wandb_group: str = "") -> list:
    """CSV (one file per start or resume of the run: Lightning deletes an existing one) and W&B loggers.

    The W&B run (``cfg.logger.wandb``) needs its id, name and group: the run folder's (RunFolder.wandb_*).
    """
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = []
    if cfg.logger.csv:
        loggers.append(CSVLogger(save_dir=str(folder), name="csv", version=f"segment{segment}"))
    if cfg.logger.wandb and wandb_id is not None:
        from lightning.pytorch.loggers import WandbLogger
        from omegaconf import OmegaConf

        loggers.append(WandbLogger(
            project=cfg.logger.wandb_project, entity=cfg.logger.wandb_entity, name=wandb_name, id=wandb_id,
            save_dir=str(folder), mode=cfg.logger.wandb_mode, resume="allow", group=wandb_group,
            config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)))
    return loggers


def finish_loggers(loggers: list) -> None:
    """End the W&B run: the next run in this process (the target after its source) must start its own."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()


def build_trainer(cfg: Any, folder: Path, *, epochs: int, monitor: str, mode: str, callbacks: list,
                  loggers: list) -> pl.Trainer:
    """A Trainer for one run folder: checkpoints/last.ckpt and checkpoints/best.ckpt (by ``monitor``)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    tc = cfg.trainer
    gpu = on_gpu(tc)
    if tc.float32_matmul_precision:
        torch.set_float32_matmul_precision(tc.float32_matmul_precision)
    # Two callbacks: with save_last=True Lightning 2.6 writes last.ckpt only when a new best is saved, so a
    # resumed run could fall back several epochs. `last` is written after every validation.
    best = ModelCheckpoint(dirpath=str(folder / "checkpoints"), filename="best", monitor=monitor, mode=mode,
                           save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=str(folder / "checkpoints"), filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    return pl.Trainer(
        accelerator=tc.accelerator, devices=tc.devices, num_nodes=tc.num_nodes, strategy=tc.strategy,
        precision=tc.precision, max_epochs=epochs,
        deterministic=tc.deterministic if tc.deterministic is not None else ("warn" if gpu else True),
        callbacks=[*callbacks, best, last], logger=loggers or False, default_root_dir=str(folder),
        num_sanity_val_steps=0,  # the harness validates the initialised model itself (init_metrics)
        log_every_n_steps=tc.log_every_n_steps, enable_progress_bar=tc.enable_progress_bar,
        enable_model_summary=False,
        benchmark=getattr(tc, "cudnn_benchmark", None),  # None: Lightning's (off when deterministic)
        inference_mode=False,  # inference tensors created by trainer.validate() would break the later fit
        use_distributed_sampler=False,  # bench.data.sampling shards by rank itself (and never pads validation)
        limit_train_batches=tc.limit_train_batches,
    )

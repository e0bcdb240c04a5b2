"""The data module: train and val loaders for one data config, usable with or without a Trainer.

:class:`ImageDataModule` reads the data set (:mod:`bench.data.datasets`), draws its fixed subsets
(:mod:`bench.data.sampling`) and serves in-memory data through :class:`~bench.data.loaders.InMemoryLoader`
and image files through DataLoader workers. Rank, world size and device come from the Trainer if any.

Use it in a plain script (what ``bench/train_ghn.py`` does)::

    from bench.config import data_config
    from bench.data.module import build_datamodule
    dm = build_datamodule(data_config("digits", batch_size=32), seed=0)
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)              # the epoch decides order and augmentation
    x, y = next(iter(loader))                # x: float (32, 1, 16, 16) normalised, y: int64 (32,)
    val_x, val_y = next(iter(dm.val_dataloader()))
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from bench.config import DataConfig, SyntheticConfig
from bench.data.datasets import (
    DATASETS,
    IN_MEMORY,
    ImageFolderData,
    check_data_root,
    check_image_folder,
    load_in_memory,
)
from bench.data.loaders import InMemoryLoader
from bench.data.sampling import EpochSampler, fixed_subset, train_and_heldout
from bench.data.synthetic import generate_synthetic
from bench.errors import ConfigError, DataError
from bench.seeding import RECAL, epoch_seed, generator, subset_seeds

# The protocol's per-model resolutions; every other model trains at 224 px on ImageNet-sized data.
MODEL_RESOLUTION = {"efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 260}


def default_resolution(model_name: str | None) -> int:
    """The protocol's input resolution for a timm model name.

    >>> default_resolution("tf_efficientnet_b2"), default_resolution("resnet50")
    (260, 224)
    """
    for key, res in MODEL_RESOLUTION.items():
        if model_name and model_name.endswith(key):
            return res
    return 224


def resolve_num_workers(value: Any, local_processes: int = 1) -> int:
    """``data.num_workers`` as a number: an int as it is; ``auto``: this process's CPUs minus one for the
    training process itself, the CPUs being SLURM_CPUS_PER_TASK (one task per process) or else the CPUs this
    process may run on shared by the ``local_processes`` training processes of this machine.

    >>> resolve_num_workers(3), resolve_num_workers("4")
    (3, 4)
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        slurm = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
        if slurm.isdigit():
            cpus = int(slurm)
        else:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            cpus //= max(local_processes, 1)
        return max(cpus - 1, 0)
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < 0 or (isinstance(value, float) and value != n):
        raise ConfigError(f"data.num_workers must be a number of worker processes (0 or more) or auto, got {value!r}")
    return n


def as_data_config(cfg: Any) -> DictConfig:
    """Accept a DataConfig, a DictConfig or a plain dict; return a typed DictConfig."""
    if isinstance(cfg, DictConfig) and OmegaConf.get_type(cfg) is DataConfig:
        return cfg
    return OmegaConf.merge(OmegaConf.structured(DataConfig), cfg)


class ImageDataModule(pl.LightningDataModule):
    """Train/val loaders for one data config; rank, world size and device come from the Trainer if any.

    >>> from bench.config import data_config
    >>> dm = ImageDataModule(data_config("digits"), resolution=16, seed=0); dm.setup()
    >>> dm.num_train, dm.num_val
    (1438, 359)
    """

    def __init__(self, cfg: Any, *, resolution: int, seed: int = 0):
        super().__init__()
        self.cfg = as_data_config(cfg)
        if self.cfg.name not in DATASETS:
            raise ConfigError(f"unknown data set {self.cfg.name!r}; the data sets are {', '.join(DATASETS)}")
        self.resolution, self.seed = resolution, seed
        lo, hi = self.cfg.crop_scale or ((0.5, 1.0) if resolution < 100 else (0.1, 1.0))
        self.scale = (float(lo), float(hi))
        self._ready = False
        self.data_hash: str | None = None

    # -- loading -------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        cfg = self.cfg
        if cfg.name in IN_MEMORY:
            (self.train_x, self.train_y), (self.val_x, self.val_y) = load_in_memory(cfg)
            n_train, n_val = len(self.train_y), len(self.val_y)
            h = hashlib.sha1()
            for t in (self.train_x, self.train_y, self.val_x, self.val_y):
                h.update(t.contiguous().numpy().tobytes())
            self.data_hash = h.hexdigest()
            labels = torch.cat([self.train_y, self.val_y])
        else:
            check_data_root(cfg)
            root = Path(cfg.root)
            if cfg.name == "synthetic":
                generate_synthetic(root, cfg.num_classes, cfg.synthetic or SyntheticConfig())
            check_image_folder(root, cfg.num_classes, cfg.name)
            self.files = ImageFolderData(root, cfg, self.resolution, self.scale)
            n_train, n_val = len(self.files.train), len(self.files.val)
            self.data_hash = self.files.file_list_hash()
            labels = torch.tensor(self.files.train.targets[:1] + self.files.val.targets[-1:])
        if int(labels.max()) >= cfg.num_classes:
            raise DataError(f"{cfg.name} has labels up to {int(labels.max())} but data.num_classes={cfg.num_classes}")
        train_seed, val_seed = subset_seeds(cfg.subset_seed)
        # the held-out slice (data.heldout) comes from the training subset's own draw: disjoint from it, and
        # the training subset is the same with or without it
        self.train_idx, self.heldout_idx = train_and_heldout(n_train, cfg.train_subset, int(cfg.heldout), train_seed)
        self.val_idx = fixed_subset(n_val, cfg.val_subset, val_seed)
        self._ready = True

    @property
    def num_train(self) -> int:
        return len(self.train_idx)

    @property
    def num_val(self) -> int:
        return len(self.val_idx)

    @property
    def num_heldout(self) -> int:
        return len(self.heldout_idx)

    # -- loaders -------------------------------------------------------------------------------------
    def _placement(self) -> tuple[int, int, torch.device]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1, torch.device("cpu")
        return trainer.global_rank, trainer.world_size, trainer.strategy.root_device

    @property
    def num_workers(self) -> int:
        """``data.num_workers`` resolved for this process (``auto``: :func:`resolve_num_workers`)."""
        local = self.trainer.num_devices if self.trainer is not None else 1
        return resolve_num_workers(self.cfg.num_workers, local)

    def _loader_options(self, device: torch.device) -> dict:
        """DataLoader options from the allocation: workers, pinned memory, persistent workers."""
        workers = self.num_workers
        pin = self.cfg.get("pin_memory")
        return {"num_workers": workers, "pin_memory": device.type == "cuda" if pin is None else bool(pin),
                # Fresh workers each epoch by default: their RNG then depends on the epoch only, which makes
                # resume exact.
                "persistent_workers": bool(self.cfg.get("persistent_workers")) and workers > 0}

    def per_device_batch(self, world: int, train: bool = True) -> int:
        total = self.cfg.batch_size if train else (self.cfg.eval_batch_size or 2 * self.cfg.batch_size)
        if total % world:
            raise DataError(f"the global batch size {total} does not split evenly over {world} processes")
        return total // world

    def _loader(self, train: bool):
        self.setup()
        rank, world, device = self._placement()
        batch = self.per_device_batch(world, train)
        sampler = EpochSampler(self.train_idx if train else self.val_idx, shuffle=train, seed=self.seed,
                               rank=rank, world=world)
        if train and len(sampler) < batch:
            raise DataError(
                f"{self.cfg.name}: {len(sampler)} training images per process is less than one batch of {batch}; "
                "lower data.batch_size or enlarge data.train_subset")
        if self.cfg.name in IN_MEMORY:
            x, y = (self.train_x, self.train_y) if train else (self.val_x, self.val_y)
            return InMemoryLoader(x, y, sampler, batch_size=batch, train=train, resolution=self.resolution,
                                  mean=list(self.cfg.mean), std=list(self.cfg.std), scale=self.scale,
                                  hflip=self.cfg.hflip, device=device)
        generator = torch.Generator()
        sampler.generator = generator
        sampler.set_epoch(0)
        return torch.utils.data.DataLoader(
            self.files.train if train else self.files.val, batch_size=batch, sampler=sampler, drop_last=train,
            generator=generator, **self._loader_options(device))

    def train_dataloader(self):
        return self._loader(train=True)

    def recalibration_batches(self, n_batches: int) -> Iterator[torch.Tensor]:
        """``n_batches`` fixed training batches of ``data.batch_size`` images with the eval transform, on the
        CPU: what the BatchNorm-recalibrated evaluation re-estimates the statistics from. The images depend on
        the run seed only (the same for every init of a seed); every process gets all of them, so all compute
        the same statistics."""
        self.setup()
        n = min(n_batches * self.cfg.batch_size, len(self.train_idx))
        order = torch.randperm(len(self.train_idx), generator=generator(epoch_seed(self.seed, 0, 0, RECAL)))
        sampler = EpochSampler(self.train_idx[order[:n]], shuffle=False)
        if self.cfg.name in IN_MEMORY:
            loader = InMemoryLoader(self.train_x, self.train_y, sampler, batch_size=self.cfg.batch_size, train=False,
                                    resolution=self.resolution, mean=list(self.cfg.mean), std=list(self.cfg.std),
                                    scale=self.scale, hflip=False)
        else:
            loader = torch.utils.data.DataLoader(self.files.train_as_val, batch_size=self.cfg.batch_size,
                                                 sampler=sampler, num_workers=self.num_workers)
        return (x for x, _ in loader)

    def val_dataloader(self):
        return self._loader(train=False)

    def heldout_dataloader(self):
        """The held-out training images (``data.heldout``) with the eval transform, this process's share of
        them (strided, unpadded, as validation), or None when there are none. Draws no random numbers."""
        self.setup()
        if not self.num_heldout:
            return None
        rank, world, device = self._placement()
        batch = self.per_device_batch(world, train=False)
        sampler = EpochSampler(self.heldout_idx, shuffle=False, rank=rank, world=world)
        if self.cfg.name in IN_MEMORY:
            return InMemoryLoader(self.train_x, self.train_y, sampler, batch_size=batch, train=False,
                                  resolution=self.resolution, mean=list(self.cfg.mean), std=list(self.cfg.std),
                                  scale=self.scale, hflip=False, device=device)
        return torch.utils.data.DataLoader(self.files.train_as_val, batch_size=batch, sampler=sampler,
                                           generator=torch.Generator(), **self._loader_options(device))


def build_datamodule(cfg: Any, *, model_name: str | None = None, seed: int = 0) -> ImageDataModule:
    """The data module for ``cfg`` at ``cfg.resolution`` (or the protocol's resolution for ``model_name``)."""
    cfg = as_data_config(cfg)
    resolution = cfg.resolution or default_resolution(model_name)
    return ImageDataModule(cfg, resolution=resolution, seed=seed)

"""Data for the harness: one LightningDataModule for every data set, usable without Hydra or a Trainer.

Two code paths, chosen by the data set:

* in memory (``fashion_mnist``, ``digits``, ``cifar10``, ``cifar100``): the images are one uint8 tensor;
  batches are cut from it and augmented as a whole batch (RandomResizedCrop + flip as one affine
  ``grid_sample``) on the device that trains, so a 2-core CPU spends its time on the model, not on PIL;
* files (``imagenet``, ``synthetic``): torchvision ``ImageFolder`` + PIL transforms in DataLoader workers.

Both follow the protocol (``shared/docs/protocol.md``): train RandomResizedCrop(res, scale (0.1, 1), or
(0.5, 1) below 100 px) + horizontal flip + mean/std; eval Resize(res) + CenterCrop(res). Every random choice
(subset, order, crops) is a function of (seed, epoch, rank), so a resumed run sees exactly the batches an
uninterrupted one would. Under DDP each process gets its own shard; validation shards are disjoint and
unpadded, so reduced metrics are exact.

Use it in a plain script (what ``bench/train_ghn.py`` can do)::

    from bench.config import data_config
    from bench.data import build_datamodule
    dm = build_datamodule(data_config("digits", batch_size=32), seed=0)
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)              # the epoch decides order and augmentation
    x, y = next(iter(loader))                # x: float (32, 1, 16, 16) normalised, y: int64 (32,)
    val_x, val_y = next(iter(dm.val_dataloader()))
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from bench.config import DataConfig, SyntheticConfig
from dpiat.errors import DpiatError, UnknownNameError

IN_MEMORY = ("fashion_mnist", "digits", "cifar10", "cifar100")
FILES = ("imagenet", "synthetic")
DATASETS = IN_MEMORY + FILES

# The protocol's per-model resolutions; every other model trains at 224 px on ImageNet-sized data.
MODEL_RESOLUTION = {"efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 260}


class DataError(DpiatError):
    """Data that cannot be found or used as configured."""


def default_resolution(model_name: str | None) -> int:
    """The protocol's input resolution for a timm model name.

    >>> default_resolution("tf_efficientnet_b2"), default_resolution("resnet50")
    (260, 224)
    """
    for key, res in MODEL_RESOLUTION.items():
        if model_name and model_name.endswith(key):
            return res
    return 224


def as_data_config(cfg: Any) -> DictConfig:
    """Accept a DataConfig, a DictConfig or a plain dict; return a typed DictConfig."""
    if isinstance(cfg, DictConfig) and OmegaConf.get_type(cfg) is DataConfig:
        return cfg
    return OmegaConf.merge(OmegaConf.structured(DataConfig), cfg)


def epoch_seed(seed: int, epoch: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed for one (run seed, epoch, process, purpose): independent streams, stable across runs."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{rank}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def fixed_subset(n: int, size: int | None, seed: int) -> torch.Tensor:
    """Indices of a fixed random subset of ``size`` out of ``n`` (all of them, in order, when size is None)."""
    if size is None or size >= n:
        return torch.arange(n)
    if size <= 0:
        raise DataError(f"a subset must hold at least one image, got {size}")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:size].sort().values


class EpochSampler(torch.utils.data.Sampler):
    """Indices of one process's shard for the current epoch.

    Training (``shuffle=True``): a fresh permutation per epoch from (seed, epoch), cut into ``world`` equal
    shards (the remainder is dropped so every process takes the same number of steps). Validation: the
    indices in order, strided over processes, unpadded (each image is seen exactly once in total).
    ``set_epoch`` is called by Lightning before each epoch.
    """

    def __init__(self, indices: torch.Tensor, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        self.indices, self.shuffle, self.seed, self.rank, self.world = indices, shuffle, seed, rank, world
        self.epoch = 0
        self.generator: torch.Generator | None = None  # a DataLoader's, reseeded per epoch (worker seeds)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.generator is not None:
            self.generator.manual_seed(epoch_seed(self.seed, epoch, self.rank, stream=2))

    def shard(self) -> torch.Tensor:
        if not self.shuffle:
            return self.indices[self.rank :: self.world]
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, 0, stream=0))
        order = self.indices[torch.randperm(len(self.indices), generator=g)]
        per = len(order) // self.world
        return order[self.rank * per : (self.rank + 1) * per]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard().tolist())

    def __len__(self) -> int:
        return len(self.indices) // self.world if self.shuffle else len(self.indices[self.rank :: self.world])


# ---------------------------------------------------------------------------------------------------------
# In-memory data sets: uint8 tensors (N, C, H, W) and int64 labels
# ---------------------------------------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (f"{stem}.gz", stem):
            if (folder / name).exists():
                return folder / name
    return None


FASHION_MNIST_DOWNLOADS = Path("data/fashion_mnist")  # where torchvision puts it when the Debian package is absent


def load_fashion_mnist(cfg: DictConfig) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    root = Path(cfg.root or "/usr/share/datasets/fashion-mnist")
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for folder in (root, FASHION_MNIST_DOWNLOADS):
        paths = [_find_idx(folder, s) for s in stems]
        if None not in paths:
            break
    else:
        if not cfg.download:
            raise DataError(
                f"Fashion-MNIST not found in {root} (expected the IDX files {', '.join(s + '.gz' for s in stems)}). "
                "Install the Debian package: `apt-get install dataset-fashion-mnist` (it puts them in "
                "/usr/share/datasets/fashion-mnist/), or let torchvision download it: data.download=true.")
        from torchvision.datasets import FashionMNIST

        try:
            for train in (True, False):
                FashionMNIST(str(FASHION_MNIST_DOWNLOADS), train=train, download=True)
        except Exception as e:  # no internet, most likely
            raise DataError(f"Fashion-MNIST is not in {root} and torchvision could not download it "
                            f"({type(e).__name__}: {e}). Install the Debian package dataset-fashion-mnist.") from None
        paths = [_find_idx(FASHION_MNIST_DOWNLOADS, s) for s in stems]
    xtr, ytr, xte, yte = (torch.from_numpy(_read_idx(p).copy()) for p in paths)
    return (xtr.unsqueeze(1), ytr.long()), (xte.unsqueeze(1), yte.long())


def load_digits_split(cfg: DictConfig):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target).long()
    # A fixed 80/20 split (seed 0, not the run seed): every run validates on the same 359 digits.
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_val = len(x) // 5
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    return (x[train], y[train]), (x[val], y[val])


def load_cifar(cfg: DictConfig):
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if cfg.name == "cifar10" else CIFAR100
    root = cfg.root or "data/cifar"
    try:
        sets = [cls(root, train=t, download=cfg.download) for t in (True, False)]
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise DataError(
            f"{cfg.name} not found under {root} ({e}). Set data.download=true to fetch it with torchvision "
            "(needs internet), or data.root=<folder holding cifar-10-batches-py / cifar-100-python>."
        ) from None
    out = []
    for s in sets:
        x = torch.from_numpy(np.ascontiguousarray(s.data)).permute(0, 3, 1, 2).contiguous()
        out.append((x, torch.as_tensor(s.targets).long()))
    return out[0], out[1]


def load_in_memory(cfg: DictConfig):
    """(train, val) as ((uint8 N x C x H x W, int64 N), ...) for an in-memory data set."""
    loaders = {"fashion_mnist": load_fashion_mnist, "digits": load_digits_split,
               "cifar10": load_cifar, "cifar100": load_cifar}
    train, val = loaders[cfg.name](cfg)
    channels = train[0].shape[1]
    if channels != cfg.in_chans:
        raise DataError(f"{cfg.name} has {channels}-channel images but data.in_chans={cfg.in_chans}")
    return train, val


def crop_params(n: int, scale: tuple[float, float], hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Affine matrices (n, 2, 3) for RandomResizedCrop(scale, ratio=(3/4, 4/3)) + random horizontal flip.

    Like torchvision: 10 tries of (area, log-uniform aspect ratio) per image, the first crop that fits wins;
    an image where none fits gets the whole image. Coordinates are fractions of the (square) input.
    """
    tries = 10
    area = torch.empty(n, tries).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, tries).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    w = torch.sqrt(area * torch.exp(log_r))
    h = torch.sqrt(area / torch.exp(log_r))
    ok = (w <= 1) & (h <= 1)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    pick = first.clamp(min=0).unsqueeze(1)
    w = torch.where(first >= 0, w.gather(1, pick).squeeze(1), torch.ones(n))
    h = torch.where(first >= 0, h.gather(1, pick).squeeze(1), torch.ones(n))
    x0 = torch.rand(n, generator=generator) * (1 - w)
    y0 = torch.rand(n, generator=generator) * (1 - h)
    flip = torch.ones(n)
    if hflip:
        flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = 2 * x0 + w - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * y0 + h - 1
    return theta


class InMemoryLoader:
    """Batches from uint8 tensors, augmented (train) or resized (eval) on ``device``; yields (x, y).

    ``sampler`` decides the shard and order; ``set_epoch`` on it also fixes the crops of that epoch.
    """

    batch_sampler = None  # Lightning inspects DataLoader-like objects for these two attributes

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, sampler: EpochSampler, *, batch_size: int,
                 train: bool, resolution: int, mean: list[float], std: list[float], scale: tuple[float, float],
                 hflip: bool, device: torch.device | str = "cpu"):
        self.images, self.labels, self.sampler = images, labels, sampler
        self.batch_size, self.train, self.resolution = batch_size, train, resolution
        self.scale, self.hflip, self.device = scale, hflip, torch.device(device)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float() / 255 - mean) / std

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.sampler.shard()
        g = torch.Generator().manual_seed(epoch_seed(self.sampler.seed, self.sampler.epoch, self.sampler.rank, 1))
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            # index_select: plain indexing of a 4-d tensor takes a slow path (30x slower on a CPU)
            x = self.images.index_select(0, sel).to(self.device, non_blocking=True)
            y = self.labels.index_select(0, sel).to(self.device, non_blocking=True)
            # Normalising before resampling is the same as after (both are affine); the crops lie inside the
            # image, so zero padding (= the mean) only touches sub-pixel borders, and it is 7x faster on a
            # CPU than reflection.
            x = self._normalize(x)
            size = (len(sel), x.shape[1], self.resolution, self.resolution)
            if self.train:
                theta = crop_params(len(sel), self.scale, self.hflip, g).to(self.device)
                grid = F.affine_grid(theta, list(size), align_corners=False)
                x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            elif x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
                x = resize_center_crop(x, self.resolution)
            yield x, y


def resize_center_crop(x: torch.Tensor, res: int) -> torch.Tensor:
    """Resize the shorter side to ``res`` (bilinear, antialiased) then crop the centre: the eval transform."""
    h, w = x.shape[-2:]
    s = res / min(h, w)
    nh, nw = max(res, round(h * s)), max(res, round(w * s))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - res) // 2, (nw - res) // 2
    return x[..., top : top + res, left : left + res]


# ---------------------------------------------------------------------------------------------------------
# Files: ImageFolder layout (ImageNet; the generated synthetic set in tests)
# ---------------------------------------------------------------------------------------------------------


def check_data_root(cfg: Any) -> None:
    """A data set read from image files needs ``data.root``; also checked by bench/sweep.py before submitting."""
    if cfg.name in FILES and cfg.root is None:
        raise DataError(f"data.root is required for {cfg.name}: the folder that holds its train/ and val/ "
                        f"ImageFolders (as the machines that run it see it), e.g. data.root=/datasets/{cfg.name}")


def check_image_folder(root: Path, num_classes: int, name: str) -> None:
    layout = (f"expected the standard ImageFolder layout {root}/train/<class>/*.JPEG and {root}/val/<class>/*.JPEG "
              "(ImageNet: the val images sorted into their 1000 wnid folders, as in the PyTorch examples)")
    if not root.is_dir():
        raise DataError(f"{name} folder {root} does not exist: {layout}. Set data.root=<that folder>.")
    found = {}
    for split in ("train", "val"):
        d = root / split
        found[d] = sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
        if not found[d]:
            raise DataError(f"{name}: no class folders in {d}: {layout}.")
    for d, classes in found.items():
        if len(classes) != num_classes:
            raise DataError(f"{name}: {d} has {len(classes)} class folders but data.num_classes={num_classes}.")


def generate_synthetic(root: str | os.PathLike, num_classes: int, spec: Any, seed: int = 0) -> Path:
    """Write a small learnable ImageFolder of JPEGs (once; concurrent callers wait for the first).

    Class k: a colour of hue k/K with stripes at angle k*pi/K, plus noise, random sizes (not square).
    """
    from PIL import Image

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if (root / "val").is_dir():
            return root
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        rng = np.random.default_rng(seed)
        import colorsys

        for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
            for k in range(num_classes):
                d = tmp / split / f"class{k:03d}"
                d.mkdir(parents=True)
                colour = np.array(colorsys.hsv_to_rgb(k / num_classes, 0.8, 0.9)) * 255
                angle = math.pi * k / num_classes
                for i in range(per_class):
                    w, h = rng.integers(spec.min_size, spec.max_size + 1, size=2)
                    yy, xx = np.mgrid[0:h, 0:w]
                    phase = rng.uniform(0, 2 * math.pi)
                    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) / 3.0 + phase)
                    img = colour * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 25, (h, w, 3))
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{split}_{i:05d}.JPEG", quality=90)
        os.replace(tmp, root)
    return root


class _ImageFolderData:
    def __init__(self, root: Path, cfg: DictConfig, resolution: int, scale: tuple[float, float]):
        from torchvision import transforms as T
        from torchvision.datasets import ImageFolder

        grey = [T.Grayscale(1)] if cfg.in_chans == 1 else []
        norm = [T.ToTensor(), T.Normalize(list(cfg.mean), list(cfg.std))]
        flip = [T.RandomHorizontalFlip()] if cfg.hflip else []
        train_tf = T.Compose(grey + [T.RandomResizedCrop(resolution, scale=scale, antialias=True)] + flip + norm)
        val_tf = T.Compose(grey + [T.Resize(resolution, antialias=True), T.CenterCrop(resolution)] + norm)
        self.train = ImageFolder(str(root / "train"), transform=train_tf)
        self.val = ImageFolder(str(root / "val"), transform=val_tf)
        if self.train.classes != self.val.classes:
            raise DataError(f"{root}: train/ and val/ have different class folders")

    def file_list_hash(self) -> str:
        h = hashlib.sha1()
        for split, ds in (("train", self.train), ("val", self.val)):
            base = Path(ds.root)
            for path, label in ds.samples:
                h.update(f"{split}\t{Path(path).relative_to(base)}\t{label}\n".encode())
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# The data module
# ---------------------------------------------------------------------------------------------------------


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
            raise UnknownNameError("data set", self.cfg.name, DATASETS)
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
            self.files = _ImageFolderData(root, cfg, self.resolution, self.scale)
            n_train, n_val = len(self.files.train), len(self.files.val)
            self.data_hash = self.files.file_list_hash()
            labels = torch.tensor(self.files.train.targets[:1] + self.files.val.targets[-1:])
        if int(labels.max()) >= cfg.num_classes:
            raise DataError(f"{cfg.name} has labels up to {int(labels.max())} but data.num_classes={cfg.num_classes}")
        self.train_idx = fixed_subset(n_train, cfg.train_subset, cfg.subset_seed)
        self.val_idx = fixed_subset(n_val, cfg.val_subset, cfg.subset_seed + 1)
        self._ready = True

    @property
    def num_train(self) -> int:
        return len(self.train_idx)

    @property
    def num_val(self) -> int:
        return len(self.val_idx)

    # -- loaders -------------------------------------------------------------------------------------
    def _placement(self) -> tuple[int, int, torch.device]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1, torch.device("cpu")
        return trainer.global_rank, trainer.world_size, trainer.strategy.root_device

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
            self.files.train if train else self.files.val, batch_size=batch, sampler=sampler,
            num_workers=self.cfg.num_workers, drop_last=train, generator=generator,
            pin_memory=device.type == "cuda",
            # Fresh workers each epoch: their RNG then depends on the epoch only, which makes resume exact.
            persistent_workers=False)

    def train_dataloader(self):
        return self._loader(train=True)

    def val_dataloader(self):
        return self._loader(train=False)


def build_datamodule(cfg: Any, *, model_name: str | None = None, seed: int = 0) -> ImageDataModule:
    """The data module for ``cfg`` at ``cfg.resolution`` (or the protocol's resolution for ``model_name``)."""
    cfg = as_data_config(cfg)
    resolution = cfg.resolution or default_resolution(model_name)
    return ImageDataModule(cfg, resolution=resolution, seed=seed)

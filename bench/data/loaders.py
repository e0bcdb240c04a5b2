"""Batches of an in-memory data set, augmented as whole batches on the device that trains.

The images are one uint8 tensor; a batch is cut from it and augmented at once (RandomResizedCrop + flip as
one affine ``grid_sample``), so a 2-core CPU spends its time on the model, not on PIL. Train transform of the
protocol (``docs/protocol.md``): RandomResizedCrop(res, scale) + horizontal flip + mean/std; eval: Resize(res)
+ CenterCrop(res). The crops of an epoch are a function of (seed, epoch, rank) (:mod:`bench.seeding`).

    >>> import torch
    >>> resize_center_crop(torch.zeros(1, 1, 40, 80), 20).shape
    torch.Size([1, 1, 20, 20])
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from bench.data.sampling import EpochSampler
from bench.seeding import CROPS, epoch_seed, generator


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
        g = generator(epoch_seed(self.sampler.seed, self.sampler.epoch, self.sampler.rank, CROPS))
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


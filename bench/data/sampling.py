"""Which images a process sees in an epoch: fixed subsets, and the per-epoch shard and order.

Every random choice is a function of (seed, epoch, rank) (:mod:`bench.seeding`), so a resumed run sees
exactly the batches an uninterrupted one would. Under DDP each process gets its own shard; validation shards
are disjoint and unpadded, so metrics reduced over processes are exact.

    >>> import torch
    >>> s = EpochSampler(torch.arange(10), shuffle=True, seed=0, rank=0, world=2)
    >>> s.set_epoch(3); len(list(s))
    5
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from bench.errors import DataError
from bench.seeding import SHUFFLE, WORKERS, epoch_seed, generator


def fixed_subset(n: int, size: int | None, seed: int) -> torch.Tensor:
    """Indices of a fixed random subset of ``size`` out of ``n`` (all of them, in order, when size is None)."""
    if size is None or size >= n:
        return torch.arange(n)
    if size <= 0:
        raise DataError(f"a subset must hold at least one image, got {size}")
    return torch.randperm(n, generator=generator(seed))[:size].sort().values


def train_and_heldout(n: int, size: int | None, heldout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed training subset and a fixed held-out slice of ``heldout`` images, disjoint, from one draw.

    Both come from the same permutation of the ``n`` images (``seed``): training takes its head, the held-out
    slice its tail, so they never share an image, the training subset is exactly :func:`fixed_subset`'s (a
    held-out slice changes nothing about training), and the slice depends on ``seed`` alone (the same for
    every run seed and init). ``size`` None: training takes every image not held out. ``heldout`` 0: none.

    >>> train, held = train_and_heldout(10, 4, 3, seed=0)
    >>> torch.equal(train, fixed_subset(10, 4, 0)), len(held), set(train.tolist()) & set(held.tolist())
    (True, 3, set())
    """
    if heldout < 0:
        raise DataError(f"data.heldout must be 0 (off) or a number of images, got {heldout}")
    if heldout == 0:
        return fixed_subset(n, size, seed), torch.arange(0)
    room = n - heldout
    if room < 1 or (size is not None and size > room):
        need = f"data.train_subset={size} + data.heldout={heldout}" if size is not None else f"data.heldout={heldout}"
        raise DataError(f"{need} leaves no room: the training split holds {n} images; lower data.heldout"
                        + (" or data.train_subset" if size is not None else ""))
    if size is not None and size <= 0:
        raise DataError(f"a subset must hold at least one image, got {size}")
    order = torch.randperm(n, generator=generator(seed))
    take = room if size is None else size
    return order[:take].sort().values, order[room:].sort().values


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
            self.generator.manual_seed(epoch_seed(self.seed, epoch, self.rank, WORKERS))

    def shard(self) -> torch.Tensor:
        if not self.shuffle:
            return self.indices[self.rank :: self.world]
        g = generator(epoch_seed(self.seed, self.epoch, 0, SHUFFLE))
        order = self.indices[torch.randperm(len(self.indices), generator=g)]
        per = len(order) // self.world
        return order[self.rank * per : (self.rank + 1) * per]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard().tolist())

    def __len__(self) -> int:
        return len(self.indices) // self.world if self.shuffle else len(self.indices[self.rank :: self.world])

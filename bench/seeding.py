"""Every seed the benchmark uses, derived in one place, so that a run is a function of its seeds alone.

A run's seed ``k`` (``seed=k``) decides the target's initial weights and every random choice of its
training; a resumed run derives the same seeds for the same epoch, so it repeats an uninterrupted run bit
for bit. What must be the same for every init and seed (the images) has fixed seeds of its own::

    what                                     seed                                      used in
    global RNGs before data and model        reseed(k)                                 running/harness.py
    a training epoch's order                 epoch_seed(k, epoch, 0, SHUFFLE)          data/sampling.py
    its crops and flips (in-memory data)     epoch_seed(k, epoch, rank, CROPS)         data/loaders.py
    its DataLoader workers (image files)     epoch_seed(k, epoch, rank, WORKERS)       data/sampling.py
    its dropout and drop-path                reseed(epoch_seed(k, epoch, rank, DROPOUT))  running/lit.py
    the BatchNorm recalibration's batches    epoch_seed(k, 0, 0, RECAL)                data/module.py
    the fixed subsets (train, val)           subset_seeds(data.subset_seed)            data/module.py
    the digits train/val split               DIGITS_SPLIT                              data/datasets.py
    the generated image folder               SYNTHETIC                                 data/synthetic.py
    an untrained or timm-headed source       source.seed (global RNG)                  running/sources.py
    GHN-2 meta-training: GHN, held-out nets  seed (global RNG)                         train_ghn.py
      an epoch's global RNG, architectures   epoch_seed(seed, epoch, 0, DROPOUT / ARCHS)
      its passes over the data               pass_epoch(epoch, k) as the sampler's epoch

    >>> epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(0, 2)
    True
    >>> subset_seeds(0)
    (0, 1)
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

# Streams: one purpose each, so that drawing more numbers for one never shifts another.
SHUFFLE, CROPS, WORKERS, DROPOUT, ARCHS, RECAL = 0, 1, 2, 3, 4, 5
DIGITS_SPLIT = 0  # not the run seed: every run validates on the same 359 digits
SYNTHETIC = 0  # the generated image folder is the same for every run


def epoch_seed(seed: int, epoch: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed for one (run seed, epoch, process, stream): independent streams, stable across runs."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{rank}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def reseed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one 63-bit seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def generator(seed: int) -> torch.Generator:
    """A private torch generator: draws from it leave the global RNGs alone."""
    return torch.Generator().manual_seed(seed)


def subset_seeds(subset_seed: int) -> tuple[int, int]:
    """Seeds of the fixed training and validation subsets (``data.subset_seed``, fixed across run seeds)."""
    return subset_seed, subset_seed + 1


def pass_epoch(epoch: int, k: int) -> int:
    """The sampler epoch of the ``k``-th pass over the data in GHN meta-training epoch ``epoch``."""
    return epoch * 10_000 + k

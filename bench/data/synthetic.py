"""A small learnable image folder of JPEGs, generated once: the image-file code path (the ImageNet one) in tests.

    python bench/run.py experiment=smoke data=synthetic data.root=/tmp/synthetic epochs=1
"""

from __future__ import annotations

import colorsys
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from bench.seeding import SYNTHETIC


def generate_synthetic(root: str | os.PathLike, num_classes: int, spec: Any, seed: int = SYNTHETIC) -> Path:
    """Write a small learnable ImageFolder of JPEGs (once; concurrent callers wait for the first).

    Class k: a colour of hue k/K with stripes at angle k*pi/K, plus noise, random sizes (not square).
    """
    from PIL import Image  # only here: the in-memory data sets never need it

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if (root / "val").is_dir():
            return root
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        rng = np.random.default_rng(seed)
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

"""The ImageNet input pipeline's speed per DataLoader worker: PIL against torchvision.io, on this machine.

    .venv/bin/python bench/measure/loader_speed.py                         # 200 JPEGs of ImageNet's sizes, 224 px crops
    .venv/bin/python bench/measure/loader_speed.py --images 400 --repeats 5 --json out.json

Writes a small ImageFolder of JPEGs into a temporary folder: sizes around ImageNet's (sides 500 x 375 or
375 x 500, +-20 %), quality 90, content with ImageNet's spread of detail (smooth fields at several scales plus
fine noise, ~100-150 KB a file as ImageNet's average ~110 KB), then times what one worker does per training
image: read the file, decode it, RandomResizedCrop(224, scale (0.1, 1)) + horizontal flip + float + normalise
(the protocol's train transform, :func:`bench.data.datasets.image_transforms`) for each ``data.decoder``.
One worker is one process with one torch thread, as in a DataLoader worker; the figure is images/s per
worker (median over repeats), so a GPU step of S images/s needs about S / figure workers. With a GPU
(``--device cuda``, or found), torchvision's batched GPU decoder is timed too (decode + crop on the GPU),
images/s for the whole process. The machine's load (/proc/loadavg) is recorded: on a busy machine the
figures are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.config import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from bench.data.datasets import DECODERS, image_transforms  # noqa: E402


def make_jpegs(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """``n`` JPEGs of about ``size`` (either orientation, +-20 %), quality 90, in an ImageFolder of 2 classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = (int(s * rng.uniform(0.8, 1.2)) for s in size)
        if rng.random() < 0.3:
            w, h = h, w
        img = np.zeros((h, w, 3), np.float32)
        for cells, amp in ((4, 70.0), (16, 40.0), (64, 25.0), (160, 18.0)):  # smooth structure at three scales
            field = rng.normal(0, amp, (cells * h // max(h, w) + 2, cells * w // max(h, w) + 2, 3)).astype(np.float32)
            chans = [np.asarray(Image.fromarray(field[..., c]).resize((w, h), Image.BICUBIC)) for c in range(3)]
            img += np.stack(chans, -1)
        img += rng.normal(0, 16, img.shape).astype(np.float32)  # sensor noise: texture a JPEG has to code
        d = folder / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"img_{i:05d}.JPEG"
        Image.fromarray(np.clip(img + 128, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def time_worker(paths: list[Path], decoder: str, resolution: int, repeats: int) -> list[float]:
    """Images/s of one worker (this process, one thread): read + decode + train transform, ``repeats`` passes."""
    read, train_tf, _ = image_transforms(decoder, 3, resolution, (0.1, 1.0), True, IMAGENET_MEAN, IMAGENET_STD)
    torch.manual_seed(0)
    for p in paths[:10]:  # warm-up: imports, allocator
        train_tf(read(str(p)))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in paths:
            x = train_tf(read(str(p)))
        rates.append(len(paths) / (time.perf_counter() - t0))
    assert x.shape == (3, resolution, resolution) and x.dtype == torch.float32
    return rates


def time_gpu_decode(paths: list[Path], resolution: int, repeats: int, device: str, batch: int = 128) -> list[float]:
    """Images/s of torchvision's batched GPU JPEG decoder plus RandomResizedCrop + flip on the GPU."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms import v2

    data = [read_file(str(p)) for p in paths]
    tf = v2.Compose([v2.RandomResizedCrop(resolution, scale=(0.1, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def one_pass() -> None:
        for i in range(0, len(data), batch):
            imgs = decode_jpeg(data[i : i + batch], mode=ImageReadMode.RGB, device=device)
            torch.stack([tf(x) for x in imgs])
        torch.cuda.synchronize()

    one_pass()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one_pass()
        rates.append(len(paths) / (time.perf_counter() - t0))
    return rates


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def measure(n_images: int = 200, repeats: int = 3, resolution: int = 224, device: str | None = None,
            folder: Path | None = None) -> dict:
    """The figures as a dict (what ``--json`` writes and bench/measure/gpu_check.py records)."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(folder or tmp)
        paths = make_jpegs(root, n_images)
        kb = statistics.mean(p.stat().st_size for p in paths) / 1024
        load_before = loadavg()
        per_worker = {d: time_worker(paths, d, resolution, repeats) for d in DECODERS}
        out = {"images": n_images, "mean_file_kb": round(kb, 1), "resolution": resolution, "repeats": repeats,
               "img_s_per_worker": {d: round(statistics.median(r), 1) for d, r in per_worker.items()},
               "img_s_per_worker_all": {d: [round(x, 1) for x in r] for d, r in per_worker.items()},
               "loadavg_before": load_before, "loadavg_after": loadavg(), "cpu": platform.processor() or
               platform.machine(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
        device = device or ("cuda" if torch.cuda.is_available() else None)
        if device and device.startswith("cuda"):
            out["gpu_decode_img_s"] = round(statistics.median(time_gpu_decode(paths, resolution, repeats, device)), 1)
    pil, tv = out["img_s_per_worker"]["pil"], out["img_s_per_worker"]["torchvision"]
    out["faster"] = "torchvision" if tv > pil else "pil"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200, help="JPEGs to generate (default 200)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over them per decoder (default 3)")
    ap.add_argument("--resolution", type=int, default=224, help="crop size (default 224)")
    ap.add_argument("--device", default=None, help="also time GPU decoding on this device (default: cuda if any)")
    ap.add_argument("--gpu-img-s", type=float, default=2750.0,
                    help="the training speed to feed, images/s (default 2750: an ASSUMED H100/H200 figure for "
                         "tf_efficientnet_b0, bf16, 224 px; replace with bench/measure/gpu_check.py's)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    out = measure(args.images, args.repeats, args.resolution, args.device)
    print(f"{out['images']} JPEGs, mean {out['mean_file_kb']} KB, crop {out['resolution']} px, "
          f"load average {out['loadavg_before']} -> {out['loadavg_after']} ({out['cpu_count']} CPUs)")
    for d, r in out["img_s_per_worker"].items():
        need = args.gpu_img_s / r
        print(f"  {d:12s} {r:7.1f} images/s per worker -> {need:5.1f} workers for {args.gpu_img_s:.0f} images/s")
    if "gpu_decode_img_s" in out:
        print(f"  GPU decode + crop: {out['gpu_decode_img_s']:.0f} images/s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

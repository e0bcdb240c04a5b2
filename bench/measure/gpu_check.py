"""One prepared GPU check (under 8 minutes on one GPU): the smoke experiment on the GPU, training throughput of
the harness against a bare bf16 loop, and the input pipeline's images/s per worker.

    .venv/bin/python bench/measure/gpu_check.py --out results/gpu         # on a GPU: writes results/gpu/gpu_check.json
    .venv/bin/python bench/measure/gpu_check.py --smoke --out /tmp/check  # the same code on a CPU, tiny, ~1 minute

1. ``bench/run.py experiment=smoke trainer=gpu`` in a subprocess (the whole harness, run folder and all, under
   ``<out>/runs``): its exit status, seconds and final val_top1.
2. Training throughput of tf_efficientnet_b0 and tf_efficientnet_b2 at 224 px, batch 128, on the same
   synthetic batches already on the GPU (no data loading): through the harness (bench.running.lit's
   Classifier in the Trainer that build_trainer makes from ``trainer=gpu``: bf16-mixed, channels_last, cuDNN
   autotuning, the divergence check's per-step sync, metrics) and through a bare loop (bf16 autocast,
   channels_last, Adam, forward/backward/step). Reported: images/s of each and their ratio (target >= 0.9).
   ``--compile`` adds the harness with ``trainer.compile=true``.
3. The input pipeline: :func:`bench.measure.loader_speed.measure` (images/s per worker for each ``data.decoder``, and
   torchvision's GPU decoder), and the workers one GPU needs at the measured b0 speed.

The JSON (``<out>/gpu_check.json``, rewritten after each part so that a cut-off run leaves what it measured):
``device``, ``date``, ``throughput`` (a list of {model, resolution, batch, precision, harness_img_s,
bare_img_s, ratio}), ``loader_img_s_per_worker`` ({decoder: images/s}), ``workers_for_b0``, ``smoke_experiment``,
``loader``, ``torch``, ``seconds``. bench/planning/gpu_hours.py reads a committed ``results/gpu/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import dpiat  # noqa: E402
from bench.config import CONF_DIR  # noqa: E402
from bench.files import atomic_write_json  # noqa: E402
from bench.running.lit import Classifier, build_trainer  # noqa: E402

GPU = {"models": ["tf_efficientnet_b0", "tf_efficientnet_b2"], "resolution": 224, "batch": 128, "warmup": 15,
       "steps": 60, "classes": 1000, "trainer": "gpu", "loader_images": 200, "loader_repeats": 2,
       "experiment_args": []}
# --smoke checks the code path, not a measurement: its smoke experiment is cut to one epoch of 128 images (the
# source's too), the same commands and run folders as on the GPU.
SMOKE = {"models": ["tinynet_e"], "resolution": 32, "batch": 16, "warmup": 2, "steps": 8, "classes": 10,
         "trainer": "cpu", "loader_images": 16, "loader_repeats": 1,
         "experiment_args": ["epochs=1", "data.train_subset=128", "source.train_subset=128"]}


def synthetic_batches(n: int, batch: int, resolution: int, classes: int, device: torch.device):
    """``n`` fixed batches of normalised-looking images and labels, already on ``device``."""
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, 3, resolution, resolution, generator=g).to(device),
             torch.randint(0, classes, (batch,), generator=g).to(device)) for _ in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Cycled:
    """``steps`` batches cycled from a list (a plain list would be taken for a list of loaders by Lightning)."""

    def __init__(self, batches: list, steps: int):
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return (self.batches[i % len(self.batches)] for i in range(self.steps))


class Clock(pl.Callback):
    """Time stamps after the last untimed step and after the last step, the GPU synchronised there only."""

    def __init__(self, warmup: int, steps: int, device: torch.device):
        self.warmup, self.steps, self.device, self.stamps = warmup, steps, device, []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx + 1 in (self.warmup, self.steps):
            sync(self.device)
            self.stamps.append(time.perf_counter())


def trainer_config(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"trainer={name}", "logger=none", "init=random", "eval.bn_batches=0",
                                            "trainer.enable_progress_bar=false", *overrides])


def harness_img_s(model: torch.nn.Module, cfg, batches, warmup: int, steps: int, device: torch.device) -> float:
    """Images/s through bench.running.lit: the Classifier in build_trainer's Trainer, on ``batches`` cycled."""
    clock = Clock(warmup, steps, device)
    module = Classifier(model, num_classes=cfg.data.num_classes, optim=cfg.optim, epochs=1, seed=0,
                        max_loss=cfg.trainer.max_loss, channels_last=cfg.trainer.channels_last,
                        compile=bool(cfg.trainer.compile))
    data = Cycled(batches, steps)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(cfg, Path(tmp), epochs=1, monitor="val_top1", mode="max", callbacks=[clock], loggers=[])
        trainer.limit_val_batches = 0  # training throughput only
        trainer.fit(module, train_dataloaders=data)
    torch.use_deterministic_algorithms(False)  # Lightning's deterministic flag must not slow the bare loop
    return len(batches[0][0]) * (steps - warmup) / (clock.stamps[1] - clock.stamps[0])


def bare_img_s(model: torch.nn.Module, lr: float, batches, warmup: int, steps: int, device: torch.device,
               bf16: bool, channels_last: bool) -> float:
    """Images/s of the textbook loop: bf16 autocast (on a GPU), channels_last, Adam."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = 0.0
    for i in range(steps):
        x, y = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i + 1 == warmup:
            sync(device)
            t0 = time.perf_counter()
    sync(device)
    return len(batches[0][0]) * (steps - warmup) / (time.perf_counter() - t0)


def throughput(spec: dict, device: torch.device, compile_too: bool, log) -> list[dict]:
    rows = []
    res, batch, classes = spec["resolution"], spec["batch"], spec["classes"]
    batches = synthetic_batches(4, batch, res, classes, device)
    variants = [("", [])] + ([(" compiled", ["trainer.compile=true"])] if compile_too else [])
    for name in spec["models"]:
        torch.manual_seed(0)
        init = dpiat.create_model(name, num_classes=classes, in_chans=3).state_dict()

        def fresh():
            m = dpiat.create_model(name, num_classes=classes, in_chans=3)
            m.load_state_dict(init)
            return m

        cfg = trainer_config(spec["trainer"], [f"data.num_classes={classes}"])
        bf16 = "bf16" in cfg.trainer.precision
        if cfg.trainer.float32_matmul_precision:
            torch.set_float32_matmul_precision(cfg.trainer.float32_matmul_precision)
        torch.backends.cudnn.benchmark = bool(cfg.trainer.cudnn_benchmark)
        bare = bare_img_s(fresh(), cfg.optim.lr, batches, spec["warmup"], spec["steps"], device, bf16,
                          cfg.trainer.channels_last)
        for label, extra in variants:
            cfg = trainer_config(spec["trainer"], [f"data.num_classes={classes}", *extra])
            harness = harness_img_s(fresh(), cfg, batches, spec["warmup"], spec["steps"], device)
            row = {"model": name + label, "resolution": res, "batch": batch, "precision": cfg.trainer.precision,
                   "channels_last": bool(cfg.trainer.channels_last), "harness_img_s": round(harness, 1),
                   "bare_img_s": round(bare, 1), "ratio": round(harness / bare, 3)}
            log(f"{row['model']} {res} px batch {batch} {row['precision']}: harness {harness:.0f} images/s, bare "
                f"{bare:.0f} images/s, ratio {row['ratio']:.3f} (target >= 0.9)")
            rows.append(row)
    return rows


def smoke_experiment(out: Path, trainer: str, timeout: float, extra: list[str] = ()) -> dict:
    """``bench/run.py experiment=smoke trainer=<trainer> [extra]`` in a subprocess, its runs under ``out/runs``."""
    runs = out / "runs"
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "experiment=smoke", f"trainer={trainer}",
           f"paths.runs={runs}", "logger=none", *extra] + (["trainer.threads=1"] if trainer == "cpu" else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        rc, tail = 124, f"timed out after {timeout:.0f} s"
    result = {"command": " ".join(cmd[1:]), "returncode": rc, "seconds": round(time.perf_counter() - t0, 1)}
    records = sorted(runs.glob("smoke/**/run.json"))
    targets = [json.loads(p.read_text()) for p in records if "sources" not in p.parts]
    if targets:
        result["final_val_top1"] = targets[0].get("final_val_top1")
        result["status"] = targets[0].get("status")
    if rc != 0:
        result["output_tail"] = tail
    return result


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json (and the smoke run's folders)")
    ap.add_argument("--smoke", action="store_true", help="the same code on a CPU: tinynet_e, 32 px, batch 16")
    ap.add_argument("--compile", action="store_true", help="also the harness with trainer.compile=true (minutes)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["experiment", "throughput", "loader"],
                    help="parts to leave out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = SMOKE if args.smoke else GPU
    if args.smoke:
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("error: no CUDA GPU here; run with --smoke to check the script on a CPU", file=sys.stderr)
        sys.exit(2)
    device = torch.device("cpu" if args.smoke else "cuda")
    t_start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s] {message}", flush=True)

    result: dict = {"device": device_name(device), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "smoke": args.smoke, "torch": torch.__version__, "throughput": [], "loader_img_s_per_worker": {}}

    def save() -> None:
        result["seconds"] = round(time.perf_counter() - t_start, 1)
        atomic_write_json(out / "gpu_check.json", result)

    save()
    if "experiment" not in args.skip:
        log(f"smoke experiment on {spec['trainer']} ...")
        result["smoke_experiment"] = smoke_experiment(out, spec["trainer"], timeout=240, extra=spec["experiment_args"])
        log(f"smoke experiment: {result['smoke_experiment']}")
        save()
    if "throughput" not in args.skip:
        result["throughput"] = throughput(spec, device, args.compile, log)
        save()
    if "loader" not in args.skip:
        from bench.measure.loader_speed import measure

        threads = torch.get_num_threads()
        loader = measure(spec["loader_images"], spec["loader_repeats"], spec["resolution"],
                         "cuda" if device.type == "cuda" else None)
        torch.set_num_threads(threads)
        result["loader"] = loader
        result["loader_img_s_per_worker"] = loader["img_s_per_worker"]
        b0 = [r["harness_img_s"] for r in result["throughput"] if r["model"] == spec["models"][0]]
        if b0:
            result["workers_for_b0"] = {d: round(b0[0] / r, 1) for d, r in loader["img_s_per_worker"].items()}
        log(f"loader images/s per worker: {loader['img_s_per_worker']}"
            + (f"; workers for {spec['models'][0]}: {result['workers_for_b0']}" if b0 else ""))
        save()
    log(f"wrote {out / 'gpu_check.json'}")
    return result


if __name__ == "__main__":
    main()

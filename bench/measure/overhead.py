"""Training throughput of the harness against a bare PyTorch loop: same model, data, batch, side by side.

    .venv/bin/python bench/measure/overhead.py                         # tinynet_e, Fashion-MNIST 32 px, batch 128, CPU
    .venv/bin/python bench/measure/overhead.py --model resnet10t --steps 30 --rounds 5
    .venv/bin/python bench/measure/overhead.py experiment=paper_imagenet ...  # harness overrides after the options

Both sides train the same timm model from the same initial weights on the same batches (bench.data's
loader, augmentation included) with the paper's Adam. The bare side is the textbook loop (forward, loss,
zero_grad, backward, step); the harness side is bench.running.lit's Classifier inside the Trainer that
bench.running.harness builds (divergence check, metrics, logger, progress bar, determinism flags). Rounds alternate
bare / harness so that a busy machine slows both alike; the first ``--warmup`` steps of each round are not
timed. Reported: images/s per side (median over rounds) and the median over rounds of the paired ratio
harness / bare (target >= 0.9). A round is at most one epoch of the training loader (both sides stop where
its batches end: 39 on the proxy's 5k images at batch 128), so ``--steps`` defaults to the whole epoch and
a larger value is refused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

import dpiat
from bench.config import CONF_DIR
from bench.errors import USER_ERRORS, BenchError
from bench.data.module import build_datamodule
from bench.files import atomic_write_json
from bench.running.lit import Classifier, build_loggers, build_trainer


class StepClock(pl.Callback):
    """Time stamps after every training step (the same points the bare loop measures)."""

    def __init__(self):
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.stamps.append(time.perf_counter())


def throughput(stamps: list[float], batch: int, warmup: int) -> float:
    timed = stamps[warmup:]
    return batch * (len(timed) - 1) / (timed[-1] - timed[0])


def bare_round(model, loader, lr: float, steps: int) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    stamps = []
    it = iter(loader)
    for _ in range(steps):
        x, y = next(it)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stamps.append(time.perf_counter())
    return stamps


def round_steps(requested: int | None, n_batches: int, warmup: int) -> int:
    """Steps per round: ``requested`` (default: every batch of one epoch), checked against the loader's
    ``n_batches`` and the untimed ``warmup`` (a round must time at least two steps)."""
    steps = n_batches if requested is None else requested
    if steps > n_batches:
        raise BenchError(f"--steps {steps} asks for more batches than one epoch of this data holds ({n_batches}); "
                         f"give --steps {n_batches} or less, or more images per epoch (data.train_subset=...)")
    if steps < warmup + 2:
        raise BenchError(f"--steps {steps} leaves fewer than 2 timed steps after --warmup {warmup}; "
                         f"give --steps {warmup + 2} or more (one epoch here: {n_batches})")
    return steps


def harness_round(model, cfg, dm, steps: int, folder: Path) -> list[float]:
    clock = StepClock()
    module = Classifier(model, num_classes=cfg.data.num_classes, optim=cfg.optim, epochs=1, seed=cfg.seed,
                        max_loss=cfg.trainer.max_loss, channels_last=cfg.trainer.channels_last)
    cfg.trainer.limit_train_batches = steps
    loggers = build_loggers(cfg, folder)
    trainer = build_trainer(cfg, folder, epochs=1, monitor="val_top1", mode="max", callbacks=[clock], loggers=loggers)
    trainer.limit_val_batches = 0  # training throughput only
    trainer.fit(module, datamodule=dm)
    return clock.stamps


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="timm model (default: the config's target)")
    p.add_argument("--steps", type=int, help="training steps per round (default: one epoch of the training loader)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", help="also write the figures to this JSON file")
    p.add_argument("overrides", nargs="*", help="harness config overrides, e.g. data.batch_size=64")
    args = p.parse_args(argv)

    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["init=random", "trainer.enable_progress_bar=true", *args.overrides])
    model_name = args.model or cfg.pair.target
    dm = build_datamodule(cfg.data, model_name=model_name, seed=cfg.seed)
    dm.setup()
    batch = cfg.data.batch_size
    loader = dm.train_dataloader()
    steps = round_steps(args.steps, len(loader), args.warmup)
    torch.manual_seed(0)
    init = dpiat.create_model(model_name, num_classes=cfg.data.num_classes, in_chans=cfg.data.in_chans).state_dict()

    def fresh():
        m = dpiat.create_model(model_name, num_classes=cfg.data.num_classes, in_chans=cfg.data.in_chans)
        m.load_state_dict(init)
        return m

    bare, harness = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            torch.use_deterministic_algorithms(False)  # the bare loop is plain PyTorch
            loader.sampler.set_epoch(r)
            bare.append(throughput(bare_round(fresh(), loader, cfg.optim.lr, steps), batch, args.warmup))
            harness.append(throughput(harness_round(fresh(), cfg, dm, steps, Path(tmp) / f"r{r}"), batch,
                                      args.warmup))
            print(f"round {r + 1}: bare {bare[-1]:.1f} img/s, harness {harness[-1]:.1f} img/s", file=sys.stderr)
    result = {"model": model_name, "data": cfg.data.name, "resolution": dm.resolution, "batch": batch,
              "steps_per_round": steps, "rounds": args.rounds, "threads": torch.get_num_threads(),
              "bare_img_s": round(statistics.median(bare), 1), "harness_img_s": round(statistics.median(harness), 1),
              "bare_rounds": [round(x, 1) for x in bare], "harness_rounds": [round(x, 1) for x in harness]}
    # Paired: each round's two sides ran back to back under the same machine load.
    result["round_ratios"] = [round(h / b, 3) for h, b in zip(harness, bare)]
    result["ratio"] = round(statistics.median(h / b for h, b in zip(harness, bare)), 3)
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        main()
    except (*USER_ERRORS, HydraException, OmegaConfBaseException) as e:  # bad options or overrides: one line
        print(f"overhead.py: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)

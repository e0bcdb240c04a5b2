"""Is ``trainer.channels_last=true`` (NHWC tensors) a faster proxy that trains the same networks? Both halves.

    .venv/bin/python bench/measure/channels_last.py speed                 # seconds per epoch, both settings
    .venv/bin/python bench/measure/channels_last.py accuracy --runs DIR   # 3 seeds of source and target, both settings

``speed`` times, interleaved (eager, channels_last, eager, ...) and as medians over ``--repeats``, what one proxy
epoch of the TinyNet-E target does in the harness (39 training steps of 128 images with Adam, then the protocol's
evaluation on 5,000 images, the BatchNorm pass on 20 training batches and the recalibrated evaluation) and a
training step of the TinyNet-D source (SGD), one torch thread, on this machine; it records the CPU model and the
load before and after. ``accuracy`` runs the check a setting must pass before it becomes a default: with the real
harness (bench/train_source.py, bench/run.py, experiment=reuse's settings), seeds 0-2 of the TinyNet-D source
(3 epochs of SGD on the 60k images) and of a random-init TinyNet-E target (10 epochs), under each setting, then
compares the best validation top-1 per setting (mean and 95% t interval over seeds; the settings agree when each
mean lies in the other's interval). Runs resume (each is a run folder under ``--runs``), so the check can be run a
piece at a time. Both write to ``--out`` (results/speed/): channels_last_speed.{txt,json},
channels_last_accuracy.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.running.host import cpu_model, load  # noqa: E402

SETTINGS = {"eager": False, "channels_last": True}
SEEDS = (0, 1, 2)


def _epoch_seconds(channels_last: bool, dm, model_name: str, steps: int, evaluate: bool, optimizer: str) -> float:
    import timm
    import torch
    import torch.nn.functional as F

    from bench.running.bn_eval import recalibrated

    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=10, in_chans=1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    opt = (torch.optim.Adam(model.parameters(), lr=4e-3) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-5))
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    t0 = time.perf_counter()
    model.train()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if evaluate:
        prepare = lambda x: x.contiguous(memory_format=fmt)  # noqa: E731
        copy = recalibrated(model, dm.recalibration_batches(20), prepare=prepare)
        model.eval()
        with torch.no_grad():
            for x, _ in dm.val_dataloader():
                model(prepare(x))
                copy(prepare(x))
    return time.perf_counter() - t0


def speed(args) -> dict:
    import torch

    from bench.config import data_config
    from bench.data.module import build_datamodule

    torch.set_num_threads(1)
    target = build_datamodule(data_config("fashion_mnist", val_subset=5000), seed=0)
    source = build_datamodule(data_config("fashion_mnist", train_subset=None, crop_scale=[0.9, 1.0]), seed=0)
    target.setup()
    source.setup()
    before = load()
    times: dict[str, dict[str, list[float]]] = {s: {"target_epoch": [], "source_step": []} for s in SETTINGS}
    for _ in range(args.repeats):
        for name, on in SETTINGS.items():
            times[name]["target_epoch"].append(_epoch_seconds(on, target, "tinynet_e", 39, True, "adam"))
            times[name]["source_step"].append(_epoch_seconds(on, source, "tinynet_d", args.source_steps, False, "sgd")
                                              / args.source_steps)
    out = {"cpu_model": cpu_model(), "torch": torch.__version__, "threads": 1, "repeats": args.repeats,
           "load_before": before, "load_after": load(), "command": " ".join(sys.argv),
           "median": {s: {k: round(statistics.median(v), 4) for k, v in d.items()} for s, d in times.items()},
           "all": times}
    e, c = out["median"]["eager"], out["median"]["channels_last"]
    out["speedup"] = {k: round(e[k] / c[k], 2) for k in e}
    lines = [f"channels_last speed check: {out['command']}",
             f"CPU {out['cpu_model']}, torch {out['torch']}, 1 thread, {args.repeats} interleaved repeats, "
             f"load (1/5/15 min) before {before}, after {out['load_after']}",
             "median seconds:           eager    channels_last   ratio",
             f"  TinyNet-E target epoch  {e['target_epoch']:7.2f}  {c['target_epoch']:13.2f}   "
             f"{out['speedup']['target_epoch']:.2f}x",
             f"  TinyNet-D source step   {e['source_step']:7.3f}  {c['source_step']:13.3f}   "
             f"{out['speedup']['source_step']:.2f}x"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "channels_last_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "channels_last_speed.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def _commands(runs: Path, setting: str, seed: int, part: str = "both") -> list[list[str]]:
    """The runs of one (setting, seed): the TinyNet-D source, the random-init TinyNet-E target, or both."""
    common = ["experiment=reuse", f"trainer.channels_last={str(SETTINGS[setting]).lower()}",
              f"paths.runs={runs / setting}", "trainer.enable_progress_bar=false"]
    source = [sys.executable, "bench/train_source.py", *common, "pair=tinynet_d_to_e", f"source.seed={seed}"]
    target = [sys.executable, "bench/run.py", *common, "pair=tinynet_e", "init=random", f"seed={seed}", "epochs=10",
              "recipe=paper"]
    return {"both": [source, target], "source": [source], "target": [target]}[part]


def _finished_run(record: Path) -> dict | None:
    """A run.json that says finished, or None (missing, unreadable or not finished)."""
    try:
        run = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return run if run.get("status") == "finished" else None


def _best(record: Path, key: str) -> float | None:
    run = _finished_run(record)
    return None if run is None else max(m[key] for m in run["metrics"] if m.get(key) is not None)


def _epoch_seconds_median(record: Path) -> float | None:
    """The median wall seconds of a finished run's epochs (training and both evaluations), from its run.json."""
    run = _finished_run(record)
    walls = [m.get("wall_seconds") for m in (run or {}).get("metrics") or []]
    if not walls or None in walls:
        return None
    return round(statistics.median(b - a for a, b in zip([0.0, *walls[:-1]], walls)), 2)


def accuracy(args) -> dict:
    import torch

    from bench.results.stats import t_ci

    before = load()

    for seed in args.seeds or SEEDS:  # seed-major: a check stopped early still compares whole seeds
        for setting in args.settings or SETTINGS:
            for cmd in _commands(args.runs, setting, seed, args.part):
                print(" ".join(cmd[1:]), flush=True)
                if subprocess.run(cmd, cwd=REPO).returncode != 0:
                    sys.exit(f"failed: {' '.join(cmd[1:])}")
    rows = {}
    for setting in SETTINGS:
        base = args.runs / setting / "reuse"
        src = [_best(base / "sources" / "tinynet_d" / f"seed{k}" / "run.json", "val_top1") for k in SEEDS]
        tgt = [_best(base / "adhoc" / "paper" / "tinynet_e" / "random" / f"seed{k}" / "run.json", "val_top1_bn")
               for k in SEEDS]
        secs = [_epoch_seconds_median(base / "adhoc" / "paper" / "tinynet_e" / "random" / f"seed{k}" / "run.json")
                for k in SEEDS]
        rows[setting] = {"source_best_top1": src, "target_best_top1_bn": tgt, "target_epoch_seconds": secs}
    out = {"cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "torch": torch.__version__, "command": " ".join(sys.argv), "load_before": before, "load_after": load(),
           "seeds": list(SEEDS), "rows": rows}
    lines = [f"channels_last accuracy check: {out['command']}",
             f"CPU {out['cpu_model']} ({out['cpu_capability']}), torch {out['torch']}, one thread a run; load (1/5/15 "
             f"min) before {before}, after {out['load_after']}; mean [95% t interval] over seeds {list(SEEDS)}; "
             "the settings agree when each mean lies in the other's interval. Per seed and the median seconds of "
             "each target epoch (training and both evaluations): channels_last_accuracy.json",
             "", "| what | eager | channels_last | agree |", "|---|---|---|---|"]
    for key in ("source_best_top1", "target_best_top1_bn"):
        e, c = rows["eager"][key], rows["channels_last"][key]
        if None in e or None in c:
            lines.append(f"| {key} | {e} | {c} | incomplete |")
            continue
        (el, eh), (cl, ch) = t_ci(e), t_ci(c)
        me, mc = statistics.mean(e), statistics.mean(c)
        agree = el <= mc <= eh and cl <= me <= ch
        lines.append(f"| {key} | {me:.4f} [{el:.4f}, {eh:.4f}] | {mc:.4f} [{cl:.4f}, {ch:.4f}] | {agree} |")
        out[key] = {"eager": e, "channels_last": c, "agree": agree}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "channels_last_accuracy.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "channels_last_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def _source_setup(perturb: int, channels_last: bool, steps: int):
    """The TinyNet-D source as bench/train_source.py starts it (seed 0, the source recipe: SGD lr 0.1, Nesterov,
    weight decay 5e-5, warm-up over 100 steps), its weights scaled by (1 + 1e-6 N(0, 1)) when ``perturb`` > 0
    (seeded by it), and the first ``steps`` batches of its data."""
    import torch
    from omegaconf import OmegaConf

    from bench.config import data_config
    from bench.data.module import build_datamodule
    from bench.running.harness import fresh_model
    from bench.running.lit import step_lr_factor

    dm = build_datamodule(data_config("fashion_mnist", train_subset=steps * 128, crop_scale=[0.9, 1.0]), seed=0)
    dm.setup()
    model = fresh_model("tinynet_d", OmegaConf.create({"data": {"num_classes": 10, "in_chans": 1}, "pair": {}}), 0,
                        role="source")
    if perturb:
        g = torch.Generator().manual_seed(perturb)
        with torch.no_grad():
            for q in model.parameters():
                q.mul_(1 + 1e-6 * torch.randn(q.shape, generator=g))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: step_lr_factor(k, steps, 100))
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    return model, opt, sched, loader


def trajectory(args) -> dict:
    """Where eager and channels_last part: (1) both from the same weights in lockstep, per step: each one's loss,
    the loss of the eager weights run in channels_last (the same numbers = the kernels agree), and how far the
    weights have moved apart; (2) the spread of training itself: the mean training loss over steps 50-99 of eager
    and channels_last runs whose initial weights differ by 1e-6 relative (``--perturbations``)."""
    import copy

    import torch
    import torch.nn.functional as F

    from bench.seeding import reseed

    torch.set_num_threads(1)
    before = load()
    lock = []
    e, opt_e, sched_e, loader = _source_setup(0, False, 100)
    c = copy.deepcopy(e).to(memory_format=torch.channels_last)
    opt_c = torch.optim.SGD(c.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-5)
    opt_c.load_state_dict(opt_e.state_dict())
    sched_c = torch.optim.lr_scheduler.LambdaLR(opt_c, sched_e.lr_lambdas[0])
    e.train()
    c.train()
    reseed(123)
    cl = lambda x: x.contiguous(memory_format=torch.channels_last)  # noqa: E731
    for i, (x, y) in enumerate(loader):
        if i == args.lockstep_steps:
            break
        rng = torch.get_rng_state()
        probe = copy.deepcopy(e).to(memory_format=torch.channels_last)
        torch.set_rng_state(rng)
        with torch.no_grad():
            lp = F.cross_entropy(probe(cl(x)), y).item()
        torch.set_rng_state(rng)
        le = F.cross_entropy(e(x), y)
        torch.set_rng_state(rng)
        lc = F.cross_entropy(c(cl(x)), y)
        apart = max(((pe - pc).norm() / pe.norm()).item() for pe, pc in zip(e.parameters(), c.parameters())
                    if pe.norm() > 1e-2)
        lock.append({"step": i, "loss_eager": le.item(), "loss_channels_last": lc.item(),
                     "loss_eager_weights_channels_last": lp, "max_rel_weight_difference": apart})
        for o, loss in ((opt_e, le), (opt_c, lc)):
            o.zero_grad()
            loss.backward()
            o.step()
        sched_e.step()
        sched_c.step()
    spread: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for k in range(1, args.perturbations + 1):
        for name, on in SETTINGS.items():
            model, opt, sched, loader = _source_setup(k, on, 100)
            model.train()
            reseed(123)
            losses = []
            for x, y in loader:
                loss = F.cross_entropy(model(cl(x) if on else x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
            spread[name].append(round(statistics.mean(losses[50:]), 3))
    out = {"cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "torch": torch.__version__, "command": " ".join(sys.argv), "load_before": before, "load_after": load(),
           "lockstep": lock, "loss_steps_50_99": spread}
    lines = [f"channels_last trajectory check: {out['command']}",
             f"CPU {out['cpu_model']} ({out['cpu_capability']}), torch {out['torch']}, 1 thread; load (1/5/15 min) "
             f"before {before}, after {out['load_after']}",
             "TinyNet-D source recipe (SGD lr 0.1 Nesterov, warm-up 100 steps), seed 0, eager and channels_last "
             "from the same weights in lockstep:",
             "step  loss eager  loss channels_last  eager weights run channels_last  max rel. weight difference"]
    lines += [f"{r['step']:4d}  {r['loss_eager']:10.5f}  {r['loss_channels_last']:18.5f}  "
              f"{r['loss_eager_weights_channels_last']:31.5f}  {r['max_rel_weight_difference']:.1e}" for r in lock]
    lines += ["", f"mean training loss over steps 50-99, initial weights perturbed by 1e-6 (relative; seeds "
                  f"1-{args.perturbations}):"]
    lines += [f"  {name:14s} {spread[name]}" for name in SETTINGS]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "channels_last_trajectory.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "channels_last_trajectory.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed", help="seconds per epoch of each setting")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--source-steps", type=int, default=20)
    a = sub.add_parser("accuracy", help="3 seeds of source and target under each setting")
    a.add_argument("--runs", type=Path, default=REPO / "results" / "runs" / "channels_last_check")
    a.add_argument("--part", choices=("both", "target", "source"), default="both",
                   help="run only the targets' half (minutes) or the sources' (an hour or more); the table shows "
                        "every half that has finished runs")
    a.add_argument("--seeds", type=int, nargs="*", help="run only these seeds (two processes can share the work)")
    a.add_argument("--settings", nargs="*", choices=list(SETTINGS), help="run only these settings")
    t = sub.add_parser("trajectory", help="where eager and channels_last training part, and how widely training "
                                          "itself spreads (minutes)")
    t.add_argument("--lockstep-steps", type=int, default=8)
    t.add_argument("--perturbations", type=int, default=4)
    for q in (s, a, t):
        q.add_argument("--out", type=Path, default=REPO / "results" / "speed")
    args = p.parse_args(argv)
    {"speed": speed, "accuracy": accuracy, "trajectory": trajectory}[args.what](args)


if __name__ == "__main__":
    main()

"""What each arm of experiment=reuse costs to start and to train an epoch, measured side by side on one machine.

    .venv/bin/python bench/measure/reuse_costs.py          # the 10 arms, 3 repeats: results/reuse/runs/costs.json
    .venv/bin/python bench/measure/reuse_costs.py --arms paper/tinynet_d_to_e/random,kd/tinynet_d_to_e/dpiat
    .venv/bin/python bench/measure/reuse_costs.py --smoke --arms paper/tinynet_d_to_e/ghn   # results/runs/ (ignored)

The grid's runs were made over several sessions, on machines of more than one CPU kind and under very different
loads, so their own wall seconds compare the machines and the loads, not the starts. This script measures what the
horizon tables need to turn epochs into seconds fairly (docs/protocol.md 8.8, "costed seconds"): for every arm, its
*start cost* (run.json's ``init_seconds`` plus ``init_metrics.seconds_bn_recalibration``, as the measured seconds
count it) and its *epoch cost* (the last epoch's ``wall_seconds`` minus the one before: a steady-state epoch of
training, a teacher's forwards and both evaluations), all on this machine, one run at a time.

Every measurement is a real run of the grid's own command line (bench/planning expands experiment=reuse into its 10
arms, as bench/sweep.py does; random init and GHN-2 are shared by the two pairs), cut to ``--epochs`` (2: epoch 2
is the measured one, epoch 1 is recorded too) in a temporary runs folder, with the experiment's one torch thread
per run. The sources and the GHN-2 the runs need are taken from the committed ``results/reuse/runs`` the way a
resumed sweep takes them (grid.resume_committed), so nothing is trained here. Repeats are interleaved: every
repeat runs each arm once, its order rotated by one arm per repeat, and the costs are the medians over repeats.

Written to ``--out`` (results/reuse/runs/costs.json, where bench/aggregate.py finds it): per arm the per-repeat
values and their medians, and the machine (CPU model, torch's CPU capability, torch threads), the 1-minute load
before and after every run, the git commit, the date and the command. Measure on an otherwise idle machine: a
line is printed when the 1-minute load before a run is above 1.5, and the load is in the record.

``--smoke`` runs the same code at a fraction of the cost (1 repeat, 2 epochs of 128 training images; the arms that
need no source also evaluate on 256 images with 2 BatchNorm batches; an arm that loads a committed source keeps the
evaluation settings, which are part of that source's identity); its file says ``"smoke": true`` and goes by default
to the ignored ``results/runs/reuse_costs_smoke.json``, never over the committed costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.files import atomic_write_text  # noqa: E402
from bench.running.host import cpu_model, load  # noqa: E402

EXPERIMENT = "reuse"
DEFAULT_OUT = REPO / "results" / EXPERIMENT / "runs" / "costs.json"
SMOKE_OUT = REPO / "results" / "runs" / "reuse_costs_smoke.json"  # results/runs/ is not committed
LOAD_WARNING = 1.5  # 1-minute load before a run above which the machine is not idle enough to measure on
SMOKE = ["data.train_subset=128"]  # every arm's smoke run: one training batch an epoch
SMOKE_SOURCE_FREE = ["data.val_subset=256", "eval.bn_batches=2"]  # and the arms whose identity allows it


def _one_minute_load() -> float:
    return round(os.getloadavg()[0], 2)


def plan_arms(runs: Path, seed: int, epochs: int) -> dict:
    """arm name ("<recipe>/<pair>/<init>", its folder under the experiment) -> the sweep's Task for it, in the
    sweep's order, planned into the runs folder ``runs`` (nothing is written)."""
    from bench.planning.plan import plan_sweep

    plan = plan_sweep([f"experiment={EXPERIMENT}", f"paths.runs={runs}", "grid.resume_committed=false",
                       f"seed={seed}", f"epochs={epochs}"])
    return {"/".join(t.folder.parts[-4:-1]): t for t in plan.runs}  # <recipe>/<pair>/<init>/seed<k>


def take_committed(tasks: list, runs_dir: Path) -> None:
    """Copy the committed sources and GHN-2 that ``tasks`` need into ``runs_dir`` (the experiment's folder), as a
    sweep with grid.resume_committed does; refuse when one is not committed (nothing is trained here)."""
    from bench.planning.committed import GHN_FILES, SOURCE_FILES, adopt_folder, committed_runs_dir
    from bench.running.folder import SOURCE_WEIGHTS

    committed = committed_runs_dir(EXPERIMENT)
    for task in tasks:
        for need in task.needs or []:
            if need.kind == "source":
                folder, files, made = need.folder, SOURCE_FILES, SOURCE_WEIGHTS
            else:  # the grid's one prerequisite: its GHN-2
                folder, files, made = runs_dir / "ghn", GHN_FILES, "ghn.pt"
            adopt_folder(folder, runs_dir, committed, files)
            if not (folder / made).exists():
                raise SystemExit(f"error: {committed / folder.relative_to(runs_dir)} holds no finished {made}, which "
                                 f"{task.line} needs: the costs are measured from the committed sources and GHN-2 "
                                 "(run the grid first), nothing is trained here")


def run_once(name: str, task, extra: list[str], env: dict) -> dict:
    """Run one arm's command (plus ``extra``) to its end and read its costs from run.json; its folder is then
    removed, so that the next repeat starts the run again."""
    before = _one_minute_load()
    if before > LOAD_WARNING:
        print(f"warning: 1-minute load {before} before {name}: the machine is not idle, these "
              "seconds are not an idle machine's", flush=True)
    argv = [sys.executable, *task.argv, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = _one_minute_load()
    record_path = task.folder / "run.json"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    if proc.returncode != 0 or record.get("status") != "finished":
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise SystemExit(f"error: {' '.join(task.argv)} {' '.join(extra)}: exit {proc.returncode}, run "
                         f"{record.get('status', 'not recorded')}: {tail[0]}")
    shutil.rmtree(task.folder)
    return {**costs_of(record), "run_seconds": round(seconds, 2), "load_before": before, "load_after": after}


def costs_of(record: dict) -> dict:
    """A finished run.json's costs: its start (``init_seconds`` + ``init_metrics.seconds_bn_recalibration``, as
    the horizon tables count it), its first epoch and its last (the cumulative ``wall_seconds`` of the last epoch
    minus the one before: the steady state), and what it ran on.

    >>> c = costs_of({"init_seconds": 0.5, "init_metrics": {"seconds_bn_recalibration": 0.25}, "target": "t",
    ...               "metrics": [{"epoch": 1, "wall_seconds": 20.0}, {"epoch": 2, "wall_seconds": 38.0}]})
    >>> c["start_seconds"], c["epoch1_seconds"], c["epoch_seconds"]
    (0.75, 20.0, 18.0)
    """
    wall = {m["epoch"]: float(m["wall_seconds"]) for m in record.get("metrics") or []}
    last = max(wall)
    init = record.get("init_metrics") or {}
    hw = record.get("hardware") or {}
    start = float(record["init_seconds"]) + float(init["seconds_bn_recalibration"])
    return {"init_seconds": float(record["init_seconds"]),
            "bn_recalibration_seconds": float(init["seconds_bn_recalibration"]), "start_seconds": round(start, 4),
            "epoch1_seconds": wall[1], "epoch_seconds": round(wall[last] - wall[last - 1], 4),
            "distill": (record.get("config") or {}).get("distill", {}).get("kind", "none"),
            "target": record.get("target"), "torch_threads": hw.get("torch_threads"),
            "cpu_model": hw.get("cpu_model"), "cpu_capability": hw.get("cpu_capability")}


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def rotations(names: list[str], repeats: int) -> list[list[str]]:
    """The order of the arms in each repeat: every arm once, the order rotated by one arm per repeat, so that no
    arm always runs first (or always after the same one).

    >>> rotations(["a", "b", "c"], 4)
    [['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b'], ['a', 'b', 'c']]
    """
    return [names[r % len(names):] + names[:r % len(names)] for r in range(repeats)]


def _extra(task, smoke: bool) -> list[str]:
    """The overrides a run gets besides the grid's own command line (only --smoke has any)."""
    source_free = not any(n.kind == "source" for n in task.needs or [])
    return (SMOKE + (SMOKE_SOURCE_FREE if source_free else [])) if smoke else []


def measure(names: list[str], tasks: dict, repeats: int, smoke: bool, work: Path) -> tuple[dict, list[dict]]:
    """Every arm of ``names`` once per repeat (:func:`rotations`); per arm its values and medians, and the runs in
    the order they ran."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    per_arm: dict[str, list[dict]] = {n: [] for n in names}
    order = []
    for repeat, turn in enumerate(rotations(names, repeats)):
        for name in turn:
            got = run_once(name, tasks[name], _extra(tasks[name], smoke), env)
            per_arm[name].append({"repeat": repeat, **got})
            order.append({"repeat": repeat, "arm": name, "load_before": got["load_before"],
                          "load_after": got["load_after"], "run_seconds": got["run_seconds"]})
            print(f"repeat {repeat + 1}/{repeats} {name}: start {got['start_seconds']:.2f} s, epoch "
                  f"{got['epoch_seconds']:.2f} s (epoch 1 {got['epoch1_seconds']:.2f} s), run {got['run_seconds']:.0f}"
                  f" s, load {got['load_before']} -> {got['load_after']}", flush=True)
    arms = {}
    for name in names:
        rows, task = per_arm[name], tasks[name]
        recipe, pair, init = name.split("/")
        command = " ".join(["python", task.line, *_extra(task, smoke)]).replace(str(work), "<tmp>")
        arms[name] = {"recipe": recipe, "pair": pair, "init": init, "distill": rows[0]["distill"],
                      "target": rows[0]["target"], "command": command,
                      "start_seconds": _median([r["start_seconds"] for r in rows]),
                      "epoch_seconds": _median([r["epoch_seconds"] for r in rows]),
                      "epoch1_seconds": _median([r["epoch1_seconds"] for r in rows]),
                      "per_repeat": [{k: v for k, v in r.items() if k not in ("distill", "target")} for r in rows]}
    return arms, order


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default="", help="comma-separated arms (<recipe>/<pair>/<init>); default: all 10")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; --smoke: 1)")
    p.add_argument("--epochs", type=int, default=2, help="epochs a run trains; the last one is the epoch cost (>= 2)")
    p.add_argument("--seed", type=int, default=0, help="the runs' seed (default 0)")
    p.add_argument("--smoke", action="store_true", help="the same code path at a fraction of the cost (a test)")
    p.add_argument("--out", type=Path, default=None, help=f"the costs file (default {DEFAULT_OUT.relative_to(REPO)}; "
                                                           f"--smoke: {SMOKE_OUT.relative_to(REPO)})")
    args = p.parse_args(argv)
    args.out = args.out or (SMOKE_OUT if args.smoke else DEFAULT_OUT)
    repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 3)
    if repeats < 1 or args.epochs < 2:
        print("error: --repeats must be 1 or more and --epochs 2 or more (the epoch cost is the last epoch's)",
              file=sys.stderr)
        return 2
    # SIGTERM ends like Ctrl-C: subprocess.run kills the arm it waits for, the finally below removes the runs folder
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="dpiat-reuse-costs-"))
    try:
        tasks = plan_arms(work, args.seed, args.epochs)
        names = [a.strip() for a in args.arms.split(",") if a.strip()] or list(tasks)
        unknown = [a for a in names if a not in tasks]
        if unknown:
            print(f"error: unknown arm {unknown[0]!r}; the arms of experiment={EXPERIMENT} are {', '.join(tasks)}",
                  file=sys.stderr)
            return 2
        names = list(dict.fromkeys(names))
        take_committed([tasks[n] for n in names], work / EXPERIMENT)
        import torch

        started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{len(names)} arms x {repeats} repeats, {args.epochs} epochs each, one at a time, on {cpu_model()} "
              f"({torch.backends.cpu.get_cpu_capability()}), load {load()}", flush=True)
        arms, order = measure(names, tasks, repeats, args.smoke, work)
        seen = [r for rows in arms.values() for r in rows["per_repeat"]]
        loads = [r["load_before"] for r in seen]
        result = {
            "what": "per arm of experiment=reuse: start cost (init_seconds + init_metrics.seconds_bn_recalibration) "
                    "and epoch cost (the last epoch's wall seconds), medians over interleaved repeats on one machine",
            "smoke": args.smoke, "date": started, "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "command": " ".join([".venv/bin/python", "bench/measure/reuse_costs.py", *(argv if argv is not None
                                                                                        else sys.argv[1:])]),
            "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "cores": len(os.sched_getaffinity(0)),
            "torch_threads": sorted({r["torch_threads"] for r in seen} - {None}),  # as the runs recorded it
            "runs_cpu": sorted({f"{r['cpu_model']} ({r['cpu_capability']})" for r in seen}),
            "epochs": args.epochs, "repeats": repeats, "seed": args.seed,
            "load_before_median": _median(loads), "load_before_max": max(loads),
            "arms": arms, "order": order}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    except KeyboardInterrupt:
        print(f"reuse_costs.py: interrupted; {args.out} not written (the measurement starts over when run again)",
              file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}: median start / epoch seconds per arm, 1-minute load before the runs "
          f"{result['load_before_median']} (max {result['load_before_max']})")
    for name, a in arms.items():
        print(f"  {name:42s} start {a['start_seconds']:7.2f} s   epoch {a['epoch_seconds']:7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

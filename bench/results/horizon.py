"""The horizon tables: what a start is worth over a long schedule, and the training time it saves, epoch 0 counted.

For an experiment trained for N epochs (``experiment=horizon``: the paper's 50; ``experiment=reuse``), from the
BatchNorm-recalibrated validation top-1 (``val_top1_bn``) of every finished run, *epoch 0 included*: epoch 0 is the
init's own evaluation before any training (run.json's ``init_metrics``, both evaluations), so that a start which is
already good counts as such. Exactly these definitions:

- ``best_e(run)`` = max over epochs 0..e of ``val_top1_bn`` (``val_top1``, the protocol's own evaluation, for the
  columns without ``_bn``);
- an *arm* is (pair, init, distill, recipe); ratio at epoch e of an arm = mean over seeds s of ``best_e(arm, s) /
  best_e(random, s)``, paired by seed, with its 95% Student's t interval over the seeds
  (:func:`bench.results.stats.t_ci`); ``random`` is random init, undistilled, under the reference recipe (the
  paper's), of the same target;
- ``R`` = mean over seeds of ``best_N(random, s)``: random init's final accuracy;
- ``epochs_to_reach`` of (arm, seed) = the first epoch e >= 0 with ``best_e >= R``, or ``never``;
- ``seconds_to_reach`` = the start cost (the transfer or prediction, ``init_seconds``, plus the BatchNorm pass of
  the evaluation at epoch 0, ``init_metrics.seconds_bn_recalibration``), plus the run's cumulative wall seconds
  to the end of epoch e (training, the teacher's forwards, both evaluations) when e >= 1; the source's own training
  is sunk (the user has the network). Runs recorded before these costs were (results/horizon) have no seconds;
- ``speedup_seconds`` = random init's mean wall time for all N epochs (start cost included) over the arm's mean
  ``seconds_to_reach``, only where every seed reaches ``R``;
- seconds are a machine's: ``machine_per_seed`` names each seed's CPU (run.json's ``hardware.cpu_model`` and
  ``cpu_capability``), and where an arm's seeds, or they and random init's, ran on more than one kind of CPU there
  is no ``seconds_to_reach_mean`` and no ``speedup_seconds`` (a note says so): the per-seed seconds stay, each its
  own machine's;
- ``final_best_bn`` = ``best_N`` with its t interval over seeds, ``final_ratio_bn`` = the ratio at epoch N;
- *costed* seconds, fair to the load and the machine (the measured ones are neither): with a costs file (``costs``,
  ``costs.json`` in the runs folder, written by bench/measure/reuse_costs.py: each arm's start cost and epoch cost,
  medians measured side by side on one idle machine), ``costed_seconds_to_reach`` of (arm, seed) = the arm's start
  cost + ``epochs_to_reach`` x its epoch cost, ``costed_speedup`` = random init's costed time for all N epochs
  (start cost + N x epoch cost) over the arm's mean of it, only where every seed reaches ``R``. These do not
  depend on the CPUs the runs were made on; an arm the file lacks has none (a note says so). A source-free arm
  (random, ghn) is looked up by (init, distill, recipe, target) whatever pair names it.

Only finished runs with all N epochs and their epoch 0 count; a run that is running, interrupted or failed is
named in the notes and never averaged. Source-free inits (random, ghn) trained without a teacher belong to the
target and serve every pair of it; a distilled run learns from its pair's source and serves that pair only.

    from bench.results.horizon import horizon_tables
    ratios, times, notes = horizon_tables(runs, epochs=50)   # runs: RunRecord list (bench.results.runs.find_runs)
    ratios, times, notes = horizon_tables(runs, 50, costs=load_costs("results/reuse/runs"))   # costed seconds too

:func:`write_horizon_tables` writes ``ratios_by_epoch.csv``, ``time_to_accuracy.csv`` and ``table.md`` for a runs
folder laid out by recipe; :func:`bench.results.horizon_plots.write_horizon` those and the pictures.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.baselines import needs_source
from bench.errors import AggregateError
from bench.files import atomic_write_text
from bench.layout import recipe_folders
from bench.results.runs import find_runs
from bench.results.stats import t_ci
from bench.running.record import RunRecord

REFERENCE = "random"
ARM = ("pair", "init", "distill", "recipe")
RATIO_COLUMNS = [*ARM, "epoch", "n", "ratio_bn_mean", "ratio_bn_lo", "ratio_bn_hi", "ratio_mean", "ratio_lo",
                 "ratio_hi"]
TIME_COLUMNS = [*ARM, "seeds", "R", "epochs_to_reach_per_seed", "epochs_to_reach_mean", "seconds_to_reach_per_seed",
                "seconds_to_reach_mean", "speedup_seconds", "final_best_bn_mean", "final_best_bn_lo",
                "final_best_bn_hi", "final_ratio_bn", "machine_per_seed",
                # load-fair seconds from a costs file (empty without one): the arm's start and epoch cost, measured
                # side by side on one machine, and the seconds to reach R and speedup they give
                "costed_start_seconds", "costed_epoch_seconds", "costed_seconds_to_reach_per_seed",
                "costed_seconds_to_reach_mean", "costed_speedup"]
COSTS_FILE = "costs.json"  # in the runs folder: bench/measure/reuse_costs.py writes it
QUOTED_EPOCHS = (0, 1, 3, 10, 25, 50)  # the epochs table.md shows (those <= N)


def best_so_far(values: list[float]) -> list[float]:
    """``best_e`` for e = 0..len(values) - 1 (values[0]: epoch 0, before training): the running maximum.

    >>> best_so_far([0.86, 0.79, 0.84, 0.85])
    [0.86, 0.86, 0.86, 0.86]
    """
    return [float(x) for x in np.maximum.accumulate(np.asarray(values, dtype=float))] if values else []


def epochs_to_reach(best: list[float], level: float) -> int | None:
    """The first epoch (0: before training) whose best-so-far accuracy is at least ``level``; None if none is.

    >>> epochs_to_reach([0.1, 0.5, 0.7, 0.7, 0.8], 0.7), epochs_to_reach([0.9, 0.9], 0.7), epochs_to_reach([0.5], 0.7)
    (2, 0, None)
    """
    return next((e for e, b in enumerate(best) if b >= level), None)


def start_seconds(raw: dict) -> float | None:
    """What a run's start costs: the transfer or prediction (``init_seconds``; random init: nothing) plus the
    BatchNorm pass of its evaluation at epoch 0; None when the run did not record them (runs before the reuse grid).

    >>> start_seconds({"init_seconds": 0.5, "init_metrics": {"seconds_bn_recalibration": 2.0}})
    2.5
    >>> start_seconds({"init_metrics": {"val_top1": 0.1}}) is None
    True
    """
    init = raw.get("init_metrics") or {}
    bn, own = init.get("seconds_bn_recalibration"), raw.get("init_seconds")
    if not isinstance(bn, (int, float)) or not isinstance(own, (int, float)):
        return None
    return float(own) + float(bn)


def arm_of(run: RunRecord) -> tuple[str, str, str, str]:
    return run.pair, run.init, run.distill, run.recipe or "-"


def _free(init: str, distill: str = "none") -> bool:
    """A source-free init (random, ghn) without a teacher: a baseline of every pair of its target."""
    return needs_source(init) is False and distill == "none"


@dataclass
class _Series:
    """One arm: its finished runs' curves by seed (index e = epoch 0..N), and their seconds."""

    pair: str
    init: str
    distill: str
    recipe: str
    bn: dict[int, list[float]] = field(default_factory=dict)  # seed -> best_e of val_top1_bn, e = 0..N
    plain: dict[int, list[float]] = field(default_factory=dict)  # seed -> best_e of val_top1
    raw_bn: dict[int, list[float]] = field(default_factory=dict)  # seed -> val_top1_bn itself, e = 0..N
    seconds: dict[int, list[float]] = field(default_factory=dict)  # seed -> seconds to the end of epoch e = 0..N
    machine: dict[int, str] = field(default_factory=dict)  # seed -> "cpu_model (cpu_capability)" that made it

    @property
    def arm(self) -> tuple[str, str, str, str]:
        return self.pair, self.init, self.distill, self.recipe


def _raw(path: Path) -> dict:
    """A run.json's whole record (wall time, hardware: what RunRecord does not carry); {} when unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _seconds(raw: dict, epochs: int) -> list[float] | None:
    start = start_seconds(raw)
    wall = {m.get("epoch"): m.get("wall_seconds") for m in raw.get("metrics") or [] if isinstance(m, dict)}
    if start is None or any(not isinstance(wall.get(e), (int, float)) for e in range(1, epochs + 1)):
        return None
    return [start] + [start + float(wall[e]) for e in range(1, epochs + 1)]


def _series(runs: list[RunRecord], epochs: int, notes: list[str]) -> dict[tuple, _Series]:
    out: dict[tuple, _Series] = {}
    for run in sorted(runs, key=lambda r: (r.pair, r.init, r.distill, r.recipe or "", r.seed)):
        pair, init, distill, recipe = arm_of(run)
        bn, plain = run.curve(epochs, bn=True), run.curve(epochs)
        where = f"{recipe}/{pair}/{init}/seed{run.seed}" + ("" if distill == "none" else f" (distill {distill})")
        if run.status != "finished" or bn is None or plain is None:
            done = sum(e in run.top1_bn for e in range(1, epochs + 1))
            notes.append(f"{where}: {run.status} with {done}/{epochs} epochs of val_top1_bn, not averaged"
                         + (f" ({run.failure_reason})" if run.failure_reason else ""))
            continue
        if run.init_top1_bn is None or run.init_top1 is None:
            notes.append(f"{where}: no evaluation before training (init_metrics), so no epoch 0: not averaged")
            continue
        s = out.setdefault((pair, init, distill, recipe), _Series(pair, init, distill, recipe))
        s.raw_bn[run.seed] = [run.init_top1_bn, *bn]
        s.bn[run.seed], s.plain[run.seed] = best_so_far(s.raw_bn[run.seed]), best_so_far([run.init_top1, *plain])
        raw = _raw(run.path)
        s.machine[run.seed] = machine_of(raw)
        seconds = _seconds(raw, epochs)
        if seconds is not None:
            s.seconds[run.seed] = seconds
    return out


def machine_of(raw: dict) -> str:
    """The kind of CPU a run's seconds were measured on: "<cpu_model> (<cpu_capability>)", "?" for what is not
    recorded."""
    hw = raw.get("hardware") or {}
    return f"{hw.get('cpu_model') or '?'} ({hw.get('cpu_capability') or '?'})"


def machines(*series: _Series) -> set[str]:
    """The kinds of CPU (:func:`machine_of`) the timed seeds of these series ran on."""
    return {s.machine.get(k, "?") for s in series for k in s.seconds}


def one_machine(*series: _Series) -> bool:
    """Whether every timed seed of these series ran on one kind of CPU (their seconds may then be averaged)."""
    return len(machines(*series)) <= 1


def _target_of(runs: list[RunRecord]) -> dict[str, str]:
    return {r.pair: r.target for r in runs}


def load_costs(runs_dir: str | Path) -> dict | None:
    """The costs file of a runs folder (``costs.json``, bench/measure/reuse_costs.py), or None when there is none."""
    path = Path(runs_dir) / COSTS_FILE
    if not path.exists():
        return None
    try:
        costs = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AggregateError(f"{path}: not a readable costs file ({e}); measure it again with "
                             ".venv/bin/python bench/measure/reuse_costs.py") from None
    if not isinstance(costs, dict) or not isinstance(costs.get("arms"), dict):
        raise AggregateError(f"{path}: no 'arms' mapping: not a costs file of bench/measure/reuse_costs.py")
    return costs


def arm_costs(costs: dict | None, pair: str, init: str, distill: str, recipe: str, target: str | None = None
              ) -> tuple[float, float] | None:
    """(start cost, epoch cost) in seconds of an arm in a costs file, or None when the file lacks it. A
    source-free arm (random, ghn, undistilled) is the same runs under every pair of its target: it is found under
    whichever pair the file names it.

    >>> c = {"arms": {"paper/a_to_t/random": {"pair": "a_to_t", "init": "random", "distill": "none",
    ...       "recipe": "paper", "target": "t", "start_seconds": 0.2, "epoch_seconds": 18.0}}}
    >>> arm_costs(c, "b_to_t", "random", "none", "paper", "t"), arm_costs(c, "b_to_t", "dpiat", "none", "paper", "t")
    ((0.2, 18.0), None)
    """
    found = None
    for entry in ((costs or {}).get("arms") or {}).values():
        if not isinstance(entry, dict):
            continue
        same = (entry.get("init"), entry.get("distill", "none"), entry.get("recipe")) == (init, distill, recipe)
        if same and (entry.get("pair") == pair or (_free(init, distill) and entry.get("target") in (None, target))):
            found = entry
            if entry.get("pair") == pair:
                break
    if found is None:
        return None
    start, epoch = found.get("start_seconds"), found.get("epoch_seconds")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (start, epoch)):
        return None
    return float(start), float(epoch)


def costs_machine(costs: dict) -> str:
    """Where and when a costs file was measured, in words (the tables' and the pictures' notes)."""
    return (f"{costs.get('cpu_model', '?')} ({costs.get('cpu_capability', '?')}), 1-minute load before the runs "
            f"{costs.get('load_before_median', '?')} (max {costs.get('load_before_max', '?')}), "
            f"{costs.get('date', '?')}"
            + (", a --smoke measurement (not the real costs)" if costs.get("smoke") else ""))


def costed_everywhere(time_rows: list[dict]) -> bool:
    """Whether every row has its costed seconds (a costs file covered every arm)."""
    return bool(time_rows) and all(r.get("costed_epoch_seconds") is not None for r in time_rows)


def horizon_tables(runs: list[RunRecord], epochs: int, reference_recipe: str = "paper", costs: dict | None = None
                   ) -> tuple[list[dict], list[dict], list[str]]:
    """The rows of ``ratios_by_epoch.csv`` and ``time_to_accuracy.csv``, and notes (runs left out, and why).

    ``runs``: every run of the experiment, any recipe (``RunRecord.recipe``; None counts as ``-``);
    ``reference_recipe``: the recipe of the random init every ratio is paired with; ``costs``: a costs file's
    contents (:func:`load_costs`), for the costed columns (empty without it).
    """
    notes: list[str] = []
    series = _series(runs, epochs, notes)
    target = _target_of(runs)
    pairs = sorted({r.pair for r in runs if not _free(r.init, r.distill)})
    randoms = {target[k[0]]: s for k, s in series.items()
               if k[1] == REFERENCE and k[2] == "none" and k[3] == reference_recipe}
    pairs.sort(key=lambda p: (p not in {s.pair for s in randoms.values()}, p))  # the baselines' own pair first
    free = defaultdict(list)  # target -> source-free series (random, ghn, ...), served to every pair of it
    for key, s in series.items():
        if _free(s.init, s.distill):
            free[target[s.pair]].append(s)
    ratio_rows, time_rows = [], []
    for pair in pairs:
        ref = randoms.get(target[pair])
        if ref is None:
            notes.append(f"{pair}: no finished {REFERENCE} run under recipe {reference_recipe} of {target[pair]}: no "
                         "ratio and no time to accuracy")
            continue
        level = float(np.mean([b[-1] for b in ref.bn.values()]))
        ref_total = [ref.seconds[k][-1] for k in sorted(ref.seconds)]
        ref_costs = arm_costs(costs, pair, REFERENCE, "none", reference_recipe, target[pair])
        ref_costed = None if ref_costs is None else ref_costs[0] + epochs * ref_costs[1]
        if costs is not None and ref_costs is None:
            notes.append(f"{pair}: random init ({reference_recipe}) is not in the costs file ({COSTS_FILE}), so no "
                         "costed seconds for it and no costed speedup")
        own = [s for s in series.values() if s.pair == pair and not _free(s.init, s.distill)]
        shown = sorted(free[target[pair]] + own, key=lambda s: (s.arm[1:] != (REFERENCE, "none", reference_recipe),
                                                                s.init != REFERENCE, s.init, s.distill,
                                                                s.recipe != reference_recipe, s.recipe))
        for s in shown:
            seeds = sorted(set(s.bn) & set(ref.bn))
            row = {"pair": pair, "init": s.init, "distill": s.distill, "recipe": s.recipe}
            if s is not ref:
                for e in range(epochs + 1):
                    bn = [s.bn[k][e] / ref.bn[k][e] for k in seeds]
                    plain = [s.plain[k][e] / ref.plain[k][e] for k in seeds]
                    ratio_rows.append({**row, "epoch": e, "n": len(seeds), **_mean_ci("ratio_bn", bn),
                                       **_mean_ci("ratio", plain)})
            own_seeds = sorted(s.bn)
            reach = [epochs_to_reach(s.bn[k], level) for k in own_seeds]
            everyone = bool(reach) and None not in reach
            secs = [None if r is None or k not in s.seconds else s.seconds[k][r] for k, r in zip(own_seeds, reach)]
            secs_known = everyone and all(x is not None for x in secs)
            comparable = one_machine(s, ref)
            if secs_known and not comparable:
                kinds = "; ".join(f"{m}: seed{'s' if len(ks) > 1 else ''} {' '.join(map(str, ks))}" for m, ks in
                                  _by_machine(s).items())
                notes.append(f"{pair}, {arm_name(s.init, s.distill, s.recipe)}: seconds from more than one kind of CPU "
                             f"({kinds}; random init's: {', '.join(_by_machine(ref))}), so no mean seconds and no "
                             "speedup; each seed's seconds are its own machine's")
            mean_secs = float(np.mean(secs)) if secs_known and comparable else None
            cost = arm_costs(costs, pair, s.init, s.distill, s.recipe, target[pair])
            if costs is not None and cost is None and s is not ref:
                notes.append(f"{pair}, {arm_name(s.init, s.distill, s.recipe)}: not in the costs file ({COSTS_FILE}), "
                             "so no costed seconds")
            costed = [None if r is None or cost is None else cost[0] + r * cost[1] for r in reach]
            costed_mean = float(np.mean(costed)) if everyone and cost is not None else None
            finals = [s.bn[k][-1] for k in own_seeds]
            lo, hi = t_ci(finals)
            time_rows.append({
                **row, "seeds": " ".join(map(str, own_seeds)), "R": level,
                "epochs_to_reach_per_seed": " ".join("never" if r is None else str(r) for r in reach),
                "epochs_to_reach_mean": float(np.mean(reach)) if everyone else None,
                "seconds_to_reach_per_seed": " ".join("never" if r is None else "-" if x is None else f"{x:.1f}"
                                                      for r, x in zip(reach, secs)),
                "seconds_to_reach_mean": mean_secs,
                "speedup_seconds": (float(np.mean(ref_total)) / mean_secs
                                    if mean_secs and ref_total and len(ref_total) == len(ref.bn) else None),
                "final_best_bn_mean": float(np.mean(finals)), "final_best_bn_lo": lo, "final_best_bn_hi": hi,
                "final_ratio_bn": (float(np.mean([s.bn[k][-1] / ref.bn[k][-1] for k in seeds])) if seeds else None),
                "machine_per_seed": " | ".join(s.machine.get(k, "?") for k in own_seeds),
                "costed_start_seconds": None if cost is None else cost[0],
                "costed_epoch_seconds": None if cost is None else cost[1],
                "costed_seconds_to_reach_per_seed": None if cost is None else " ".join(
                    "never" if x is None else f"{x:.1f}" for x in costed),
                "costed_seconds_to_reach_mean": costed_mean,
                "costed_speedup": ref_costed / costed_mean if costed_mean and ref_costed else None})
    kinds = machines(*series.values())
    if len(kinds) > 1:
        notes.append(f"the runs' seconds come from more than one kind of CPU ({', '.join(sorted(kinds))}): "
                     + ("accuracy_by_seconds.png and seconds_to_reach.png are drawn with the costed seconds"
                        if costed_everywhere(time_rows) else
                        "accuracy_by_seconds.png and seconds_to_reach.png are not drawn until they are one kind's"))
    return ratio_rows, time_rows, notes


def _by_machine(s: _Series) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for k in sorted(s.seconds):
        out.setdefault(s.machine.get(k, "?"), []).append(k)
    return out


def _mean_ci(prefix: str, values: list[float]) -> dict:
    lo, hi = t_ci(values)
    return {f"{prefix}_mean": float(np.mean(values)) if values else None, f"{prefix}_lo": lo, f"{prefix}_hi": hi}


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def _fmt(mean, lo, hi, digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None else "")


def arm_name(init: str, distill: str, recipe: str) -> str:
    """How tables and pictures name an arm, in words.

    >>> arm_name("random", "logits", "kd"), arm_name("dpiat", "none", "finetune")
    ('distillation from random init', 'DPIAT, fine-tuning recipe (Adam 1e-4, warm-up)')
    """
    base = {"random": "random init", "dpiat": "DPIAT", "ghn": "GHN-2", "weight_selection": "weight selection"}
    name = base.get(init, init)
    if distill != "none":
        name = "distillation from random init" if init == "random" else f"{name} + distillation"
    extra = {"paper": "", "kd": "", "-": "", "finetune": "fine-tuning recipe (Adam 1e-4, warm-up)",
             "adam_lr1e-3": "Adam 1e-3"}.get(recipe, recipe)
    return f"{name}, {extra}" if extra else name


def to_markdown(ratio_rows: list[dict], time_rows: list[dict], notes: list[str], epochs: int, experiment: str,
                command: str, hardware: str, costs: dict | None = None) -> str:
    quoted = [e for e in QUOTED_EPOCHS if e <= epochs]
    if epochs not in quoted:
        quoted.append(epochs)
    lines = [f"# {experiment}: what a start is worth from epoch 0 (before training) to {epochs}", "",
             f"Regenerate: `{command}`. Runs on {hardware}.", "",
             "Ratio to random init at epoch e: mean over seeds of best_e(arm) / best_e(random), paired by seed, "
             "best_e = the best validation top-1 over epochs 0..e (epoch 0: the init itself, before training) with "
             "BatchNorm statistics recalibrated (`val_top1_bn`); [95% t interval over the seeds]. In parentheses after "
             "each: the same with the protocol's own evaluation (`val_top1`).",
             "", "| pair | arm | n | " + " | ".join(f"epoch {e}" for e in quoted) + " |",
             "|---|---|---|" + "---|" * len(quoted)]
    index = {(*(r[k] for k in ARM), r["epoch"]): r for r in ratio_rows}
    for key in dict.fromkeys(tuple(r[k] for k in ARM) for r in ratio_rows):
        cells = []
        for e in quoted:
            r = index[(*key, e)]
            cells.append(f"{_fmt(r['ratio_bn_mean'], r['ratio_bn_lo'], r['ratio_bn_hi'])}"
                         f" ({_fmt(r['ratio_mean'], r['ratio_lo'], r['ratio_hi'])})")
        lines.append(f"| {key[0]} | {arm_name(*key[1:])} | {index[(*key, quoted[0])]['n']} | " + " | ".join(cells)
                     + " |")
    lines += ["", f"Time to random init's final accuracy R (the mean over seeds of random's best BN top-1 over all "
              f"{epochs} epochs): the first epoch (0 = before training) whose best so far reaches R, per seed, and the "
              "seconds to it (the start cost, then the run's cumulative wall seconds; '-' where the run did not record "
              "its start cost); speedup = random init's mean wall time for all epochs over that mean, where every "
              "seed reaches R and every seed, random init's included, ran on one kind of CPU; final = best BN top-1 "
              "over all epochs [95% t interval], and its ratio to random.", "",
              "| pair | arm | R | epochs to R, per seed | mean epochs | seconds to R, per seed | mean seconds | "
              "speedup | final best BN | final ratio |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in time_rows:
        mean_e, mean_s, sp = r["epochs_to_reach_mean"], r["seconds_to_reach_mean"], r["speedup_seconds"]
        lines.append(f"| {r['pair']} | {arm_name(r['init'], r['distill'], r['recipe'])} | {r['R']:.4f} | "
                     f"{r['epochs_to_reach_per_seed'] or '-'} | {'-' if mean_e is None else format(mean_e, '.1f')} | "
                     f"{r['seconds_to_reach_per_seed'] or '-'} | {'-' if mean_s is None else format(mean_s, '.0f')} | "
                     f"{'-' if sp is None else format(sp, '.1f') + 'x'} | "
                     f"{_fmt(r['final_best_bn_mean'], r['final_best_bn_lo'], r['final_best_bn_hi'], 3)} | "
                     f"{'-' if r['final_ratio_bn'] is None else format(r['final_ratio_bn'], '.3f')} |")
    if costs is not None:
        lines += ["", f"Costed seconds to R, fair to the load and the machine (docs/protocol.md 8.8): the arm's start "
                  f"cost + epochs to R x its epoch cost, both medians over {costs.get('repeats', '?')} interleaved "
                  f"repeats measured side by side on one machine ({costs_machine(costs)}; {COSTS_FILE}, "
                  "bench/measure/reuse_costs.py), whatever machines the runs were made on; costed speedup = random "
                  f"init's costed time for all {epochs} epochs (start cost + {epochs} x epoch cost) over the arm's "
                  "mean, where every seed reaches R.", "",
                  "| pair | arm | start cost (s) | epoch cost (s) | costed seconds to R, per seed | "
                  "mean costed seconds | costed speedup |",
                  "|---|---|---|---|---|---|---|"]
        for r in time_rows:
            start, epoch = r["costed_start_seconds"], r["costed_epoch_seconds"]
            mean_c, sp = r["costed_seconds_to_reach_mean"], r["costed_speedup"]
            lines.append(f"| {r['pair']} | {arm_name(r['init'], r['distill'], r['recipe'])} | "
                         f"{'-' if start is None else format(start, '.2f')} | "
                         f"{'-' if epoch is None else format(epoch, '.2f')} | "
                         f"{r['costed_seconds_to_reach_per_seed'] or '-'} | "
                         f"{'-' if mean_c is None else format(mean_c, '.1f')} | "
                         f"{'-' if sp is None else format(sp, '.1f') + 'x'} |")
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def _hardware(runs: list[RunRecord]) -> str:
    seen = []
    for run in runs:
        raw = _raw(run.path)
        if not raw:
            continue
        hw, v = raw.get("hardware") or {}, raw.get("versions") or {}
        text = (f"{hw.get('cpu_model', '?')} ({hw.get('cpu_capability', '?')}), {hw.get('cpu_count', '?')} cores, "
                f"{hw.get('torch_threads', '?')} torch thread(s) per run, torch {v.get('torch', '?')}")
        if text not in seen:
            seen.append(text)
    return "; ".join(seen) or "unknown hardware"


def experiment_runs(runs_dir: str | Path) -> list[RunRecord]:
    """Every readable run of an experiment folder laid out by recipe (or not), problems printed as warnings."""
    runs_dir = Path(runs_dir)
    folders = recipe_folders(runs_dir) or [runs_dir]
    runs = []
    for folder in folders:
        found, problems = find_runs(folder)
        runs += found
        for msgs in problems.values():
            for msg in msgs:
                print(f"warning: {msg}")
    return runs


def write_horizon_tables(runs_dir: str | Path, out_dir: str | Path, *, epochs: int | None = None,
                         experiment: str = "horizon", command: str = "") -> tuple[list, list[dict], list[dict], int]:
    """Write the horizon tables of ``runs_dir`` into ``out_dir`` (with costed seconds where ``runs_dir`` holds a
    costs file, ``costs.json``); return (runs, ratio rows, time rows, N), what the pictures are drawn from
    (:func:`bench.results.horizon_plots.write_horizon`: tables and pictures)."""
    runs = experiment_runs(runs_dir)
    if not runs:
        raise AggregateError(f"{runs_dir}: no readable run.json under <recipe>/<pair>/<init>/seed<k>/")
    n = epochs or max(r.epochs for r in runs)
    costs = load_costs(runs_dir)
    ratio_rows, time_rows, notes = horizon_tables(runs, n, costs=costs)
    if not ratio_rows and not time_rows:
        raise AggregateError(f"{runs_dir}: no finished run with {n} epochs and its random init to pair it with"
                             + (f" ({'; '.join(notes)})" if notes else ""))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ratios_by_epoch.csv", to_csv(ratio_rows, RATIO_COLUMNS))
    atomic_write_text(out / "time_to_accuracy.csv", to_csv(time_rows, TIME_COLUMNS))
    atomic_write_text(out / "table.md", to_markdown(ratio_rows, time_rows, notes, n, experiment, command,
                                                    _hardware(runs), costs))
    return runs, ratio_rows, time_rows, n

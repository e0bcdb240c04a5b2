"""The horizon tables: does a transfer's gain survive a long schedule, and how many epochs does it save?

For an experiment trained for N epochs (``experiment=horizon``: the paper's 50), from the per-epoch BatchNorm-
recalibrated validation top-1 (``val_top1_bn``) of every finished run, with exactly these definitions:

- ``best_e(run)`` = max over epochs 1..e of ``val_top1_bn`` (``val_top1``, the protocol's own evaluation, for the
  columns without ``_bn``);
- ratio at epoch e of (pair, init, recipe) = mean over seeds s of ``best_e(init, s) / best_e(random, s)``, paired
  by seed, with its 95% Student's t interval over the seeds (:func:`bench.results.stats.t_ci`); ``random`` is
  random init under the reference recipe (the paper's: the recipe whose settings are empty), of the same target;
- ``R`` = mean over seeds of ``best_N(random, s)``: random init's final accuracy;
- ``epochs_to_reach`` of (pair, init, recipe, seed) = the first epoch e with ``best_e >= R``, or ``never``;
- speedup = N / mean ``epochs_to_reach``, only where every seed reaches ``R``; the wall time that saves on the
  machine that ran it = (N - mean ``epochs_to_reach``) x random init's mean seconds per epoch there.

Only finished runs with all N epochs count; a run that is running, interrupted or failed is named in the notes
and never averaged. Source-free inits (random, ghn) belong to the target and serve every pair of it.

    from bench.results.horizon import horizon_tables
    ratios, times, notes = horizon_tables(runs, epochs=50)   # runs: RunRecord list (bench.results.runs.find_runs)

:func:`write_horizon_tables` writes ``ratios_by_epoch.csv``, ``time_to_accuracy.csv``, ``table.md`` and the two
pictures (``accuracy_by_epoch.png``, ``ratio_by_epoch.png``) for a runs folder laid out by recipe.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass
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
RATIO_COLUMNS = ["pair", "init", "recipe", "epoch", "n", "ratio_bn_mean", "ratio_bn_lo", "ratio_bn_hi",
                 "ratio_mean", "ratio_lo", "ratio_hi"]
TIME_COLUMNS = ["pair", "init", "recipe", "seeds", "random_final_best_bn", "epochs_to_reach_per_seed",
                "epochs_to_reach_mean", "speedup", "seconds_per_epoch", "wall_seconds_saved"]
QUOTED_EPOCHS = (1, 3, 10, 25, 50)  # the epochs table.md shows (those <= N)


def best_so_far(values: list[float]) -> list[float]:
    """``best_e`` for e = 1..len(values): the running maximum.

    >>> best_so_far([0.5, 0.7, 0.6, 0.8])
    [0.5, 0.7, 0.7, 0.8]
    """
    return [float(x) for x in np.maximum.accumulate(np.asarray(values, dtype=float))] if values else []


def epochs_to_reach(best: list[float], level: float) -> int | None:
    """The first epoch (1-based) whose best-so-far accuracy is at least ``level``; None if none is.

    >>> epochs_to_reach([0.5, 0.7, 0.7, 0.8], 0.7), epochs_to_reach([0.5, 0.6], 0.7)
    (2, None)
    """
    return next((e for e, b in enumerate(best, 1) if b >= level), None)


@dataclass
class _Series:
    """One (pair, init, recipe): its finished runs' curves by seed, and the random init they are paired with."""

    pair: str
    init: str
    recipe: str
    bn: dict[int, list[float]]  # seed -> best_e of val_top1_bn, e = 1..N
    plain: dict[int, list[float]]  # seed -> best_e of val_top1
    seconds_per_epoch: dict[int, float]  # seed -> wall seconds per epoch on the machine that ran it


def _raw(path: Path) -> dict:
    """A run.json's whole record (wall time, hardware: what RunRecord does not carry); {} when unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _wall_per_epoch(run: RunRecord, epochs: int) -> float | None:
    seconds = _raw(run.path).get("wall_seconds")
    return float(seconds) / epochs if isinstance(seconds, (int, float)) and seconds > 0 else None


def _series(runs: list[RunRecord], epochs: int, notes: list[str]) -> dict[tuple[str, str, str], _Series]:
    out: dict[tuple[str, str, str], _Series] = {}
    for run in sorted(runs, key=lambda r: (r.pair, r.init, r.recipe or "", r.seed)):
        recipe = run.recipe or "-"
        bn, plain = run.curve(epochs, bn=True), run.curve(epochs)
        if run.status != "finished" or bn is None or plain is None:
            done = sum(e in run.top1_bn for e in range(1, epochs + 1))
            notes.append(f"{recipe}/{run.pair}/{run.init}/seed{run.seed}: {run.status} with {done}/{epochs} epochs of "
                         "val_top1_bn, not averaged" + (f" ({run.failure_reason})" if run.failure_reason else ""))
            continue
        s = out.setdefault((run.pair, run.init, recipe), _Series(run.pair, run.init, recipe, {}, {}, {}))
        s.bn[run.seed], s.plain[run.seed] = best_so_far(bn), best_so_far(plain)
        per_epoch = _wall_per_epoch(run, epochs)
        if per_epoch is not None:
            s.seconds_per_epoch[run.seed] = per_epoch
    return out


def _free(init: str) -> bool:
    """A source-free init (random, ghn): a baseline of every pair of its target."""
    return needs_source(init) is False


def _target_of(runs: list[RunRecord]) -> dict[str, str]:
    return {r.pair: r.target for r in runs}


def horizon_tables(runs: list[RunRecord], epochs: int, reference_recipe: str = "paper"
                   ) -> tuple[list[dict], list[dict], list[str]]:
    """The rows of ``ratios_by_epoch.csv`` and ``time_to_accuracy.csv``, and notes (runs left out, and why).

    ``runs``: every run of the experiment, any recipe (``RunRecord.recipe``; None counts as ``-``);
    ``reference_recipe``: the recipe of the random init every ratio is paired with.
    """
    notes: list[str] = []
    series = _series(runs, epochs, notes)
    target = _target_of(runs)
    pairs = sorted({r.pair for r in runs if not _free(r.init)})
    randoms = {target[k[0]]: s for k, s in series.items() if k[1] == REFERENCE and k[2] == reference_recipe}
    pairs.sort(key=lambda p: (p not in {s.pair for s in randoms.values()}, p))  # the baselines' own pair first
    free = defaultdict(list)  # target -> source-free series (random, ghn, ...), served to every pair of it
    for (pair, init, recipe), s in series.items():
        if _free(init):
            free[target[pair]].append(s)
    ratio_rows, time_rows = [], []
    for pair in pairs:
        ref = randoms.get(target[pair])
        if ref is None:
            notes.append(f"{pair}: no finished {REFERENCE} run under recipe {reference_recipe} of {target[pair]}: no "
                         "ratio and no time to accuracy")
            continue
        level = float(np.mean([b[-1] for b in ref.bn.values()]))
        own = [s for (p, i, _), s in series.items() if p == pair and not _free(i)]
        shown = sorted(free[target[pair]] + own,
                       key=lambda s: (s.init != REFERENCE, s.init, s.recipe != reference_recipe, s.recipe))
        for s in shown:
            seeds = sorted(set(s.bn) & set(ref.bn))
            if s.init != REFERENCE or s.recipe != reference_recipe:
                for e in range(1, epochs + 1):
                    bn = [s.bn[k][e - 1] / ref.bn[k][e - 1] for k in seeds]
                    plain = [s.plain[k][e - 1] / ref.plain[k][e - 1] for k in seeds]
                    ratio_rows.append({"pair": pair, "init": s.init, "recipe": s.recipe, "epoch": e, "n": len(seeds),
                                       **_mean_ci("ratio_bn", bn), **_mean_ci("ratio", plain)})
            own_seeds = sorted(s.bn)
            reach = [epochs_to_reach(s.bn[k], level) for k in own_seeds]
            mean_reach = float(np.mean(reach)) if reach and None not in reach else None
            per_epoch = [ref.seconds_per_epoch[k] for k in sorted(ref.seconds_per_epoch)]
            spe = float(np.mean(per_epoch)) if per_epoch else None
            time_rows.append({
                "pair": pair, "init": s.init, "recipe": s.recipe, "seeds": " ".join(map(str, own_seeds)),
                "random_final_best_bn": level,
                "epochs_to_reach_per_seed": " ".join("never" if r is None else str(r) for r in reach),
                "epochs_to_reach_mean": mean_reach,
                "speedup": None if mean_reach is None else epochs / mean_reach,
                "seconds_per_epoch": spe,
                "wall_seconds_saved": None if mean_reach is None or spe is None else (epochs - mean_reach) * spe})
    return ratio_rows, time_rows, notes


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


def _fmt(mean, lo, hi) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")


def to_markdown(ratio_rows: list[dict], time_rows: list[dict], notes: list[str], epochs: int, experiment: str,
                command: str, hardware: str) -> str:
    quoted = [e for e in QUOTED_EPOCHS if e <= epochs] or [epochs]
    if epochs not in quoted:
        quoted.append(epochs)
    lines = [f"# {experiment}: the gain over random init from epoch 1 to {epochs}", "",
             f"Regenerate: `{command}`. Runs on {hardware}.", "",
             "Ratio to random init at epoch e: mean over seeds of best_e(init) / best_e(random), paired by seed, "
             "best_e = the best validation top-1 over epochs 1..e with BatchNorm statistics recalibrated (`val_top1_bn`); "
             "[95% t interval over the seeds]. In parentheses after each: the same with the protocol's own evaluation (`val_top1`).",
             "", "| pair | init | recipe | n | " + " | ".join(f"epoch {e}" for e in quoted) + " |",
             "|---|---|---|---|" + "---|" * len(quoted)]
    index = {(r["pair"], r["init"], r["recipe"], r["epoch"]): r for r in ratio_rows}
    for key in dict.fromkeys((r["pair"], r["init"], r["recipe"]) for r in ratio_rows):
        cells = []
        for e in quoted:
            r = index[(*key, e)]
            cells.append(f"{_fmt(r['ratio_bn_mean'], r['ratio_bn_lo'], r['ratio_bn_hi'])}"
                         f" ({_fmt(r['ratio_mean'], r['ratio_lo'], r['ratio_hi'])})")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {index[(*key, quoted[0])]['n']} | " + " | ".join(cells) + " |")
    lines += ["", f"Time to random init's final accuracy R (the mean over seeds of random's best BN top-1 over all "
              f"{epochs} epochs): the first epoch whose best so far reaches R, per seed; speedup = {epochs} / its mean, "
              "where every seed reaches R; the wall time saved = the epochs saved x random init's seconds per epoch "
              "on the machine that ran it.", "",
              "| pair | init | recipe | R | epochs to reach R, per seed | mean | speedup | s / epoch | wall time saved |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in time_rows:
        saved = r["wall_seconds_saved"]
        lines.append(f"| {r['pair']} | {r['init']} | {r['recipe']} | {r['random_final_best_bn']:.4f} | "
                     f"{r['epochs_to_reach_per_seed'] or '-'} | "
                     f"{'-' if r['epochs_to_reach_mean'] is None else format(r['epochs_to_reach_mean'], '.1f')} | "
                     f"{'-' if r['speedup'] is None else format(r['speedup'], '.1f') + 'x'} | "
                     f"{'-' if r['seconds_per_epoch'] is None else format(r['seconds_per_epoch'], '.1f')} | "
                     f"{'-' if saved is None else format(saved / 60, '.1f') + ' min'} |")
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


def write_horizon_tables(runs_dir: str | Path, out_dir: str | Path, *, epochs: int | None = None, plots: bool = True,
                         experiment: str = "horizon", command: str = "") -> list[dict]:
    """Write the horizon tables (and pictures) of ``runs_dir`` into ``out_dir``; return the ratio rows."""
    runs = experiment_runs(runs_dir)
    if not runs:
        raise AggregateError(f"{runs_dir}: no readable run.json under <recipe>/<pair>/<init>/seed<k>/")
    n = epochs or max(r.epochs for r in runs)
    ratio_rows, time_rows, notes = horizon_tables(runs, n)
    if not ratio_rows and not time_rows:
        raise AggregateError(f"{runs_dir}: no finished run with {n} epochs and its random init to pair it with"
                             + (f" ({'; '.join(notes)})" if notes else ""))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ratios_by_epoch.csv", to_csv(ratio_rows, RATIO_COLUMNS))
    atomic_write_text(out / "time_to_accuracy.csv", to_csv(time_rows, TIME_COLUMNS))
    atomic_write_text(out / "table.md", to_markdown(ratio_rows, time_rows, notes, n, experiment, command,
                                                    _hardware(runs)))
    if plots:
        from bench.results.horizon_plots import write_horizon_plots

        write_horizon_plots(runs, ratio_rows, time_rows, n, out)
    return ratio_rows

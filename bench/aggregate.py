"""Aggregate a folder of runs into the paper's table (csv, md, tex) and plots, with its uncertainty.

    python bench/aggregate.py results/runs/proxy                     # writes results/proxy/
    python bench/aggregate.py results/runs/paper_imagenet --epochs 50
    python bench/aggregate.py results/runs/proxy --out /tmp/proxy_table --no-plots

From Python (what the sweep command calls)::

    from bench.aggregate import aggregate
    rows = aggregate("results/runs/proxy")           # also writes results/proxy/
    [(r["init"], r["ratio_best_mean"]) for r in rows if r["pair"] == "ALL"]

Input: ``<runs_dir>/<pair>/<init>/seed<k>/run.json`` (schema in ``bench/runfile.py``); the ``sources``
folder (source training) is not part of the table. Metric (``shared/docs/protocol.md``, "Ratio metric"):

- best = max val_top1 over epochs 1..N, final = val_top1 at epoch N; N = ``--epochs``, default each run's
  planned epochs. Mean and sample std (ddof=1) over the runs that reached epoch N.
- ratio per seed = method / ``random`` of the same pair and seed; mean over seeds and a percentile
  bootstrap 95% interval over seeds. ``random`` rows show 1 by construction (each seed over itself).
- ``ratio_*_paper``: the paper's own definition: curves averaged over seeds first, then best (or final)
  of the method's mean curve / that of random.
- ``*_clipped``: max(1, ratio). ``pair=ALL`` rows, one per init: each ratio column averaged over pairs.

Nothing is dropped silently: running, failed and partial runs (fewer than N epochs) are counted and named
in the row's note but not averaged in; a seed without a usable random run gets no ratio; malformed
run.json files are reported by path (stderr and notes) and skipped. A source-free init (``random``,
``ghn``) missing from a pair is taken from another folder with the same target, data and epochs (a folder
named after the target, or another pair), and the note says so. Never are runs with different
target/data/epochs mixed.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.runfile import RUN_FILE, read_run

SOURCES_FOLDER = "sources"  # source-training runs live here; they are not table rows
REFERENCE_INIT = "random"  # ratios are relative to this init
ALL = "ALL"
N_BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0  # fixed, so the same runs always give the same interval

# Published figures, keyed by experiment name, shown beside ours. Only what the paper states.
PAPER_FIGURES = {
    "paper_imagenet": {"init": "dpiat", "value": 1.6, "epochs": 50,
                       "text": "DPIAT vs random init on ImageNet: mean ratio over pairs after 50 epochs "
                               "(abstract; whether clipped at 1 is not stated)"},
}

RATIO_COLUMNS = ["ratio_best_mean", "ratio_final_mean", "ratio_best_paper", "ratio_final_paper"]
CLIPPED = {c: c.replace("_mean", "") + "_clipped" for c in RATIO_COLUMNS}  # ratio_best_clipped, ...
COLUMNS = [
    "pair", "init", "n",
    "best_top1_mean", "best_top1_std", "final_top1_mean", "final_top1_std",
    "ratio_best_mean", "ratio_best_ci_low", "ratio_best_ci_high",
    "ratio_final_mean", "ratio_final_ci_low", "ratio_final_ci_high", "n_ratio",
    "ratio_best_paper", "ratio_final_paper", *CLIPPED.values(), "paper_figure",
    "epochs", "n_runs", "n_finished", "n_running", "n_failed", "n_partial",
    "source", "target", "data", "similarity", "runs_from", "note",
]


class AggregateError(ValueError):
    """Nothing could be aggregated (or the command line is wrong); the message says why."""


# ----------------------------------------------------------------------------- reading runs

@dataclass(frozen=True)
class Run:
    """The parts of one run.json the table needs, checked."""
    path: Path
    folder: str  # the pair folder it lives in
    init: str
    seed: int
    status: str
    failure_reason: str | None
    source: str | None
    target: str
    data: str
    epochs: int  # planned
    similarity: float | None
    init_top1: float | None  # before any training (epoch 0)
    top1: dict[int, float]  # epoch -> val_top1

    @property
    def source_free(self) -> bool:
        """True for inits that read no source (random, ghn): their runs can serve every pair of a target.

        The harness records the pair's source even for such runs, so the init registry decides; run.json's
        ``source: null`` covers inits this process does not know.
        """
        return self.source is None or needs_source(self.init) is False

    @property
    def key(self) -> tuple[str, str, int]:
        """Runs are comparable only when these agree."""
        return (self.target, self.data, self.epochs)

    def curve(self, n: int) -> list[float] | None:
        """val_top1 at epochs 1..n, or None if the run has not reached all of them."""
        if any(e not in self.top1 for e in range(1, n + 1)):
            return None
        return [self.top1[e] for e in range(1, n + 1)]

    def describe(self, n: int) -> str:
        """'seed2 failed (1/4 epochs): <reason>', for notes."""
        done = sum(e in self.top1 for e in range(1, n + 1))
        text = f"seed{self.seed} {self.status} ({done}/{n} epochs)"
        return text + (f": {self.failure_reason}" if self.status == "failed" and self.failure_reason else "")


@functools.cache
def needs_source(init: str) -> bool | None:
    """dpiat's registry entry for ``init`` (imported only when asked: it loads torch); None if unknown."""
    try:
        from dpiat.inits import get_init
        return get_init(init).needs_source
    except Exception:  # an unknown name, or a dpiat that does not import: fall back on run.json's source
        return None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fraction(x, what: str, path: Path) -> float:
    if not _number(x) or not 0 <= x <= 1:
        hint = " (a percentage? accuracies are fractions)" if _number(x) and 1 < x <= 100 else ""
        raise ValueError(f"{path}: {what} must be a fraction in [0, 1], got {x!r}{hint}")
    return float(x)


def load_run(path: str | Path) -> Run:
    """Read and check one ``<pair>/<init>/seed<k>/run.json``; ValueError (with the path) if malformed.

    >>> load_run("results/runs/proxy/tinynet_d_to_e/dpiat/seed0/run.json").curve(2)  # doctest: +SKIP
    [0.59, 0.74]
    """
    path = Path(path)
    raw = read_run(path)  # valid JSON object with the basic keys
    for key, ok, what in [("target", lambda v: isinstance(v, str) and v, "a model name"),
                          ("data", lambda v: isinstance(v, str) and v, "a data set name"),
                          ("epochs", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                           "a positive integer"),
                          ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
                          ("init", lambda v: isinstance(v, str), "a string")]:
        if not ok(raw.get(key)):
            raise ValueError(f"{path}: {key!r} must be {what}, got {raw.get(key)!r}")
    init_dir, seed_dir = path.parent.parent.name, path.parent.name
    if raw["init"] != init_dir or f"seed{raw['seed']}" != seed_dir:  # a copied or misplaced file
        raise ValueError(f"{path}: says init={raw['init']!r}, seed={raw['seed']} but lives in "
                         f"{init_dir}/{seed_dir}")
    source, similarity, reason = raw.get("source"), raw.get("similarity"), raw.get("failure_reason")
    if source is not None and not isinstance(source, str):
        raise ValueError(f"{path}: 'source' must be a model name or null, got {source!r}")
    if similarity is not None and not _number(similarity):
        raise ValueError(f"{path}: 'similarity' must be a number or null, got {similarity!r}")
    init_metrics = raw.get("init_metrics")
    if init_metrics is not None and not isinstance(init_metrics, dict):
        raise ValueError(f"{path}: 'init_metrics' must be an object or null, got {init_metrics!r}")
    init_top1 = (init_metrics or {}).get("val_top1")
    if init_top1 is not None:
        init_top1 = _fraction(init_top1, "init_metrics.val_top1", path)
    top1 = {}
    for i, m in enumerate(raw["metrics"]):
        if not isinstance(m, dict):
            raise ValueError(f"{path}: metrics[{i}] must be an object, got {m!r}")
        epoch = m.get("epoch")
        if not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1):
            raise ValueError(f"{path}: metrics[{i}].epoch must be an integer >= 1, got {epoch!r}")
        top1[epoch] = _fraction(m.get("val_top1"), f"metrics[{i}].val_top1", path)  # a resumed epoch: last wins
    return Run(path, path.parent.parent.parent.name, raw["init"], raw["seed"], raw["status"],
               None if reason is None else str(reason), source, raw["target"], raw["data"], raw["epochs"],
               None if similarity is None else float(similarity), init_top1, top1)


def find_runs(runs_dir: Path) -> tuple[list[Run], dict[tuple[str, str], list[str]]]:
    """All readable runs under ``runs_dir``, and problems (malformed / missing run.json) per (folder, init)."""
    runs, problems = [], defaultdict(list)
    for seed_dir in sorted(runs_dir.glob("*/*/seed*")):
        folder, init = seed_dir.parent.parent.name, seed_dir.parent.name
        if folder == SOURCES_FOLDER or not seed_dir.is_dir():
            continue
        path = seed_dir / RUN_FILE
        if not path.exists():
            problems[folder, init].append(f"{path}: missing (not started, or killed before its first write)")
            continue
        try:
            runs.append(load_run(path))
        except (ValueError, OSError) as e:
            problems[folder, init].append(f"skipped {e}" if str(path) in str(e) else f"skipped {path}: {e}")
    return runs, problems


# ----------------------------------------------------------------------------- statistics

def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1); std is None for one value, both None for none."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def bootstrap_ci(values, n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED):
    """Percentile bootstrap 95% interval of the mean; (None, None) for fewer than 2 values.

    >>> bootstrap_ci([1.5, 1.5, 1.5])
    (1.5, 1.5)
    """
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None, None
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_resamples, v.size))
    low, high = np.percentile(v[idx].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def similarity_correlations(rows: list[dict], min_pairs: int = 3) -> dict[str, tuple[float, int]]:
    """Per init: Pearson r between ``similarity`` and ``ratio_best_mean`` over pairs, and n (>= min_pairs).

    r is NaN when either is constant over the pairs.
    """
    out = {}
    for init in dict.fromkeys(r["init"] for r in rows if r["pair"] != ALL):
        pts = [(r["similarity"], r["ratio_best_mean"]) for r in rows if r["init"] == init and r["pair"] != ALL
               and r["similarity"] is not None and r["ratio_best_mean"] is not None]
        if len(pts) >= min_pairs:
            x, y = np.array(pts).T
            r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else math.nan
            out[init] = (r, len(pts))
    return out


# ----------------------------------------------------------------------------- cells: (pair, init)

@dataclass
class Cell:
    pair: str
    init: str
    runs: list[Run]  # the runs counted here: the cell's own, or shared ones
    shared_from: str | None = None  # the folder the runs come from when they are not the pair's own
    notes: list[str] = field(default_factory=list)
    key: tuple | None = None  # (target, data, planned epochs) when all runs agree
    n_epochs: int | None = None  # N
    used: list[Run] = field(default_factory=list)  # runs that reached epoch N: averaged in
    n_partial: int = 0  # runs that did not reach epoch N: counted, not averaged in

    def curves(self) -> dict[int, list[float]]:
        return {r.seed: r.curve(self.n_epochs) for r in self.used}


def _init_order(init: str) -> tuple:
    return (init != REFERENCE_INIT, init)


def build_cells(runs: list[Run], problems: dict) -> tuple[list[Cell], list[str]]:
    """Group runs into (pair, init) cells, sharing source-free baselines between pairs of one target.

    A folder named after its runs' target that holds only source-free inits is a baseline folder, not a
    pair. Returns the cells and global notes (e.g. runs that no pair uses).
    """
    by_folder = defaultdict(list)
    for r in runs:
        by_folder[r.folder, r.init].append(r)
    folders = {f for f, _ in by_folder} | {f for f, _ in problems}
    inits = {i for _, i in by_folder} | {i for _, i in problems}
    folder_runs = {f: [r for r in runs if r.folder == f] for f in folders}
    baseline = {f for f in folders if folder_runs[f]
                and all(r.source_free and r.target == f for r in folder_runs[f])}
    pairs = sorted(folders - baseline)
    if not pairs:  # only baseline folders: show them rather than nothing
        pairs, baseline = sorted(folders), set()

    def shared_candidate(pair: str, init: str) -> str | None:
        keys = {r.key for r in folder_runs[pair]}
        if len(keys) != 1:
            return None
        ok = [f for f in folders if f != pair and by_folder[f, init]
              and all(r.source_free and r.key in keys for r in by_folder[f, init])]
        target = next(iter(keys))[0]
        # prefer the folder named after the target, then the one with most runs
        ok.sort(key=lambda f: (f != target, -len(by_folder[f, init]), f))
        return ok[0] if ok else None

    cells, used_folders = [], set()
    for pair in pairs:
        for init in sorted(inits, key=_init_order):
            if by_folder[pair, init] or problems.get((pair, init)):
                cell = Cell(pair, init, by_folder[pair, init])
                cell.notes += problems.get((pair, init), [])
            elif (src := shared_candidate(pair, init)) is not None:
                cell = Cell(pair, init, by_folder[src, init], shared_from=src)
                cell.notes.append(f"shared with {src}")
                cell.notes += problems.get((src, init), [])
                used_folders.add(src)
            elif init == REFERENCE_INIT:
                cell = Cell(pair, init, [], notes=["no random runs (own or shared): no ratios for this pair"])
            else:
                continue
            cells.append(cell)
    global_notes = [f"folder {f} holds runs that no pair uses (no pair with target {folder_runs[f][0].target}, "
                    f"the same data and epochs)" for f in sorted(baseline - used_folders)]
    return cells, global_notes


def summarize_cell(cell: Cell, epochs: int | None) -> None:
    """Decide N and which runs reach it; note every run that is not averaged in, and why."""
    runs = sorted(cell.runs, key=lambda r: r.seed)
    keys = {(r.source,) + r.key for r in runs}
    if len(keys) > 1:
        cell.notes.append("runs disagree on source/target/data/planned epochs, not mixed: "
                          + ", ".join(f"seed{r.seed}={(r.source,) + r.key}" for r in runs))
        return
    if not runs:
        return
    cell.key = runs[0].key
    n = cell.n_epochs = epochs or cell.key[2]
    if n > cell.key[2]:
        cell.notes.append(f"--epochs {n} exceeds the {cell.key[2]} planned epochs")
    cell.used = [r for r in runs if r.curve(n) is not None]
    excluded = [r.describe(n) for r in runs if r.curve(n) is None]
    cell.n_partial = len(excluded)
    if excluded:
        cell.notes.append(f"not averaged in ({len(excluded)} without {n} epochs): " + "; ".join(excluded))
    unfinished = [r for r in cell.used if r.status != "finished"]
    if unfinished:
        cell.notes.append(f"averaged in over epochs 1..{n} although not finished: "
                          + "; ".join(r.describe(r.epochs) for r in unfinished))


def cell_row(cell: Cell, ref: Cell | None) -> dict:
    """One table row; ``ref`` is the random cell of the same pair."""
    row = dict.fromkeys(COLUMNS)
    curves = cell.curves()
    best = [max(c) for c in curves.values()]
    final = [c[-1] for c in curves.values()]
    row.update(pair=cell.pair, init=cell.init, n=len(curves), epochs=cell.n_epochs,
               runs_from=cell.shared_from or cell.pair, n_runs=len(cell.runs), n_partial=cell.n_partial)
    row["best_top1_mean"], row["best_top1_std"] = mean_std(best)
    row["final_top1_mean"], row["final_top1_std"] = mean_std(final)
    status = Counter(r.status for r in cell.runs)
    row.update({f"n_{s}": status[s] for s in ("finished", "running", "failed")})
    if cell.key is not None:
        row["target"], row["data"], _ = cell.key
    if not any(r.source_free for r in cell.runs):  # a random run's pair source played no part in it
        row["source"] = cell.runs[0].source if cell.runs else None
        sims = [r.similarity for r in cell.runs if r.similarity is not None]
        row["similarity"] = float(np.mean(sims)) if sims else None
    if curves:
        _add_ratios(row, cell, ref, curves)
    row["note"] = "; ".join(cell.notes)
    return row


def _add_ratios(row: dict, cell: Cell, ref: Cell | None, curves: dict) -> None:
    if ref is None or not ref.used:
        cell.notes.append("no usable random run: no ratios")
        return
    if ref.key != cell.key or ref.n_epochs != cell.n_epochs:
        cell.notes.append(f"random runs differ in target/data/epochs ({ref.key} vs {cell.key}): no ratios")
        return
    ref_curves = ref.curves()
    seeds = [s for s in sorted(curves) if s in ref_curves and min(max(ref_curves[s]), ref_curves[s][-1]) > 0]
    missing = sorted(set(curves) - set(seeds))
    if missing:
        cell.notes.append("no ratio for " + ", ".join(f"seed{s}" for s in missing)
                          + " (no usable random run with that seed, or its top-1 is 0)")
    ratio_best = [max(curves[s]) / max(ref_curves[s]) for s in seeds]
    ratio_final = [curves[s][-1] / ref_curves[s][-1] for s in seeds]
    row["n_ratio"] = len(seeds)
    row["ratio_best_mean"], _ = mean_std(ratio_best)
    row["ratio_final_mean"], _ = mean_std(ratio_final)
    row["ratio_best_ci_low"], row["ratio_best_ci_high"] = bootstrap_ci(ratio_best)
    row["ratio_final_ci_low"], row["ratio_final_ci_high"] = bootstrap_ci(ratio_final)
    # the paper's definition: average the curves over seeds first, then take best (final) of the means
    mean_curve, ref_mean = np.mean(list(curves.values()), axis=0), np.mean(list(ref_curves.values()), axis=0)
    if ref_mean.max() > 0:
        row["ratio_best_paper"] = float(mean_curve.max() / ref_mean.max())
    if ref_mean[-1] > 0:
        row["ratio_final_paper"] = float(mean_curve[-1] / ref_mean[-1])
    for col, clipped in CLIPPED.items():
        if row[col] is not None:
            row[clipped] = max(1.0, row[col])


def all_rows(rows: list[dict], experiment: str) -> list[dict]:
    """One ``pair=ALL`` row per init (but random): every ratio column averaged over the pairs that have it."""
    out, paper = [], PAPER_FIGURES.get(experiment)
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    for init in sorted({r["init"] for r in rows} - {REFERENCE_INIT}, key=_init_order):
        mine = [r for r in rows if r["init"] == init]
        have = [r for r in mine if r["ratio_best_mean"] is not None]
        without = [p for p in pairs if p not in {r["pair"] for r in have}]  # incl. pairs with no such runs
        row = dict.fromkeys(COLUMNS)
        row.update(pair=ALL, init=init, n=len(have))
        for col in [*RATIO_COLUMNS, *CLIPPED.values()]:
            vals = [r[col] for r in mine if r[col] is not None]
            row[col] = float(np.mean(vals)) if vals else None
        epochs = {r["epochs"] for r in mine if r["epochs"] is not None}
        row["epochs"] = epochs.pop() if len(epochs) == 1 else None
        notes = [f"mean over {len(have)} of {len(pairs)} pairs"]
        if without:
            notes.append("no ratio for " + ", ".join(without))
        partial = [f"{r['pair']} ({r['n_partial']})" for r in have if r["n_partial"]]
        if partial:  # e.g. a diverged seed left out of a pair's mean: the headline must say so
            notes.append("runs not averaged in: " + ", ".join(partial))
        n_paper = sum(r["ratio_best_paper"] is not None for r in mine)
        if n_paper != len(have):
            notes.append(f"paper-definition columns over {n_paper} pairs")
        if paper and paper["init"] == init:
            row["paper_figure"] = paper["value"]
            notes.append(f"paper: {paper['value']}x after {paper['epochs']} epochs")
            if row["epochs"] != paper["epochs"]:
                notes.append(f"ours is over {row['epochs'] or 'mixed'} epochs, not {paper['epochs']}")
        row["note"] = "; ".join(notes)
        out.append(row)
    return out


# ----------------------------------------------------------------------------- entry points

def default_out_dir(runs_dir: Path) -> Path:
    """results/runs/<experiment> -> results/<experiment>."""
    if runs_dir.resolve().parent.name != "runs":
        raise AggregateError(f"{runs_dir} is not inside a 'runs' folder (results/runs/<experiment>): "
                             f"pass --out to say where the table goes.")
    return runs_dir.resolve().parent.parent / runs_dir.resolve().name


def aggregate(runs_dir: str | Path, out_dir: str | Path | None = None, epochs: int | None = None,
              plots: bool = True) -> list[dict]:
    """Aggregate ``runs_dir`` into ``out_dir`` (default ``results/<experiment>``); return the table rows.

    Raises AggregateError when there is nothing to aggregate. Problems with single runs are notes.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise AggregateError(f"{runs_dir}: no such folder (expected results/runs/<experiment>)")
    if epochs is not None and epochs < 1:
        raise AggregateError(f"--epochs must be >= 1, got {epochs}")
    explicit_out = out_dir
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(runs_dir)
    runs, problems = find_runs(runs_dir)
    for msgs in problems.values():
        for msg in msgs:
            print(f"warning: {msg}", file=sys.stderr)
    if not runs:
        raise AggregateError(f"{runs_dir}: no readable run.json under <pair>/<init>/seed<k>/ "
                             f"({sum(map(len, problems.values()))} problems reported above)")
    cells, global_notes = build_cells(runs, problems)
    for cell in cells:
        summarize_cell(cell, epochs)
    ref = {c.pair: c for c in cells if c.init == REFERENCE_INIT}
    rows = [cell_row(c, ref.get(c.pair)) for c in cells]
    experiment = runs_dir.resolve().name
    rows += all_rows(rows, experiment)

    notes = global_notes + [m for msgs in problems.values() for m in msgs]
    notes += [f"similarity vs ratio (best over epochs 1..N) for {init}: Pearson r = "
              + ("undefined" if math.isnan(r) else f"{r:.2f}") + f", n = {n} pairs"
              for init, (r, n) in similarity_correlations(rows).items()]
    command = f"python bench/aggregate.py {runs_dir}" + (f" --epochs {epochs}" if epochs else "") \
        + ("" if explicit_out is None else f" --out {explicit_out}")

    from bench import plots as plotting, table_formats  # matplotlib only when writing

    table_formats.write_tables(rows, out_dir, experiment=experiment, paper=PAPER_FIGURES.get(experiment),
                               notes=notes, command=command, columns=COLUMNS)
    if plots:
        plotting.write_plots(cells, rows, out_dir, paper=PAPER_FIGURES.get(experiment))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Aggregate results/runs/<experiment> into the paper's table "
                                            "and plots (results/<experiment>/).")
    p.add_argument("runs_dir", type=Path, help="results/runs/<experiment>")
    p.add_argument("--epochs", type=int, default=None,
                   help="N: best over epochs 1..N and final = epoch N (default: the planned epochs)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: results/<experiment>)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = p.parse_args(argv)
    try:
        rows = aggregate(args.runs_dir, args.out, epochs=args.epochs, plots=not args.no_plots)
    except AggregateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = args.out or default_out_dir(args.runs_dir)
    n_pairs = len({r["pair"] for r in rows} - {ALL})
    print(f"wrote {out}/table.csv, table.md, table.tex{'' if args.no_plots else ' and plots'} "
          f"({n_pairs} pair{'s' * (n_pairs != 1)}, {len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

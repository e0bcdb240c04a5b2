"""From runs to table rows: (pair, init) cells, their statistics and ratios, and the ``ALL`` rows.

A cell holds the runs of one pair and init, or, for a source-free init the pair has no runs of, the runs of
the folder :func:`bench.baselines.pick_baseline` chooses among folders with the same target, data and
epochs (the rule the sweep plan follows to place them; the note says "shared with"). A folder named after
its runs' target that holds only source-free inits is a baseline folder, not a pair. Runs with different
target, data or epochs are never mixed; every run not averaged in is counted and named in the note, an
interrupted one (recorded running, its process gone) as ``interrupted (resumable)``: never averaged in.
Metric (``docs/protocol.md``, "Ratio metric"): docs/experiments.md, "The table and its columns".

    from bench.results.cells import build_cells, summarize_cell
    cells, notes = build_cells(runs, problems)      # from bench.results.runs.find_runs
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from bench.baselines import pick_baseline, source_free
from bench.results.columns import (ALL, CLIPPED, COLUMNS, COMPARE_COLUMNS, COMPARE_INIT, RATIO_COLUMNS,
                                   REFERENCE_INIT, init_order)
from bench.results.stats import interval, mean_std, per_seed
from bench.running.record import RunRecord


def is_source_free(run: RunRecord) -> bool:
    return source_free(run.init, run.source) and run.distill == "none"  # a distilled run learns from the source


@dataclass
class Cell:
    pair: str
    init: str
    runs: list[RunRecord]  # the runs counted here: the cell's own, or shared ones
    shared_from: str | None = None  # the folder the runs come from when they are not the pair's own
    notes: list[str] = field(default_factory=list)
    key: tuple | None = None  # (target, data, planned epochs) when all runs agree
    n_epochs: int | None = None  # N
    used: list[RunRecord] = field(default_factory=list)  # runs that reached epoch N: averaged in
    n_partial: int = 0  # runs that did not reach epoch N: counted, not averaged in

    def curves(self, bn: bool = False) -> dict[int, list[float]]:
        """seed -> top-1 at epochs 1..N of the runs averaged in (``bn``: BatchNorm recalibrated; only runs
        that recorded it)."""
        curves = {r.seed: r.curve(self.n_epochs, bn) for r in self.used}
        return {seed: c for seed, c in curves.items() if c is not None}


def build_cells(runs: list[RunRecord], problems: dict) -> tuple[list[Cell], list[str]]:
    """Group runs into (pair, init) cells, sharing source-free baselines between pairs of one target.

    A folder named after its runs' target that holds only source-free inits is a baseline folder, not a
    pair. Returns the cells and global notes (e.g. runs that no pair uses).
    """
    by_folder = defaultdict(list)
    for r in runs:
        by_folder[r.pair, r.init].append(r)  # a run lives in the folder of its pair (bench.results.runs)
    folders = {f for f, _ in by_folder} | {f for f, _ in problems}
    inits = {i for _, i in by_folder} | {i for _, i in problems}
    folder_runs = {f: [r for r in runs if r.pair == f] for f in folders}
    baseline = {f for f in folders if folder_runs[f]
                and all(is_source_free(r) and r.target == f for r in folder_runs[f])}
    pairs = sorted(folders - baseline)
    if not pairs:  # only baseline folders: show them rather than nothing
        pairs, baseline = sorted(folders), set()

    def shared_candidate(pair: str, init: str) -> str | None:
        keys = {r.key for r in folder_runs[pair]}
        if len(keys) != 1:
            return None
        ok = [f for f in sorted(folders) if f != pair and by_folder[f, init]
              and all(is_source_free(r) and r.key in keys for r in by_folder[f, init])]
        target = next(iter(keys))[0]
        return pick_baseline([(f, len(by_folder[f, init])) for f in ok], target) if ok else None

    cells, used_folders = [], set()
    for pair in pairs:
        for init in sorted(inits, key=init_order):
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
    # an interrupted run (recorded running, its process gone: bench.running.record.liveness) waits to be resumed
    cell.used = [r for r in runs if r.curve(n) is not None and r.status != "interrupted"]
    excluded = [r.describe(n) for r in runs if r.curve(n) is None]
    held_back = [r.describe(n) for r in runs if r.curve(n) is not None and r.status == "interrupted"]
    cell.n_partial = len(excluded) + len(held_back)
    if excluded:
        cell.notes.append(f"not averaged in ({len(excluded)} without {n} epochs): " + "; ".join(excluded))
    if held_back:
        cell.notes.append(f"not averaged in ({len(held_back)} interrupted, to be resumed): " + "; ".join(held_back))
    unfinished = [r for r in cell.used if r.status != "finished"]
    if unfinished:
        cell.notes.append(f"averaged in over epochs 1..{n} although not finished: "
                          + "; ".join(r.describe(r.epochs) for r in unfinished))


def cell_row(cell: Cell, ref: Cell | None, compare: Cell | None = None) -> dict:
    """One table row; ``ref`` is the random cell of the same pair, ``compare`` its faithful-DPIAT cell."""
    row = dict.fromkeys(COLUMNS)
    curves, curves_bn = cell.curves(), cell.curves(bn=True)
    row.update(pair=cell.pair, init=cell.init, n=len(curves), epochs=cell.n_epochs,
               runs_from=cell.shared_from or cell.pair, n_runs=len(cell.runs), n_partial=cell.n_partial)
    for suffix, values in (("", [r.init_top1 for r in cell.used]), ("_bn", [r.init_top1_bn for r in cell.used])):
        if values and None not in values:
            row[f"init_top1{suffix}_mean"] = float(np.mean(values))
    for suffix, by_seed in (("", curves), ("_bn", curves_bn)):
        row[f"best_top1{suffix}_mean"], row[f"best_top1{suffix}_std"] = mean_std([max(c) for c in by_seed.values()])
        row[f"final_top1{suffix}_mean"], row[f"final_top1{suffix}_std"] = mean_std([c[-1] for c in by_seed.values()])
    if curves_bn and len(curves_bn) != len(curves):  # some runs did not record it (all none: older runs)
        cell.notes.append(f"BatchNorm-recalibrated columns over {len(curves_bn)} of {len(curves)} runs "
                          "(the others did not record it)")
    status = Counter(r.status for r in cell.runs)
    row.update({f"n_{s}": status[s] for s in ("finished", "running", "failed")})
    if cell.key is not None:
        row["target"], row["data"], _ = cell.key
    if not any(is_source_free(r) for r in cell.runs):  # a random run's pair source played no part in it
        row["source"] = cell.runs[0].source if cell.runs else None
        sims = [r.similarity for r in cell.runs if r.similarity is not None]
        row["similarity"] = float(np.mean(sims)) if sims else None
    if curves:
        _add_ratios(row, cell, ref)
    if curves and compare is not None and cell.init not in (REFERENCE_INIT, COMPARE_INIT):
        _add_comparison(row, cell, compare)
    row["note"] = "; ".join(cell.notes)
    return row


def _comparable(cell: Cell, other: Cell, what: str) -> bool:
    if not other.used:
        cell.notes.append(f"no usable {what} run: no {what} ratios")
        return False
    if other.key != cell.key or other.n_epochs != cell.n_epochs:
        cell.notes.append(f"{what} runs differ in target/data/epochs ({other.key} vs {cell.key}): no {what} ratios")
        return False
    return True


def _paired(curves: dict, other: dict) -> tuple[list[int], list[float], list[float]]:
    """Seeds with a run on both sides (and a non-zero denominator), best-over-epochs and final ratios."""
    seeds = [s for s in sorted(curves) if s in other and min(max(other[s]), other[s][-1]) > 0]
    return (seeds, [max(curves[s]) / max(other[s]) for s in seeds],
            [curves[s][-1] / other[s][-1] for s in seeds])


def _add_ratios(row: dict, cell: Cell, ref: Cell | None) -> None:
    if ref is None:
        cell.notes.append("no usable random run: no ratios")
        return
    if not _comparable(cell, ref, "random"):
        return
    curves, ref_curves = cell.curves(), ref.curves()
    seeds, ratio_best, ratio_final = _paired(curves, ref_curves)
    missing = sorted(set(curves) - set(seeds))
    if missing:
        cell.notes.append("no ratio for " + ", ".join(f"seed{s}" for s in missing)
                          + " (no usable random run with that seed, or its top-1 is 0)")
    row["n_ratio"] = len(seeds)
    _mean_interval(row, "ratio_best", ratio_best)
    _mean_interval(row, "ratio_final", ratio_final)
    row["ratio_best_seeds"] = per_seed(ratio_best) or None
    _, ratio_best_bn, ratio_final_bn = _paired(cell.curves(bn=True), ref.curves(bn=True))
    _mean_interval(row, "ratio_best_bn", ratio_best_bn)
    _mean_interval(row, "ratio_final_bn", ratio_final_bn)
    row["ratio_best_bn_seeds"] = per_seed(ratio_best_bn) or None
    row["interval"] = interval(ratio_best)[2]
    # the paper's definition: average the curves over seeds first, then take best (final) of the means
    mean_curve, ref_mean = np.mean(list(curves.values()), axis=0), np.mean(list(ref_curves.values()), axis=0)
    if ref_mean.max() > 0:
        row["ratio_best_paper"] = float(mean_curve.max() / ref_mean.max())
    if ref_mean[-1] > 0:
        row["ratio_final_paper"] = float(mean_curve[-1] / ref_mean[-1])
    for col, clipped in CLIPPED.items():
        if row[col] is not None:
            row[clipped] = max(1.0, row[col])


def _add_comparison(row: dict, cell: Cell, compare: Cell) -> None:
    """Paired per-seed ratios to the faithful method: does a variant (or GHN) beat ``dpiat``?"""
    if not _comparable(cell, compare, COMPARE_INIT):
        return
    _, best, _ = _paired(cell.curves(), compare.curves())
    _mean_interval(row, "vs_dpiat_best", best)
    _, best_bn, _ = _paired(cell.curves(bn=True), compare.curves(bn=True))
    _mean_interval(row, "vs_dpiat_best_bn", best_bn)


def _mean_interval(row: dict, name: str, values: list[float]) -> None:
    """``<name>_mean`` and its 95% interval ``<name>_ci_low`` / ``_ci_high`` (:func:`stats.interval`)."""
    row[f"{name}_mean"], _ = mean_std(values)
    row[f"{name}_ci_low"], row[f"{name}_ci_high"], _ = interval(values)


def all_rows(rows: list[dict], paper: dict | None) -> list[dict]:
    """One ``pair=ALL`` row per init (but random): every ratio column averaged over the pairs that have it.

    ``paper``: the published figure to show beside ours (``bench.results.table.PAPER_FIGURES``), or None.
    """
    out = []
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    for init in sorted({r["init"] for r in rows} - {REFERENCE_INIT}, key=init_order):
        mine = [r for r in rows if r["init"] == init]
        have = [r for r in mine if r["ratio_best_mean"] is not None]
        without = [p for p in pairs if p not in {r["pair"] for r in have}]  # incl. pairs with no such runs
        row = dict.fromkeys(COLUMNS)
        row.update(pair=ALL, init=init, n=len(have))
        for col in [*RATIO_COLUMNS, *CLIPPED.values(), *COMPARE_COLUMNS]:
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

"""Does a reproduction agree with a reference table? Per (pair, init), your seeds beside the reference's.

What bench/compare.py prints and decides. Both folders are read as a table reads them (:mod:`~bench.results.runs`,
:mod:`~bench.results.cells`: the same shared baselines, the same runs left out); the measure judged is the best
top-1 over epochs 1..N of each seed, as the protocol evaluates and BatchNorm-recalibrated (each where both
sides have it). The ratio to random is shown beside them, not judged: it is computed from the same accuracies.

Seeds both sides ran are checked first, seed by seed (:func:`seed_check`): the same seed on the same kind of
machine reruns bit-identically, so each says "seed 0: epochs 1-2 bit-identical" or names the first number
that differs (the epoch and the measure). A seed identical to the reference's agrees exactly and is not judged
again; the rule below judges the rest of your seeds (those the reference lacks, and shared ones that differ) against the
reference's mean. A cell whose seeds are all identical agrees without a mean difference being reported: one
seed beside a three-seed mean would show a "difference" that is only the spread of the reference's seeds.

The rule (:func:`judge`). A reproduction is another sample of seeds, on another machine most likely, where
results differ by seed noise and never bit-exactly; with 3 seeds a cell's own standard deviation is barely
known (2 degrees of freedom), so the seed noise ``s`` of a cell is the larger of its own sample std in the
reference and the std pooled over every reference cell of that measure (``pooled``: the sum of (n - 1) s^2 over
cells, divided by the sum of (n - 1); that sum is the degrees of freedom). A cell agrees when

    |your mean - reference mean| <= t * s * sqrt(1/n_yours + 1/n_reference)

with ``t`` Student's two-sided quantile at the pooled degrees of freedom for level ``alpha / k`` (Bonferroni
over the ``k`` comparisons of the whole table): when both are fair samples of the same runs, the chance that
any comparison of the table disagrees is at most about ``alpha`` (5% by default).

    >>> judge([0.66], [0.60, 0.62, 0.64], Pooled(0.02, 10), k=1).agree
    True
    >>> round(judge([0.50, 0.52], [0.60, 0.62, 0.64], Pooled(0.02, 10), k=1).tolerance, 4)
    0.0407
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.results.cells import Cell, build_cells, cell_row, summarize_cell
from bench.results.columns import COMPARE_INIT, REFERENCE_INIT
from bench.results.runs import find_runs
from bench.results.slices import Slice, SliceError
from bench.results.stats import mean_std
from bench.running.record import RunRecord, read_run

ALPHA = 0.05
MEASURES = {"top1": "best top-1", "top1_bn": "best top-1, BN"}  # the key of Side.best -> how it is named


@dataclass(frozen=True)
class Pooled:
    """The seed noise of one measure, pooled over the reference's cells."""

    std: float | None  # None without a cell of 2 or more seeds
    df: int  # degrees of freedom: sum of (n - 1)


@dataclass(frozen=True)
class Judgement:
    agree: bool
    difference: float  # your mean - reference mean
    tolerance: float  # the largest |difference| that agrees


@dataclass
class Side:
    """One (pair, init) cell of one folder, as compared: per-seed best top-1 of the runs averaged in."""

    cell: Cell
    best: dict[str, list[float]]  # measure -> per-seed values (seed order)
    ratio: tuple[float | None, float | None]  # mean ratio to random, best over epochs: protocol, BN
    curves: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # measure -> seed -> top-1 per epoch

    def best_of(self, measure: str, seeds) -> list[float]:
        """The best top-1 of ``seeds`` (those of them this side has), in seed order."""
        return [max(self.curves[measure][s]) for s in sorted(seeds) if s in self.curves[measure]]

    @property
    def n(self) -> int:
        return len(self.best["top1"])

    def summary(self, measure: str) -> str:
        mean, std = mean_std(self.best[measure])
        if mean is None:
            return "-"
        return f"{mean:.3f}" + (f" +- {std:.3f}" if std is not None else "")


@dataclass
class Row:
    pair: str
    init: str
    mine: Side | None
    ref: Side | None
    judged: dict[str, Judgement] = field(default_factory=dict)  # the rule, on the seeds not identical
    problem: str = ""  # why it is not judged, or (with disagree) what differs in the set-up
    seeds: list[str] = field(default_factory=list)  # one line per seed both sides ran (seed_check)
    identical: list[int] = field(default_factory=list)  # those seeds that are bit-identical
    rest: list[int] = field(default_factory=list)  # your other seeds: judged by the rule

    @property
    def status(self) -> str:
        """agree | disagree | not judged | only in yours | only in the reference"""
        if self.mine is None:
            return "only in the reference"
        if self.ref is None:
            return "only in yours"
        if self.problem.startswith("different set-up"):
            return "disagree"
        if not self.judged:
            return "agree" if self.identical and not self.rest else "not judged"
        return "agree" if all(j.agree for j in self.judged.values()) else "disagree"


def read_cells(runs_dir: Path, where: Slice | None = None) -> list[Cell]:
    """The cells of ``runs_dir`` as the table builds them (a seed slice reads only its seed of its cell)."""
    runs, problems = find_runs(runs_dir)
    if where is not None:
        runs = [r for r in runs if where.keeps(r.pair, r.init, r.seed)]
    return build_cells(runs, problems)[0]


def read_sides(cells: list[Cell], epochs: int | None) -> tuple[dict[tuple[str, str], Side], list[RunRecord]]:
    """The cells summarised over epochs 1..``epochs`` (None: each cell's planned epochs), and every run
    averaged into one."""
    for cell in cells:
        summarize_cell(cell, epochs)
    ref = {c.pair: c for c in cells if c.init == REFERENCE_INIT}
    compare = {c.pair: c for c in cells if c.init == COMPARE_INIT}
    sides, used = {}, []
    for cell in cells:
        row = cell_row(cell, ref.get(cell.pair), compare.get(cell.pair))
        curves = {"top1": cell.curves(), "top1_bn": cell.curves(bn=True)}
        best = {m: [max(c) for _, c in sorted(by_seed.items())] for m, by_seed in curves.items()}
        sides[cell.pair, cell.init] = Side(cell, best, (row["ratio_best_mean"], row["ratio_best_bn_mean"]), curves)
        if cell.shared_from is None:
            used += cell.used
    return sides, used


def pooled(sides: dict[tuple[str, str], Side], measure: str) -> Pooled:
    """The reference's seed noise of ``measure``, pooled over its own cells (shared ones count once)."""
    squares, df = 0.0, 0
    for side in sides.values():
        values = side.best[measure]
        if side.cell.shared_from is None and len(values) >= 2:
            squares += (len(values) - 1) * float(np.var(values, ddof=1))
            df += len(values) - 1
    return Pooled(math.sqrt(squares / df) if df else None, df)


def seed_check(seed: int, mine: Side, ref: Side) -> tuple[bool, str]:
    """(identical, line) for a seed both sides ran: every epoch's top-1, as the protocol evaluates and with
    BatchNorm recalibrated, compared exactly; the line names the first number that differs."""
    for m in MEASURES:
        a, b = mine.curves[m].get(seed), ref.curves[m].get(seed)
        if a is None and b is None:
            continue
        if a is None or b is None:
            return False, f"seed {seed}: {MEASURES[m].replace('best ', '')} recorded only in {'the reference' if a is None else 'yours'}"
        if len(a) != len(b):
            return False, f"seed {seed}: {len(a)} epochs in yours, {len(b)} in the reference"
        for epoch, (x, y) in enumerate(zip(a, b), 1):
            if x != y:
                what = MEASURES[m].replace("best ", "")
                return False, f"seed {seed}: differs first at epoch {epoch}, {what} {x:.4f} yours, {y:.4f} the reference"
    n = len(mine.curves["top1"].get(seed) or ref.curves["top1"].get(seed) or [])
    return True, f"seed {seed}: {'epoch 1' if n == 1 else f'epochs 1-{n}'} bit-identical"


def judge(mine: list[float], ref: list[float], noise: Pooled, k: int, alpha: float = ALPHA) -> Judgement:
    """The rule of the module docstring, for one measure of one cell (``mine``, ``ref``: per-seed values)."""
    from scipy.stats import t

    own = float(np.std(ref, ddof=1)) if len(ref) >= 2 else 0.0
    s = max(own, noise.std or 0.0)
    quantile = float(t.ppf(1 - alpha / (2 * k), noise.df))
    tolerance = quantile * s * math.sqrt(1 / len(mine) + 1 / len(ref))
    difference = float(np.mean(mine) - np.mean(ref))
    return Judgement(abs(difference) <= tolerance, difference, tolerance)


@dataclass
class Comparison:
    """What :func:`compare` found: the rows, the runs each side averaged in, the pooled noise per measure and
    the epochs compared (1..epochs) with the planned epochs each side's compared cells have."""

    rows: list[Row]
    mine_runs: list[RunRecord]
    ref_runs: list[RunRecord]
    noise: dict[str, Pooled]
    epochs: int | None = None
    planned: tuple[list[int], list[int]] = ([], [])  # yours, the reference's


EPOCH_SCHEDULES = ("cosine", "cosine_steps")  # optim.schedule values whose learning rates depend on the planned epochs


def _schedules(cell: Cell) -> set[str]:
    """The optim.schedule its runs' recorded configs name (none where a run.json records no config)."""
    found = set()
    for r in cell.runs:
        try:
            optim = ((read_run(r.path).get("config") or {}).get("optim") or {})
        except (ValueError, OSError, AttributeError):
            continue
        if isinstance(optim, dict) and optim.get("schedule"):
            found.add(str(optim["schedule"]))
    return found


def set_up_difference(a: Cell, b: Cell) -> str:
    """Why two cells are not runs of the same set-up ("" when they are). Planned epochs alone are no
    difference, unless the learning rate follows a schedule over them: the epochs both have are compared."""
    (target, data, planned), (ref_target, ref_data, ref_planned) = a.key, b.key
    if (target, data) != (ref_target, ref_data):
        return (f"different set-up: yours {target} on {data}, the reference {ref_target} on {ref_data}")
    if planned != ref_planned and (_schedules(a) | _schedules(b)) & set(EPOCH_SCHEDULES):
        return (f"different set-up: the learning rate follows a cosine over the planned epochs, yours {planned}, "
                f"the reference {ref_planned}")
    return ""


def compare(mine: Slice, ref: Slice, epochs: int | None = None, alpha: float = ALPHA) -> Comparison:
    """Every (pair, init) of the slice ``mine`` and of the reference folder in it, judged where both have usable
    runs over epochs 1..N: N = ``epochs``, else the planned epochs both sides' compared cells have (a 2-epoch
    rerun of a 50-epoch run compares epochs 1-2). The reference is read whole: its other cells give the pooled
    seed noise. SliceError when ``epochs`` exceeds what both sides planned."""
    mine_cells = [c for c in read_cells(mine.root, mine) if mine.holds(c.pair, c.init)]
    ref_cells = read_cells(ref.root)
    shown = [c for c in ref_cells if mine.holds(c.pair, c.init) and ref.holds(c.pair, c.init)]
    common = {(c.pair, c.init) for c in mine_cells} & {(c.pair, c.init) for c in shown}
    planned = tuple(sorted({r.epochs for c in cells if (c.pair, c.init) in common for r in c.runs})
                    for cells in (mine_cells, shown))
    n = epochs
    if common and all(planned):
        both = min(min(planned[0]), min(planned[1]))
        if epochs is not None and epochs > both:
            raise SliceError(f"--epochs {epochs}: your runs were planned for {', '.join(map(str, planned[0]))} "
                             f"epochs, the reference's for {', '.join(map(str, planned[1]))}: give --epochs {both} "
                             "or fewer")
        n = epochs or both
    mine_sides, mine_runs = read_sides(mine_cells, n)
    ref_all, ref_runs = read_sides(ref_cells, n)
    noise = {m: pooled(ref_all, m) for m in MEASURES}
    ref_sides = {(c.pair, c.init): ref_all[c.pair, c.init] for c in shown}
    rows = []
    for key in list(ref_sides) + [k for k in mine_sides if k not in ref_sides]:
        a, b = mine_sides.get(key), ref_sides.get(key)
        if a is not None and b is not None and a.cell.shared_from and b.cell.shared_from:
            continue  # the same runs as the cell they are shared from: judged there once
        row = Row(*key, a, b)
        rows.append(row)
        if a is None or b is None:
            continue
        difference = set_up_difference(a.cell, b.cell) if a.cell.key and b.cell.key else ""
        if difference:
            row.problem = difference
        elif not a.n or not b.n:
            row.problem = "no finished runs " + ("in yours" if not a.n else "in the reference")
        else:
            mine_seeds, ref_seeds = set(a.curves["top1"]), set(b.curves["top1"])
            for seed in sorted(mine_seeds & ref_seeds):
                same, line = seed_check(seed, a, b)
                row.seeds.append(line)
                if same:
                    row.identical.append(seed)
            row.rest = sorted(mine_seeds - set(row.identical))
    comparisons = [(row, m) for row in rows if row.mine and row.ref and not row.problem and row.rest
                   for m in MEASURES if row.mine.best_of(m, row.rest) and row.ref.best[m] and noise[m].df]
    for row, m in comparisons:
        row.judged[m] = judge(row.mine.best_of(m, row.rest), row.ref.best[m], noise[m], len(comparisons), alpha)
    for row in rows:
        if row.mine and row.ref and not row.problem and row.rest and not row.judged:
            row.problem = "the reference has no cell with 2 seeds: its seed noise is unknown"
    return Comparison(rows, mine_runs, ref_runs, noise, n, planned)


def machines(runs: list[RunRecord]) -> list[str]:
    """'AMD EPYC (AVX512), torch 2.14.1+cu130, 1 thread: 21 runs', one line per kind of machine."""
    kinds: Counter = Counter()
    for r in runs:
        try:
            record = read_run(r.path)
        except (ValueError, OSError):
            kinds["unreadable run.json"] += 1
            continue
        hw, versions = record.get("hardware") or {}, record.get("versions") or {}
        cpu = hw.get("cpu_model") or "unknown CPU"
        if hw.get("cpu_capability"):
            cpu += f" ({hw['cpu_capability']})"
        threads = hw.get("torch_threads")
        kinds[f"{cpu}, torch {versions.get('torch') or '?'}, "
              f"{threads if threads is not None else '?'} thread{'s' * (threads != 1)}"] += 1
    return [f"{kind}: {n} run{'s' * (n != 1)}" for kind, n in kinds.most_common()]

"""Set your runs beside the committed ones: per (pair, init), do they agree within seed noise?

    python bench/compare.py results/runs/proxy                       # against the committed results/proxy/runs
    python bench/compare.py results/runs/proxy results/proxy/runs    # the same, the reference named
    python bench/compare.py /tmp/my_copy --epochs 1                  # after the first epoch

MINE is a runs folder (``<pair>/<init>/seed<k>/run.json``: ``results/runs/<experiment>`` after a sweep);
REFERENCE defaults to the committed copy of the same experiment's runs, ``results/<experiment>/runs``, the
experiment being what MINE's run.json files record. Both are read as bench/aggregate.py reads them (the same
cells, the same runs left out). For each (pair, init): the number of seeds, the mean +- std of the best top-1
over epochs 1..N (as the protocol evaluates, and BatchNorm-recalibrated), the ratio to random init, yours and
the reference's; each seed both sides ran, checked exactly ("seed 0: identical", or the first epoch and
measure that differ); for the rest of your seeds, the difference of means and the largest difference that still
agrees; then the machines each side ran on (CPU model, torch version and threads, from run.json) and a
one-line verdict.

The rule (bench/results/agreement.py): a seed both sides ran that is bit-identical agrees, and is not judged
again. The rest of your seeds are another sample of seeds, usually on another CPU, where results differ by
seed noise and never bit-exactly. They agree when |their mean - the reference mean| <=
t * s * sqrt(1/n_yours + 1/n_reference), for both evaluations, where s is the seed-to-seed std (the larger of the
reference cell's own and the one pooled over all reference cells: 3 seeds alone say little about it) and t
Student's quantile at the pooled degrees of freedom, Bonferroni-corrected over the table's comparisons: a fair
reproduction is called a disagreement somewhere in the table with a chance of at most --alpha (5%). With 3 seeds
this catches gross differences (a run whose accuracies are halved), not a point or two.

Exit status: 0 every compared (pair, init) agrees, 1 one disagrees (named), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.results.agreement import ALPHA, MEASURES, Row, compare, experiments, machines
from bench.results.runs import find_runs

REPO_ROOT = Path(__file__).resolve().parents[1]


class BadInput(Exception):
    """One line saying what to change; exit status 2."""


def reference_for(mine: Path, given: Path | None) -> tuple[Path, str]:
    """The reference runs folder (REFERENCE, or results/<experiment>/runs) and the experiment of MINE."""
    runs, _ = find_runs(mine)
    if not runs:
        raise BadInput(f"{mine}: no run.json under <pair>/<init>/seed<k>/ (give a runs folder, e.g. "
                       "results/runs/proxy)")
    names = experiments(runs)
    if len(names) != 1:
        raise BadInput(f"{mine} holds runs of {len(names)} experiments ({', '.join(sorted(names))}): give one "
                       "experiment's runs folder")
    experiment = names.pop()
    if given is not None:
        if not given.is_dir():
            raise BadInput(f"{given}: no such folder (give a runs folder, e.g. results/{experiment}/runs)")
        if (given / "runs").is_dir() and not find_runs(given)[0]:
            given = given / "runs"  # results/<experiment> given for results/<experiment>/runs
        return given, experiment
    committed = REPO_ROOT / "results" / experiment / "runs"
    if not committed.is_dir():
        known = sorted(p.parent.name for p in (REPO_ROOT / "results").glob("*/runs") if p.is_dir())
        raise BadInput(f"no committed results for experiment {experiment!r} (no results/{experiment}/runs; "
                       f"committed: {', '.join(known) or 'none'}): give REFERENCE, a runs folder to compare with")
    return committed, experiment


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def describe(row: Row) -> list[str]:
    """The lines of one (pair, init): yours, the reference, the judgement."""
    head = f"{row.pair} / {row.init}: {row.status.upper() if row.status == 'disagree' else row.status}"
    if row.problem:
        head += f" ({row.problem})"
    lines = [head]
    for who, side in (("yours    ", row.mine), ("reference", row.ref)):
        if side is None:
            continue
        shared = f", runs shared from {side.cell.shared_from}" if side.cell.shared_from else ""
        lines.append(f"  {who}  n={side.n}  best top-1 {side.summary('top1')} / BN {side.summary('top1_bn')}"
                     f"  ratio to random {_fmt(side.ratio[0])} / BN {_fmt(side.ratio[1])}{shared}")
    lines += [f"  {line}" for line in row.seeds]
    if row.judged:
        seeds = ", ".join(map(str, row.rest))
        lines.append(f"  your seed{'s' * (len(row.rest) != 1)} {seeds} (not identical to a reference seed) against "
                     "the reference's mean:")
    for m, j in row.judged.items():
        lines.append(f"  {MEASURES[m]}: difference {j.difference:+.3f}, agrees within +-{j.tolerance:.3f}: "
                     f"{'yes' if j.agree else 'NO'}")
    return lines


def verdict(rows: list[Row], mine: Path, ref: Path) -> tuple[str, int]:
    judged = [r for r in rows if r.status in ("agree", "disagree")]
    bad = [r for r in judged if r.status == "disagree"]
    left = len(rows) - len(judged)
    extra = f"; {left} (pair, init) not compared (above)" if left else ""
    if bad:
        names = ", ".join(f"{r.pair}/{r.init}" for r in bad)
        return (f"verdict: {len(bad)} of {len(judged)} (pair, init) DISAGREE with the reference: {names}{extra}", 1)
    exact = sum(len(r.identical) for r in judged)
    noisy = sum(len(r.rest) for r in judged)
    how = " and ".join(part for part in (f"{exact} seed{'s' * (exact != 1)} bit-identical" if exact else "",
                                          f"{noisy} within seed noise" if noisy else "") if part)
    return (f"verdict: all {len(judged)} (pair, init) compared agree with the reference ({how}){extra}", 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Your runs beside a reference's (default: the committed results/<experiment>/runs), per pair "
                    "and init, and whether they agree. Rule: for the best top-1 over epochs 1..N, as the protocol "
                    "evaluates and BatchNorm-recalibrated, |your mean - reference mean| <= t * s * "
                    "sqrt(1/n_yours + 1/n_ref), s the seed std (the larger of the reference cell's own and the "
                    "one pooled over the reference's cells), t Student's two-sided quantile at the pooled degrees "
                    "of freedom, Bonferroni-corrected over the table's comparisons at --alpha. The ratio to random "
                    "is shown, not judged (it comes from the same accuracies).",
        epilog="Exit status: 0 all compared agree, 1 something disagrees (named), 2 bad input. "
               "Example: python bench/compare.py results/runs/proxy")
    p.add_argument("mine", type=Path, metavar="MINE", help="your runs folder, e.g. results/runs/proxy")
    p.add_argument("reference", type=Path, nargs="?", default=None, metavar="REFERENCE",
                   help="the runs to compare with (default: results/<experiment>/runs, experiment from MINE's "
                        "run.json files)")
    p.add_argument("--epochs", type=int, default=None,
                   help="N: best over epochs 1..N (default: the planned epochs)")
    p.add_argument("--alpha", type=float, default=ALPHA,
                   help=f"chance that a fair reproduction is called a disagreement somewhere (default {ALPHA})")
    args = p.parse_args(argv)
    try:
        if not args.mine.is_dir():
            raise BadInput(f"{args.mine}: no such folder (give your runs folder, e.g. results/runs/proxy)")
        if args.epochs is not None and args.epochs < 1:
            raise BadInput(f"--epochs must be at least 1, got {args.epochs}")
        if not 0 < args.alpha < 1:
            raise BadInput(f"--alpha must be between 0 and 1, got {args.alpha}")
        ref_dir, experiment = reference_for(args.mine, args.reference)
        rows, mine_runs, ref_runs, noise = compare(args.mine, ref_dir, args.epochs, args.alpha)
        if not any(r.mine and r.ref for r in rows):
            raise BadInput(f"{args.mine} and {ref_dir} have no (pair, init) in common: nothing to compare")
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"yours:     {args.mine} (experiment {experiment})")
    print(f"reference: {ref_dir}")
    kinds = {"yours": machines(mine_runs), "reference": machines(ref_runs)}
    for who, lines in kinds.items():
        for line in lines or ["no runs averaged in"]:
            print(f"  ran on ({who}): {line}")
    for m, pooled in noise.items():
        if pooled.std is not None:
            print(f"  seed noise of the {MEASURES[m]}, pooled over the reference: std {pooled.std:.3f} "
                  f"({pooled.df} degrees of freedom)")
    same = [k.rsplit(":", 1)[0] for k in kinds["yours"]] == [k.rsplit(":", 1)[0] for k in kinds["reference"]]
    print("  the same kind of machine on both sides: a seed both ran should be bit-identical (checked seed by "
          "seed below), so a difference there means other code, data or settings" if same and len(kinds["yours"]) == 1
          else "  the machines differ: expect differences of seed-noise size, never bit-identical numbers")
    print()
    for row in rows:
        print("\n".join(describe(row)))
    line, rc = verdict(rows, args.mine, ref_dir)
    print("\n" + line)
    return rc


if __name__ == "__main__":
    sys.exit(main())

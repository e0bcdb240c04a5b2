"""Set your runs beside the committed ones: per (pair, init), do they agree within seed noise?

    python bench/compare.py results/runs/proxy                       # against the committed results/proxy/runs
    python bench/compare.py results/runs/proxy results/proxy/runs    # the same, the reference named
    python bench/compare.py /tmp/slice/horizon                       # a 2-epoch rerun of one horizon run
    python bench/compare.py /tmp/my_copy --epochs 1                  # after the first epoch

MINE is any slice of an experiment, at any level of the tree every experiment writes
(``<paths.runs>/<experiment>/[<recipe>/]<pair>/<init>/seed<k>/run.json``, bench/layout.py): ``<paths.runs>``,
the experiment, a recipe's folder, a pair, an init, one seed (bench/results/slices.py). REFERENCE defaults to the
committed runs at the same place, ``results/<experiment>/runs[/<recipe>]``, the experiment and recipe being
what MINE's run.json files record (a given REFERENCE may be at any level too). Both are read as
bench/aggregate.py reads them (the same cells, the same runs left out). Epochs: 1..N, N = ``--epochs``, else
the planned epochs both sides have (a 2-epoch rerun of a 50-epoch run compares epochs 1-2; planned epochs differ
only as a different set-up where the learning rate follows a cosine over them). For each (pair, init) of the
slice: the number of seeds, the mean +- std of the best top-1 over epochs 1..N (as the protocol evaluates, and
BatchNorm-recalibrated), the ratio to random init, yours and the reference's; each seed both sides ran, checked
exactly ("seed 0: epochs 1-2 bit-identical", or the first epoch and measure that differ); for the rest of your
seeds, the difference of means and the largest difference that still agrees; then the machines each side ran on
(CPU model, torch version and threads, from run.json) and a one-line verdict.

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

from bench.results.agreement import ALPHA, MEASURES, Comparison, Row, compare, machines
from bench.results.slices import RESULTS, Slice, SliceError, slices


class BadInput(Exception):
    """One line saying what to change; exit status 2."""


def shown(path: Path) -> str:
    """A path as printed: relative to the working folder when inside it (results/horizon/runs/paper)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def pairs_of_slices(mine: Path, given: Path | None) -> list[tuple[Slice, Slice]]:
    """Each runs folder of MINE's slice with its reference: the same place in REFERENCE, or in the committed
    results/<experiment>/runs (bench/results/slices.py)."""
    try:
        ours = slices(mine)
    except SliceError as e:
        raise BadInput(str(e)) from None
    if given is not None:
        try:
            theirs = slices(given)
        except SliceError as e:
            raise BadInput(f"{e} (REFERENCE)") from None
        if len(ours) == 1 and len(theirs) == 1:
            return [(ours[0], theirs[0])]
        by_place = {t.place: t for t in theirs}
        missing = [o for o in ours if o.place not in by_place]
        if missing:
            raise BadInput(f"{given} has no runs folder for {where(missing[0])} (it has: "
                           f"{', '.join(where(t) for t in theirs)}): give that folder as REFERENCE")
        return [(o, by_place[o.place]) for o in ours]
    found, missing = [], []
    for o in ours:
        committed = o.reference()
        if committed.is_dir():
            found.append((o, slices(committed)[0]))
        else:
            missing.append(f"no committed results for {where(o)} of experiment {o.experiment!r} (no "
                           f"{shown(committed)}")
    if not found:
        known = sorted(p.parent.name for p in RESULTS.glob("*/runs") if p.is_dir())
        raise BadInput(f"{missing[0]}; committed experiments: {', '.join(known) or 'none'}): give REFERENCE, a "
                       "runs folder to compare with")
    for line in missing:  # several experiments given at once: the others are compared
        print(f"not compared: {shown(mine)}: {line})")
    return found


def where(s: Slice) -> str:
    """'recipe paper', 'the runs outside the grid (adhoc)', 'the runs'."""
    parts = (["the runs outside the grid (adhoc)"] if s.adhoc else []) + ([f"recipe {s.recipe}"] if s.recipe else [])
    return ", ".join(parts) or "the runs"


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


def verdict(rows: list[tuple[str, Row]], epochs: str) -> tuple[str, int]:
    """The last line and the exit status; ``rows``: (the name of the row's runs folder or "", row)."""
    judged = [(name, r) for name, r in rows if r.status in ("agree", "disagree")]
    bad = [(name, r) for name, r in judged if r.status == "disagree"]
    absent = sum(r.mine is None for _, r in rows)
    left = len(rows) - len(judged) - absent
    extra = (f"; {left} (pair, init) not compared (above)" if left else "") + (
        f"; {absent} (pair, init) of the reference not in yours" if absent else "")
    if bad:
        names = ", ".join(f"{name}{r.pair}/{r.init}" for name, r in bad)
        return (f"verdict: {len(bad)} of {len(judged)} (pair, init) DISAGREE with the reference: {names}{extra}", 1)
    exact = sum(len(r.identical) for _, r in judged)
    noisy = sum(len(r.rest) for _, r in judged)
    how = " and ".join(part for part in (f"{exact} seed{'s' * (exact != 1)} bit-identical" if exact else "",
                                          f"{noisy} within seed noise" if noisy else "") if part)
    return (f"verdict: all {len(judged)} (pair, init) compared agree with the reference{epochs} ({how}){extra}", 0)


def report(mine: Slice, ref: Slice, found: Comparison, label: str, given: bool) -> list[str]:
    """The lines of one runs folder's comparison, before its rows (``label``: which of several it is)."""
    label = f"{label}: " if label else ""
    inside = "" if mine.describe() == "all its runs" else f"; the slice: {mine.describe()}"
    lines = [f"yours:     {label}{shown(mine.root)} (experiment {mine.experiment}"
             f"{f', recipe {mine.recipe}' if mine.recipe else ''}{inside})",
             f"reference: {shown(ref.root)}"]
    if found.epochs is not None:
        span = "1" if found.epochs == 1 else f"1-{found.epochs}"
        yours, theirs = (", ".join(map(str, p)) for p in found.planned)
        why = f"--epochs {found.epochs}; planned" if given else "the planned epochs both sides have"
        lines.append(f"epochs:    {span} ({why}: yours {yours}, the reference {theirs})")
    kinds = {"yours": machines(found.mine_runs), "reference": machines(found.ref_runs)}
    for who, kind in kinds.items():
        lines += [f"  ran on ({who}): {line}" for line in kind or ["no runs averaged in"]]
    for m, pooled in found.noise.items():
        if pooled.std is not None:
            lines.append(f"  seed noise of the {MEASURES[m]}, pooled over the reference: std {pooled.std:.3f} "
                         f"({pooled.df} degrees of freedom)")
    same = [k.rsplit(":", 1)[0] for k in kinds["yours"]] == [k.rsplit(":", 1)[0] for k in kinds["reference"]]
    lines.append("  the same kind of machine on both sides: a seed both ran should be bit-identical (checked seed "
                 "by seed below), so a difference there means other code, data or settings"
                 if same and len(kinds["yours"]) == 1
                 else "  the machines differ: expect differences of seed-noise size, never bit-identical numbers")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Your runs (any slice of an experiment) beside a reference's (default: the committed runs at "
                    "the same place, results/<experiment>/runs[/<recipe>]), per pair and init, seed by seed over "
                    "the epochs both have, and whether they agree. Rule: for the best top-1 over epochs 1..N, as "
                    "the protocol evaluates and BatchNorm-recalibrated, |your mean - reference mean| <= t * s * "
                    "sqrt(1/n_yours + 1/n_ref), s the seed std (the larger of the reference cell's own and the "
                    "one pooled over the reference's cells), t Student's two-sided quantile at the pooled degrees "
                    "of freedom, Bonferroni-corrected over the table's comparisons at --alpha. The ratio to random "
                    "is shown, not judged (it comes from the same accuracies).",
        epilog="Exit status: 0 all compared agree, 1 something disagrees (named), 2 bad input. "
               "Example: python bench/compare.py results/runs/proxy")
    p.add_argument("mine", type=Path, metavar="MINE",
                   help="your runs, at any level of <experiment>/[<recipe>/]<pair>/<init>/seed<k> (e.g. "
                        "results/runs/proxy, /tmp/slice/horizon, one seed's folder)")
    p.add_argument("reference", type=Path, nargs="?", default=None, metavar="REFERENCE",
                   help="the runs to compare with (default: the committed results/<experiment>/runs[/<recipe>], "
                        "experiment and recipe from MINE's run.json files)")
    p.add_argument("--epochs", type=int, default=None,
                   help="N: compare epochs 1..N (default: the planned epochs both sides have)")
    p.add_argument("--alpha", type=float, default=ALPHA,
                   help=f"chance that a fair reproduction is called a disagreement somewhere (default {ALPHA})")
    args = p.parse_args(argv)
    try:
        if not args.mine.is_dir():
            raise BadInput(f"{args.mine}: no such folder (give your runs, at any level of "
                           "<experiment>/[<recipe>/]<pair>/<init>/seed<k>, e.g. results/runs/proxy)")
        if args.epochs is not None and args.epochs < 1:
            raise BadInput(f"--epochs must be at least 1, got {args.epochs}")
        if not 0 < args.alpha < 1:
            raise BadInput(f"--alpha must be between 0 and 1, got {args.alpha}")
        if args.reference is not None and not args.reference.is_dir():
            raise BadInput(f"{args.reference}: no such folder (give a runs folder, e.g. results/proxy/runs)")
        found = []
        for mine, ref in pairs_of_slices(args.mine, args.reference):
            try:
                found.append((mine, ref, compare(mine, ref, args.epochs, args.alpha)))
            except SliceError as e:
                raise BadInput(str(e)) from None
        if not any(r.mine and r.ref for _, _, c in found for r in c.rows):
            refs = ", ".join(shown(ref.root) for _, ref, _ in found)
            raise BadInput(f"{args.mine} and {refs} have no (pair, init) in common: nothing to compare")
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows, several = [], len(found) > 1
    experiments = {mine.experiment for mine, _, _ in found}
    for i, (mine, ref, comparison) in enumerate(found):
        label = where(mine) if len(experiments) == 1 else f"experiment {mine.experiment}, {where(mine)}"
        print(("\n" if i else "") + "\n".join(report(mine, ref, comparison, label if several else "",
                                                      args.epochs is not None)))
        print()
        for row in comparison.rows:
            if row.mine is not None:
                print("\n".join(describe(row)))
        absent = [f"{r.pair}/{r.init}" for r in comparison.rows if r.mine is None]
        if absent:
            more = f", ... ({len(absent) - 6} more)" if len(absent) > 7 else ""
            print(f"not in yours: {len(absent)} (pair, init) of the reference "
                  f"({', '.join(absent[:6] if more else absent)}{more})")
        rows += [(f"{label}: " if several else "", row) for row in comparison.rows]
    spans = {c.epochs for _, _, c in found} - {None}
    epochs = "" if len(spans) != 1 else f" over epoch{'s 1-' if max(spans) > 1 else ' '}{max(spans)}"
    line, rc = verdict(rows, epochs)
    print("\n" + line)
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""Source selection, measured: does a predictor computed before training pick the source that helps most?

    python bench/selection.py results/runs/selection                    # predictors (once, cached), statistics
    python bench/selection.py results/selection/runs --out /tmp/sel     # again from the committed copy
    python bench/selection.py --reference-only --out /tmp/ref           # the authors' 67 pairs alone

What it measures and how (gains, the six predictors, the statistics): :mod:`bench.results.selection`.
Exit status: 0 written, 1 nothing to analyse, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import USER_ERRORS, AggregateError
from bench.layout import table_dir
from bench.results.selection import REFERENCE, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Source selection: how well each predictor ranks the sources of a "
                                     "target, on an all-pairs grid's runs and on the authors' published pairs.")
    parser.add_argument("runs", nargs="?", type=Path, help="the grid's run folder (e.g. results/runs/selection)")
    parser.add_argument("--out", type=Path, help="output folder (default: beside the runs' table)")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="the authors' pairs (csv: teacher, "
                        "student, sim, acc_ratio; default: the committed results/selection/reference/sim.csv)")
    parser.add_argument("--reference-only", action="store_true", help="analyse the authors' pairs alone")
    parser.add_argument("--no-plots", action="store_true", help="tables and summary.json only")
    args = parser.parse_args(argv)
    if args.runs is None and not args.reference_only:
        parser.error("give the grid's run folder, or --reference-only")
    if args.runs is not None and not args.runs.is_dir():
        print(f"error: {args.runs}: no such folder (run the grid first: .venv/bin/python bench/sweep.py "
              "experiment=selection --local --jobs 2)", file=sys.stderr)
        return 2
    out = args.out or (table_dir(args.runs) if args.runs is not None else None)
    if out is None:
        parser.error("--reference-only needs --out")
    try:
        summary = run(args.runs, out, args.reference, plots=not args.no_plots)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, AggregateError) else 2
    print((out / "selection.md").read_text())
    return 0 if summary else 1


if __name__ == "__main__":
    sys.exit(main())

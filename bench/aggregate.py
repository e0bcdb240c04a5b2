"""Aggregate a folder of runs into the paper's table (csv, md, tex) and plots, with its uncertainty.

    python bench/aggregate.py results/runs/proxy                     # your runs: writes results/runs/proxy/table/
    python bench/aggregate.py results/runs/paper_imagenet --epochs 50
    python bench/aggregate.py results/runs/proxy --out /tmp/proxy_table --no-plots
    python bench/aggregate.py results/runs/default/adhoc             # runs outside the grid: .../adhoc/table/
    python bench/aggregate.py results/proxy/runs                     # the committed runs: the committed results/proxy/

Output: ``--out DIR``, else ``<runs_dir>/table/``, so that aggregating your own (or a partial) reproduction
never overwrites the committed tables it is to be compared with (``bench/compare.py``). Only the committed
copy of an experiment's runs, ``results/<experiment>/runs``, writes the committed ``results/<experiment>/``
by default (the same inputs give the same table); ``--out results/<experiment>`` writes there explicitly.

Input: ``<runs_dir>/<pair>/<init>/seed<k>/run.json`` (schema: ``bench/running/record.py``); the ``sources``
folder (source training) is not part of the table, nor is ``adhoc`` (runs outside the experiment's grid,
``bench/layout.py``): give that folder itself for their table.
Metric (``docs/protocol.md``, "Ratio metric"):

- best = max val_top1 over epochs 1..N, final = val_top1 at epoch N; N = ``--epochs``, default each run's
  planned epochs. Mean and sample std (ddof=1) over the runs that reached epoch N.
- ratio per seed = method / ``random`` of the same pair and seed; mean over seeds and a 95% interval over
  seeds: Student's t below 5 seeds, a percentile bootstrap from 5 (``bench/results/stats.py``). ``random``
  rows show 1 by construction (each seed over itself).
- ``ratio_*_paper``: the paper's own definition: curves averaged over seeds first, then best (or final)
  of the method's mean curve / that of random.
- ``*_clipped``: max(1, ratio). ``pair=ALL`` rows, one per init: each ratio column averaged over pairs.

Nothing is dropped silently: running, failed and partial runs (fewer than N epochs) are counted and named
in the row's note but not averaged in; a seed without a usable random run gets no ratio; malformed
run.json files are reported by path (stderr and notes) and skipped. A source-free init (``random``,
``ghn``) missing from a pair is taken from another folder with the same target, data and epochs
(``bench/baselines.py``: the folder the sweep runs it in), and the note says so. Never are runs with
different target/data/epochs mixed. The code: ``bench/results/`` (``table.py`` is the whole flow).
Exit status: 0 written, 1 nothing to aggregate or bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import USER_ERRORS
from bench.layout import default_table_dir
from bench.results.columns import ALL
from bench.results.table import aggregate, table_kind


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Aggregate results/runs/<experiment> into the paper's table and plots, written to "
                    "<runs_dir>/table/ unless --out says otherwise: your runs never overwrite the committed "
                    "results/<experiment>/ (only its committed copy results/<experiment>/runs, or "
                    "--out results/<experiment>, writes there).",
        epilog="Then: .venv/bin/python bench/compare.py <runs_dir> sets your runs beside the committed ones.")
    p.add_argument("runs_dir", type=Path, help="results/runs/<experiment> (or its adhoc/: the runs outside its grid)")
    p.add_argument("--epochs", type=int, default=None,
                   help="N: best over epochs 1..N and final = epoch N (default: the planned epochs)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: <runs_dir>/table; results/<experiment> for its committed "
                        "copy results/<experiment>/runs)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--also", type=Path, action="append", default=[], metavar="DIR",
                   help="another results/runs/<experiment> whose runs join the table (repeatable; "
                        "runs_dir's own run of a pair, init and seed wins)")
    p.add_argument("--pairs", nargs="+", default=None, help="only these pairs (default: all)")
    p.add_argument("--inits", nargs="+", default=None, help="only these inits (default: all)")
    args = p.parse_args(argv)
    out = args.out or default_table_dir(args.runs_dir)
    try:
        rows = aggregate(args.runs_dir, args.out, epochs=args.epochs, plots=not args.no_plots, also=args.also,
                         pairs=args.pairs, inits=args.inits)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n_pairs = len({r["pair"] for r in rows} - {ALL})
    if table_kind(args.runs_dir) == "horizon":
        print(f"wrote {out}/ratios_by_epoch.csv, time_to_accuracy.csv, table.md"
              f"{'' if args.no_plots else ', accuracy_by_epoch.png and ratio_by_epoch.png'} ({n_pairs} "
              f"pair{'s' * (n_pairs != 1)}, {len(rows)} ratio rows)")
        return 0
    print(f"wrote {out}/table.csv, table.md, table.tex{'' if args.no_plots else ' and plots'} "
          f"({n_pairs} pair{'s' * (n_pairs != 1)}, {len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

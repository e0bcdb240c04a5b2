"""Aggregate an experiment folder into the paper's table (csv, md, tex) and plots: runs -> cells -> rows -> files.

    from bench.results.table import aggregate
    rows = aggregate("results/runs/proxy")           # also writes results/runs/proxy/table/
    [(r["init"], r["ratio_best_mean"]) for r in rows if r["pair"] == "ALL"]

Reading (:mod:`~bench.results.runs`), cells and rows (:mod:`~bench.results.cells`), statistics
(:mod:`~bench.results.stats`), files (:mod:`~bench.results.formats`, :mod:`~bench.results.plots`). Problems
with single runs become notes (and stderr warnings); only an empty or missing folder is an error. Tables and
plots are written atomically, so a failing aggregation never leaves a half-written table.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from bench.errors import AggregateError
from bench.layout import default_table_dir, experiment_of, recipe_folders, target_folders
from bench.results.cells import all_rows, build_cells, cell_row, summarize_cell
from bench.results.columns import COMPARE_INIT, REFERENCE_INIT
from bench.results.runs import find_runs
from bench.running.record import RUN_FILE
from bench.results.stats import similarity_correlations

# Published figures, keyed by experiment name, shown beside ours. Only what the paper states.
PAPER_FIGURES = {
    "paper_imagenet": {"init": "dpiat", "value": 1.6, "epochs": 50,
                       "text": "DPIAT vs random init on ImageNet: mean ratio over pairs after 50 epochs "
                               "(abstract; whether clipped at 1 is not stated)"},
}


def table_kind(runs_dir: str | Path) -> str:
    """``grid.table`` as the experiment's runs recorded it (their first run.json): "" for the paper's table."""
    for folder in [*recipe_folders(runs_dir), Path(runs_dir)]:
        for seed_dir in target_folders(folder):
            try:
                config = json.loads((seed_dir / RUN_FILE).read_text()).get("config") or {}
            except (OSError, ValueError):
                continue
            return str((config.get("grid") or {}).get("table") or "")
    return ""


def aggregate(runs_dir: str | Path, out_dir: str | Path | None = None, epochs: int | None = None,
              plots: bool = True, also: list[str | Path] = (), pairs: list[str] | None = None,
              inits: list[str] | None = None) -> list[dict]:
    """Aggregate ``runs_dir`` into ``out_dir`` (default :func:`bench.layout.default_table_dir`: ``<runs_dir>/table``,
    or ``results/<experiment>`` for its committed copy ``results/<experiment>/runs``); return the table rows.

    ``also``: more experiment folders whose runs join the table (e.g. the proxy's random and dpiat rows beside
    the variants'); a run of the same pair, init and seed in ``runs_dir`` wins, and the note names the folder
    each borrowed cell comes from. ``pairs`` / ``inits``: keep only these (default: all).
    Raises AggregateError when there is nothing to aggregate. Problems with single runs are notes.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise AggregateError(f"{runs_dir}: no such folder (expected results/runs/<experiment>)")
    if epochs is not None and epochs < 1:
        raise AggregateError(f"--epochs must be >= 1, got {epochs}")
    explicit_out = out_dir
    out_dir = Path(out_dir) if out_dir is not None else default_table_dir(runs_dir)
    if table_kind(runs_dir) == "horizon":  # grid.table: the ratio at every epoch and the time to accuracy
        if also or pairs or inits:
            raise AggregateError(f"{runs_dir}: the horizon table takes no --also, --pairs or --inits")
        from bench.results.horizon_plots import write_horizon

        return write_horizon(runs_dir, out_dir, epochs=epochs, plots=plots, experiment=experiment_of(runs_dir),
                                    command=f".venv/bin/python bench/aggregate.py {runs_dir}"
                                    + (f" --epochs {epochs}" if epochs else "")
                                    + ("" if explicit_out is None else f" --out {explicit_out}"))
    if recipe_folders(runs_dir) and next(target_folders(runs_dir), None) is None:  # grid.recipes: a folder each
        if also or pairs or inits:
            raise AggregateError(f"{runs_dir} holds one folder per recipe: its recipe table takes no --also, --pairs "
                                 "or --inits (give a recipe's folder for its ordinary table with them)")
        from bench.results.recipe import write_recipe_tables

        return write_recipe_tables(runs_dir, out_dir, epochs=epochs, plots=plots, experiment=experiment_of(runs_dir),
                                   aggregate=aggregate,
                                   command=f".venv/bin/python bench/aggregate.py {runs_dir}"
                                   + (f" --epochs {epochs}" if epochs else "")
                                   + ("" if explicit_out is None else f" --out {explicit_out}"))
    runs, problems = find_runs(runs_dir)
    borrowed: dict[tuple[str, str], set[str]] = {}
    for extra in map(Path, also):
        if not extra.is_dir():
            raise AggregateError(f"{extra}: no such folder (expected results/runs/<experiment>)")
        more, more_problems = find_runs(extra)
        own = {(r.pair, r.init, r.seed) for r in runs}
        for r in more:
            if (r.pair, r.init, r.seed) not in own and (pairs is None or r.pair in pairs):
                runs.append(r)
                borrowed.setdefault((r.pair, r.init), set()).add(extra.name)
        for key, msgs in more_problems.items():
            if pairs is None or key[0] in pairs:
                problems.setdefault(key, []).extend(msgs)
    if pairs is not None or inits is not None:
        def keep(pair: str, init: str) -> bool:
            return (pairs is None or pair in pairs) and (inits is None or init in inits)
        runs = [r for r in runs if keep(r.pair, r.init)]
        problems = {k: v for k, v in problems.items() if keep(*k)}
    for msgs in problems.values():
        for msg in msgs:
            print(f"warning: {msg}", file=sys.stderr)
    if not runs:
        raise AggregateError(f"{runs_dir}: no readable run.json under <pair>/<init>/seed<k>/ "
                             f"({sum(map(len, problems.values()))} problems reported above)")
    cells, global_notes = build_cells(runs, problems)
    for cell in cells:
        if (cell.pair, cell.init) in borrowed:
            cell.notes.append("runs from " + ", ".join(sorted(borrowed[cell.pair, cell.init])))
    for cell in cells:
        summarize_cell(cell, epochs)
    ref = {c.pair: c for c in cells if c.init == REFERENCE_INIT}
    compare = {c.pair: c for c in cells if c.init == COMPARE_INIT}
    rows = [cell_row(c, ref.get(c.pair), compare.get(c.pair)) for c in cells]
    experiment = experiment_of(runs_dir)
    rows += all_rows(rows, PAPER_FIGURES.get(experiment))

    notes = global_notes + [m for msgs in problems.values() for m in msgs]
    notes += [f"similarity vs ratio (best over epochs 1..N) for {init}: Pearson r = "
              + ("undefined" if math.isnan(r) else f"{r:.2f}") + f", n = {n} pairs"
              for init, (r, n) in similarity_correlations(rows).items()]
    command = f".venv/bin/python bench/aggregate.py {runs_dir}" + "".join(f" --also {a}" for a in also) \
        + (f" --pairs {' '.join(pairs)}" if pairs else "") + (f" --inits {' '.join(inits)}" if inits else "") \
        + (f" --epochs {epochs}" if epochs else "") + ("" if explicit_out is None else f" --out {explicit_out}")

    from bench.results import formats  # matplotlib only when writing
    from bench.results import plots as plotting

    formats.write_tables(rows, out_dir, experiment=experiment, paper=PAPER_FIGURES.get(experiment), notes=notes,
                         command=command)
    if plots:
        plotting.write_plots(cells, rows, out_dir, paper=PAPER_FIGURES.get(experiment))
    return rows

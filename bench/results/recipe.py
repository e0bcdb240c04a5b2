"""The recipe table: each init fine-tuned with several recipes, the recipe chosen on held-out training images.

An experiment with ``grid.recipes`` (conf/experiment/recipe.yaml) keeps each recipe's runs in a folder laid out
like an experiment's, ``<runs>/<experiment>/<recipe>/<pair>/<init>/seed<k>/`` (:mod:`bench.layout`). Each
recipe folder becomes cells as any experiment does (:mod:`bench.results.cells`: source-free baselines shared
between the pairs of a target, partial and failed runs counted, never averaged in), and then:

- **selection**, per (pair, init): the recipe with the highest *held-out* top-1 (``heldout_top1_bn``: the
  held-out training images of ``data.heldout``, BatchNorm recalibrated; ``heldout_top1`` where runs lack
  the recalibrated value), best over epochs 1..N per seed, then the mean over the seeds averaged in. Best
  over epochs because the reported column is best over epochs too: a user who picks the recipe also keeps
  its best epoch, judged on the same held-out images. The validation images never enter the choice. A tie
  goes to the recipe first in name order;
- **selected vs selected**: per seed, best BN validation top-1 of the init under its selected recipe / that of
  ``random`` under *its* selected recipe (same pair and seed), mean over the paired seeds with the 95% interval
  of :func:`bench.results.stats.interval` (Student's t below 5 seeds);
- **the paper's recipe** beside it: the same ratio with both sides under the reference recipe, the recipe whose
  settings are empty (the experiment's own optim: in experiment=recipe the paper's recipe), or ``reference``.

One row per (pair, init, recipe); the per-(pair, init) columns (``selected_recipe``, ``random_recipe``, the two
ratios) repeat on every row of that (pair, init) so that a row of table.csv reads on its own. Each recipe's
ordinary table and plots go to ``<out>/<recipe>/`` (:func:`bench.results.table.aggregate`).

    from bench.results.recipe import recipe_rows
    rows, notes = recipe_rows(Path("results/runs/recipe"))
    [(r["pair"], r["init"], r["recipe"]) for r in rows if r["selected"]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.errors import AggregateError
from bench.files import atomic_write_text
from bench.layout import recipe_folders
from bench.results.cells import build_cells, cell_row, summarize_cell
from bench.results.columns import REFERENCE_INIT, init_order
from bench.results.formats import fmt_acc, fmt_ratio, to_csv
from bench.results.runs import find_runs
from bench.results.stats import interval, mean_std, per_seed

COLUMNS = [
    "pair", "init", "recipe", "settings", "n", "n_runs", "selected",
    "heldout_top1_mean", "heldout_top1_std", "heldout_metric",
    "best_top1_bn_mean", "best_top1_bn_std", "best_top1_mean", "best_top1_std",
    "final_top1_bn_mean", "init_top1_bn_mean",
    "ratio_same_recipe_bn_mean", "ratio_same_recipe_bn_ci_low", "ratio_same_recipe_bn_ci_high",
    "selected_recipe", "random_recipe",
    "ratio_selected_bn_mean", "ratio_selected_bn_ci_low", "ratio_selected_bn_ci_high", "ratio_selected_bn_seeds",
    "ratio_paper_bn_mean", "ratio_paper_bn_ci_low", "ratio_paper_bn_ci_high", "ratio_paper_bn_seeds",
    "n_ratio_selected", "n_ratio_paper", "interval", "epochs", "note",
]


def _heldout_best(cell, bn: bool) -> dict[int, float]:
    """seed -> best held-out top-1 over epochs 1..N of the runs averaged in that recorded all N epochs of it."""
    out = {}
    for r in cell.used:
        values = r.heldout_top1_bn if bn else r.heldout_top1
        if all(e in values for e in range(1, cell.n_epochs + 1)):
            out[r.seed] = max(values[e] for e in range(1, cell.n_epochs + 1))
    return out


def _best_bn(cell) -> dict[int, float]:
    """seed -> best BN validation top-1 over epochs 1..N (the table's main column)."""
    return {seed: max(curve) for seed, curve in cell.curves(bn=True).items()} if cell.n_epochs else {}


def _settings_text(settings: tuple[str, ...] | None) -> str:
    if settings is None:
        return "?"
    return " ".join(settings) if settings else "the experiment's own settings"


def recipe_rows(experiment_dir: str | Path, epochs: int | None = None,
                reference: str | None = None) -> tuple[list[dict], list[str]]:
    """The rows of the recipe table of ``experiment_dir`` and its notes. AggregateError when it holds no recipe
    folder, or ``reference`` is not one of its recipes."""
    folders = recipe_folders(experiment_dir)
    if not folders:
        raise AggregateError(f"{experiment_dir}: no recipe folders (<recipe>/<pair>/<init>/seed<k>/run.json)")
    notes: list[str] = []
    cells = {}  # (pair, init, recipe) -> cell
    rows = {}  # (pair, init, recipe) -> row
    settings: dict[str, tuple[str, ...] | None] = {}
    for folder in folders:
        recipe = folder.name
        runs, problems = find_runs(folder)
        if not runs:
            notes.append(f"recipe {recipe}: no readable run.json")
            continue
        found = {r.recipe_settings for r in runs if r.recipe == recipe}
        settings[recipe] = found.pop() if len(found) == 1 else None
        if any(r.recipe != recipe for r in runs):
            notes.append(f"recipe {recipe}: {sum(r.recipe != recipe for r in runs)} runs in its folder record "
                         "another recipe (copied by hand?)")
        recipe_cells, recipe_notes = build_cells(runs, problems)
        notes += [f"recipe {recipe}: {n}" for n in recipe_notes]
        for cell in recipe_cells:
            summarize_cell(cell, epochs)
        ref = {c.pair: c for c in recipe_cells if c.init == REFERENCE_INIT}
        for cell in recipe_cells:
            base = cell_row(cell, ref.get(cell.pair))
            row = dict.fromkeys(COLUMNS)
            row.update(pair=cell.pair, init=cell.init, recipe=recipe, settings=_settings_text(settings[recipe]),
                       n=base["n"], n_runs=base["n_runs"], epochs=cell.n_epochs, selected=False,
                       **{k: base[k] for k in ("best_top1_bn_mean", "best_top1_bn_std", "best_top1_mean",
                                               "best_top1_std", "final_top1_bn_mean", "init_top1_bn_mean")},
                       ratio_same_recipe_bn_mean=base["ratio_best_bn_mean"],
                       ratio_same_recipe_bn_ci_low=base["ratio_best_bn_ci_low"],
                       ratio_same_recipe_bn_ci_high=base["ratio_best_bn_ci_high"], note=base["note"] or "")
            bn = _heldout_best(cell, bn=True)
            plain = _heldout_best(cell, bn=False)
            chosen, metric = (bn, "heldout_top1_bn") if bn and len(bn) == len(plain) else (plain, "heldout_top1")
            if chosen:
                row["heldout_top1_mean"], row["heldout_top1_std"] = mean_std(list(chosen.values()))
                row["heldout_metric"] = metric
            rows[cell.pair, cell.init, recipe] = row
            cells[cell.pair, cell.init, recipe] = cell
    if not rows:
        raise AggregateError(f"{experiment_dir}: no readable runs in its recipe folders")

    recipes = sorted({k[2] for k in rows})
    if reference is None:
        empty = [r for r in recipes if settings.get(r) == ()]
        reference = empty[0] if len(empty) == 1 else None
        if reference is None:
            notes.append("no paper's-recipe ratio: " + ("several recipes set nothing (" + ", ".join(empty) + ")"
                         if empty else "no recipe leaves the experiment's optim as it is") + "; say which with "
                         "--reference-recipe")
    elif reference not in recipes:
        raise AggregateError(f"--reference-recipe {reference}: not a recipe here ({', '.join(recipes)})")
    metrics = {r["heldout_metric"] for r in rows.values() if r["heldout_metric"]}
    if len(metrics) > 1:
        notes.append("held-out selection is BatchNorm-recalibrated where every run recorded it, as the protocol "
                     "evaluates elsewhere (see heldout_metric)")

    groups = list(dict.fromkeys((p, i) for p, i, _ in sorted(rows, key=lambda k: (k[0], init_order(k[1]), k[2]))))
    selected: dict[tuple[str, str], str | None] = {}
    for pair, init in groups:
        candidates = [(rows[pair, init, r]["heldout_top1_mean"], r) for r in recipes
                      if (pair, init, r) in rows and rows[pair, init, r]["heldout_top1_mean"] is not None]
        if not candidates:
            selected[pair, init] = None
            continue
        best = max(v for v, _ in candidates)
        selected[pair, init] = min(r for v, r in candidates if v == best)  # a tie: the first recipe by name
        rows[pair, init, selected[pair, init]]["selected"] = True
        ns = {rows[pair, init, r]["n"] for _, r in candidates}
        if len(ns) > 1:
            rows[pair, init, selected[pair, init]]["note"] += (("; " if rows[pair, init, selected[pair, init]]["note"]
                                                                 else "") + "recipes compared over different "
                                                                "numbers of seeds: " + ", ".join(
                f"{r} {rows[pair, init, r]['n']}" for _, r in candidates))

    for pair, init in groups:
        group = [rows[pair, init, r] for r in recipes if (pair, init, r) in rows]
        mine, theirs = selected[pair, init], selected.get((pair, REFERENCE_INIT))
        values: dict[str, object] = {"selected_recipe": mine, "random_recipe": theirs}
        why = []
        if mine is None:
            why.append("no held-out results: nothing to select on")
        elif theirs is None:
            why.append("no selected random recipe for this pair: no ratios")
        else:
            _ratio(values, "ratio_selected_bn", cells[pair, init, mine], cells[pair, REFERENCE_INIT, theirs])
        if reference is not None and (pair, init, reference) in cells and (pair, REFERENCE_INIT, reference) in cells:
            _ratio(values, "ratio_paper_bn", cells[pair, init, reference], cells[pair, REFERENCE_INIT, reference])
        for row in group:
            row.update(values)
            if why:
                row["note"] = "; ".join(filter(None, [row["note"], *why]))
    ordered = [rows[k] for k in sorted(rows, key=lambda k: (groups.index(k[:2]), recipes.index(k[2])))]
    if reference is not None:
        notes.insert(0, f"paper's recipe (the reference): {reference}")
    return ordered, notes


def _ratio(values: dict, name: str, cell, ref) -> None:
    """Paired per-seed ratio of best BN top-1, cell / ref: mean, 95% interval, per-seed values, n."""
    mine, theirs = _best_bn(cell), _best_bn(ref)
    if cell.key is None or ref.key is None or cell.key != ref.key or cell.n_epochs != ref.n_epochs:
        return
    seeds = [s for s in sorted(mine) if s in theirs and theirs[s] > 0]
    ratios = [mine[s] / theirs[s] for s in seeds]
    values[f"{name}_mean"], _ = mean_std(ratios)
    values[f"{name}_ci_low"], values[f"{name}_ci_high"], how = interval(ratios)
    values[f"{name}_seeds"] = per_seed(ratios) or None
    values["n_" + name.removesuffix("_bn")] = len(seeds)
    if how:
        values["interval"] = how


def to_markdown(rows: list[dict], notes: list[str], experiment: str, command: str) -> str:
    """Two tables: every recipe's results (selected marked), then per (pair, init) the two ratios."""
    epochs = {r["epochs"] for r in rows if r["epochs"]}
    n_text = f"N = {epochs.pop()}" if len(epochs) == 1 else "N per row (table.csv)"
    lines = [f"# {experiment}: the fine-tuning recipe chosen per init on held-out training images", "",
             "Held-out: top-1 on training images no run trains on (`data.heldout`), BatchNorm recalibrated, best over "
             f"epochs 1..N ({n_text}), mean ± sample std over seeds: the recipe of each (pair, init) with the "
             "highest one is **selected** (the validation images never enter the choice). Validation: best top-1 "
             "over epochs 1..N, BN / as the protocol evaluates. Ratio: init / random init of the same pair and "
             "seed (best BN top-1), mean [95% interval over the paired seeds: Student's t below 5 seeds]. "
             f"Regenerate: `{command}`; every column is in `table.csv`.", "",
             "| pair | init | recipe | n | held-out top-1 | best top-1, BN | best top-1, protocol | ratio to random, "
             "same recipe (BN) | selected | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in [
            r["pair"], r["init"], f"{r['recipe']} ({r['settings']})", r["n"],
            fmt_acc(r["heldout_top1_mean"], r["heldout_top1_std"]), fmt_acc(r["best_top1_bn_mean"], r["best_top1_bn_std"]),
            fmt_acc(r["best_top1_mean"], r["best_top1_std"]),
            fmt_ratio(r["ratio_same_recipe_bn_mean"], r["ratio_same_recipe_bn_ci_low"], r["ratio_same_recipe_bn_ci_high"]),
            "**selected**" if r["selected"] else "", r["note"] or ""]) + " |")
    lines += ["", "## Each init under its own selected recipe, and under the paper's", "",
              "Selected vs selected: the init under its selected recipe / random init under random's selected "
              "recipe; paper's recipe: both under the reference recipe. Best BN top-1, per seed, mean [95% t "
              "interval] (per-seed values).", "",
              "| pair | init | selected recipe | random's recipe | selected vs selected (BN) | paper's recipe (BN) |",
              "|---|---|---|---|---|---|"]
    seen = set()
    for r in rows:
        if (r["pair"], r["init"]) in seen or r["init"] == REFERENCE_INIT:
            continue
        seen.add((r["pair"], r["init"]))
        lines.append("| " + " | ".join(str(c) for c in [
            r["pair"], r["init"], r["selected_recipe"] or "-", r["random_recipe"] or "-",
            fmt_ratio(r["ratio_selected_bn_mean"], r["ratio_selected_bn_ci_low"], r["ratio_selected_bn_ci_high"])
            + (f" ({r['ratio_selected_bn_seeds']})" if r["ratio_selected_bn_seeds"] else ""),
            fmt_ratio(r["ratio_paper_bn_mean"], r["ratio_paper_bn_ci_low"], r["ratio_paper_bn_ci_high"])
            + (f" ({r['ratio_paper_bn_seeds']})" if r["ratio_paper_bn_seeds"] else "")]) + " |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_plot(rows: list[dict], out_dir: Path) -> Path | None:
    """``recipe_ratios.png``: per (pair, init), the selected-vs-selected ratio beside the paper's-recipe one."""
    shown = [r for r in rows if r["selected"] and r["init"] != REFERENCE_INIT
             and (r["ratio_selected_bn_mean"] is not None or r["ratio_paper_bn_mean"] is not None)]
    # a source-free init (GHN-2) has the same runs in every pair with this target: drawn once
    seen, unique = set(), []
    for r in shown:
        key = (r["init"], r["ratio_selected_bn_seeds"], r["ratio_paper_bn_seeds"]) if r["init"] == "ghn" else id(r)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    shown = unique
    if not shown:
        return None
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dpiat.atomic import atomic_open

    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(shown) + 2.5), 4.0))
    x = np.arange(len(shown))
    for offset, key, label in ((-0.17, "ratio_paper_bn", "both under the paper's recipe"),
                               (0.17, "ratio_selected_bn", "each under its selected recipe")):
        means = [np.nan if r[f"{key}_mean"] is None else r[f"{key}_mean"] for r in shown]
        low = [0 if r[f"{key}_ci_low"] is None else r[f"{key}_mean"] - r[f"{key}_ci_low"] for r in shown]
        high = [0 if r[f"{key}_ci_high"] is None else r[f"{key}_ci_high"] - r[f"{key}_mean"] for r in shown]
        ax.errorbar(x + offset, means, yerr=[low, high], fmt="o", capsize=3, label=label)
    ax.axhline(1.0, color="grey", lw=0.8)
    from bench.results.titles import _conf_pair

    names = {"dpiat": "DPIAT", "ghn": "GHN-2 (no source)", "random": "random"}

    def label(r: dict) -> str:
        if r["init"] == "ghn":
            return names["ghn"]
        title = _conf_pair(r["pair"])[0] or r["pair"]
        return "\n".join(textwrap.wrap(f"{names.get(r['init'], r['init'])}: {title}", 20))

    ax.set_xticks(x, [label(r) for r in shown], fontsize=7)
    ax.set_ylabel("ratio to random init,\nbest top-1 (BN)")
    ax.set_title("Ratio to random init: every init under the paper's recipe, and each under the recipe\n"
                 "chosen on held-out training images (mean over 3 seeds, 95% t interval)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = out_dir / "recipe_ratios.png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path


def write_recipe_tables(experiment_dir: str | Path, out_dir: str | Path, *, epochs: int | None = None,
                        reference: str | None = None, plots: bool = True, command: str = "",
                        experiment: str = "", aggregate=None) -> list[dict]:
    """``table.csv`` / ``table.md`` (and ``recipe_ratios.png``) of the recipe table in ``out_dir``, plus each
    recipe's ordinary table and plots in ``out_dir/<recipe>/`` (made by ``aggregate``, the caller's
    :func:`bench.results.table.aggregate`, passed in so the two modules do not import each other); returns the rows."""
    rows, notes = recipe_rows(experiment_dir, epochs, reference)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in recipe_folders(experiment_dir) if aggregate is not None else ():
        aggregate(folder, out_dir / folder.name, epochs=epochs, plots=plots)
    atomic_write_text(out_dir / "table.csv", to_csv(rows, COLUMNS))
    atomic_write_text(out_dir / "table.md", to_markdown(rows, notes, experiment or Path(experiment_dir).name,
                                                        command or f".venv/bin/python bench/aggregate.py {experiment_dir}"))
    if plots:
        write_plot(rows, out_dir)
    return rows

"""The aggregated experiment's plots, as PNG files (written atomically)::

    from bench.results.plots import write_plots
    write_plots(cells, rows, "results/proxy")     # cells and rows from bench.results.cells

- ``curves.png``: the curves of every pair in one figure, a panel each (two pairs or more).
- ``curves_<pair>.png``: validation top-1 per epoch, one line per init: mean over the seeds averaged into
  the table, band = min..max over those seeds; epoch 0 (hollow marker, dotted) = before training, when
  run.json has ``init_metrics``.
- ``ratios.png``: ratio to random init (best over epochs 1..N) per pair and init, bars with the bootstrap
  95% interval, the mean over pairs (``ALL``), and the paper's figure when it gives one.
- ``similarity_vs_ratio.png``: architecture similarity vs that ratio, one series per source-based init
  with at least 3 pairs, Pearson r and n in the title.

Uses matplotlib's ``Figure`` directly (no pyplot), so it sets no global backend and needs no display.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.results.cells import Cell
from bench.results.columns import ALL, REFERENCE_INIT
from bench.results.stats import similarity_correlations
from dpiat.atomic import atomic_open

PLOT_NAMES = re.compile(r"^(curves|curves_.*|ratios|similarity_vs_ratio)\.png$")  # what this module writes

def save_png(fig: Figure, path: Path) -> None:
    """Save atomically (see :mod:`dpiat.atomic`)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")

def _colors(inits) -> dict[str, str]:
    """One colour per init, the same in every plot."""
    return {init: f"C{i % 10}" for i, init in enumerate(inits)}

def _draw_curves(ax, pair: str, cells: list[Cell], colors: dict[str, str], title: str) -> bool:
    """One pair's curves into ``ax``; False when no cell has a usable run."""
    drawn, has_epoch0, has_bn = False, False, False
    for cell in cells:
        if not cell.used:
            continue
        c = np.array(list(cell.curves().values()))  # seeds x N
        x, mean, color = np.arange(1, c.shape[1] + 1), c.mean(axis=0), colors[cell.init]
        label = f"{cell.init} (n={len(c)}" + (f", shared with {cell.shared_from})" if cell.shared_from else ")")
        ax.plot(x, mean, color=color, marker="o", ms=3, label=label)
        if len(c) > 1 and len(x) > 1:
            ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=color, alpha=0.2, lw=0)
        elif len(c) > 1:  # one epoch: a band would be invisible
            ax.errorbar(x, mean, yerr=[mean - c.min(axis=0), c.max(axis=0) - mean], color=color, capsize=3)
        start = [r.init_top1 for r in cell.used if r.init_top1 is not None]
        if start:  # accuracy before training: a different kind of point, drawn differently
            has_epoch0 = True
            ax.plot([0, 1], [np.mean(start), mean[0]], color=color, ls=":")
            ax.plot([0], [np.mean(start)], color=color, marker="o", mfc="white", ms=6)
        bn = cell.curves(bn=True)
        if bn:  # the BatchNorm-recalibrated evaluation of the same runs: dashed, square markers
            has_bn = True
            mean_bn = np.array(list(bn.values())).mean(axis=0)
            ax.plot(x, mean_bn, color=color, ls="--", marker="s", ms=3)
            start_bn = [r.init_top1_bn for r in cell.used if r.init_top1_bn is not None]
            if start_bn:
                ax.plot([0, 1], [np.mean(start_bn), mean_bn[0]], color=color, ls=":")
                ax.plot([0], [np.mean(start_bn)], color=color, marker="s", mfc="white", ms=6)
        drawn = True
    if not drawn:
        return False
    ax.set_title(title + ("\nsolid: as the protocol evaluates; dashed: BatchNorm recalibrated" if has_bn else ""),
                 fontsize=10)
    ax.set_xlabel("epoch" + (" (0 = before training, hollow marker)" if has_epoch0 else ""))
    ax.set_ylabel("validation top-1")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return True

def plot_curves(pair: str, cells: list[Cell], colors: dict[str, str]) -> Figure | None:
    fig = Figure(figsize=(6.4, 4.2))
    title = f"{pair}: validation top-1, mean over seeds (band: min..max)"
    return fig if _draw_curves(fig.add_subplot(), pair, cells, colors, title) else None

def plot_all_curves(cells: list[Cell], colors: dict[str, str], columns: int = 3) -> Figure | None:
    """Every pair's curves in one figure (a panel per pair, same y range), for a README."""
    pairs = [p for p in dict.fromkeys(c.pair for c in cells) if any(c.used for c in cells if c.pair == p)]
    if len(pairs) < 2:
        return None
    cols = min(columns, len(pairs))
    rows = -(-len(pairs) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for ax, pair in zip(axes, pairs):
        _draw_curves(ax, pair, [c for c in cells if c.pair == pair], colors, pair)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle("validation top-1 per epoch: mean over seeds, band min..max", fontsize=11)
    return fig

def plot_ratios(rows: list[dict], colors: dict[str, str], paper: dict | None) -> Figure | None:
    """Ratio to random init per pair and init, with its interval; a second panel for the BatchNorm-recalibrated
    evaluation when the runs recorded it."""
    panels = [c for c in ("ratio_best", "ratio_best_bn") if any(r[f"{c}_mean"] is not None for r in rows)]
    inits = [i for i in colors if i != REFERENCE_INIT
             and any(r["init"] == i and r["ratio_best_mean"] is not None for r in rows)]
    if not inits:
        return None
    groups = [p for p in dict.fromkeys(r["pair"] for r in rows if r["pair"] != ALL)
              if any(r["pair"] == p and r["init"] in inits and r["ratio_best_mean"] is not None for r in rows)]
    groups.append(ALL)
    lookup = {(r["pair"], r["init"]): r for r in rows}
    fig = Figure(figsize=(max(6.4, 0.9 * len(groups) * max(1, len(inits) / 2)), 4.2 * len(panels)),
                 layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False).ravel()
    epochs = {r["epochs"] for r in rows if r["pair"] != ALL and r["epochs"] is not None}
    n_text = f"1..{epochs.pop()}" if len(epochs) == 1 else "1..N"
    width = 0.8 / len(inits)
    for ax, col in zip(axes, panels):
        for j, init in enumerate(inits):
            bars = [(g - 0.4 + width * (j + 0.5), lookup[pair, init]) for g, pair in enumerate(groups)
                    if (pair, init) in lookup and lookup[pair, init][f"{col}_mean"] is not None]
            ax.bar([x for x, _ in bars], [r[f"{col}_mean"] for _, r in bars], width, color=colors[init],
                   label=init, hatch=[("//" if r["pair"] == ALL else "") for _, r in bars])
            ci = [(x, r) for x, r in bars if r[f"{col}_ci_low"] is not None]
            if ci:
                y = np.array([r[f"{col}_mean"] for _, r in ci])
                lo, hi = (np.array([r[f"{col}_ci_{c}"] for _, r in ci]) for c in ("low", "high"))
                ax.errorbar([x for x, _ in ci], y, yerr=[y - lo, hi - y], fmt="none", ecolor="black", capsize=3)
        ax.axhline(1.0, color="black", lw=0.8, label="random init")
        if paper:
            ax.axhline(paper["value"], color="gray", ls="--",
                       label=f"paper: {paper['value']}x ({paper['init']}, {paper['epochs']} epochs)")
        how = "BatchNorm recalibrated" if col.endswith("_bn") else "as the protocol evaluates"
        ax.set_ylabel(f"ratio to random init\n(best top-1, epochs {n_text})")
        ax.set_title(f"{how}: mean over seeds, 95% interval (t below 5 seeds); ALL (hatched) = mean over pairs",
                     fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1].set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
    return fig


def plot_similarity(rows: list[dict], colors: dict[str, str]) -> Figure | None:
    corr = similarity_correlations(rows)
    if not corr:
        return None
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for init in corr:
        pts = [r for r in rows if r["init"] == init and r["pair"] != ALL
               and r["similarity"] is not None and r["ratio_best_mean"] is not None]
        x, y = [r["similarity"] for r in pts], [r["ratio_best_mean"] for r in pts]
        err = [(r["ratio_best_mean"] - r["ratio_best_ci_low"], r["ratio_best_ci_high"] - r["ratio_best_mean"])
               if r["ratio_best_ci_low"] is not None else (0.0, 0.0) for r in pts]
        ax.errorbar(x, y, yerr=np.array(err).T, fmt="o", color=colors[init], capsize=3, label=init)
        for r in pts:
            ax.annotate(r["pair"], (r["similarity"], r["ratio_best_mean"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    ax.axhline(1.0, color="black", lw=0.8)
    title = "; ".join(f"{i}: Pearson r = " + ("undefined" if np.isnan(r) else f"{r:.2f}") + f", n = {n}"
                      for i, (r, n) in corr.items())
    ax.set_title(f"similarity vs ratio to random ({title})", fontsize=9)
    ax.set_xlabel("architecture similarity (run.json 'similarity')")
    ax.set_ylabel("ratio to random init (best top-1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)

def write_plots(cells: list[Cell], rows: list[dict], out_dir: str | Path, paper: dict | None = None) -> list[Path]:
    """Write every plot there is data for; remove this module's plots from earlier runs that no longer apply."""
    out_dir = Path(out_dir)
    colors = _colors(dict.fromkeys(r["init"] for r in rows if r["pair"] != ALL))
    figures = {}
    for pair in dict.fromkeys(c.pair for c in cells):
        figures[f"curves_{_safe(pair)}.png"] = plot_curves(pair, [c for c in cells if c.pair == pair], colors)
    figures["curves.png"] = plot_all_curves(cells, colors)
    figures["ratios.png"] = plot_ratios(rows, colors, paper)
    figures["similarity_vs_ratio.png"] = plot_similarity(rows, colors)
    written = []
    for name, fig in figures.items():
        if fig is not None:
            save_png(fig, out_dir / name)
            written.append(out_dir / name)
    for old in out_dir.glob("*.png"):  # e.g. the curves of a pair that is gone: stale, and misleading
        if PLOT_NAMES.match(old.name) and old not in written:
            old.unlink()
    return written

"""The horizon's two pictures (written atomically by :func:`write_horizon_plots`):

- ``accuracy_by_epoch.png``: validation top-1 with BatchNorm statistics recalibrated, per epoch, one panel per
  pair, one colour per (init, recipe): the mean over seeds, a band from the lowest to the highest seed, and
  random init's final accuracy R as a dotted line; epochs on a log axis, so that the first epochs, where
  transfers differ most, stay readable beside the last;
- ``ratio_by_epoch.png``: the ratio to random init of the best accuracy so far (BatchNorm recalibrated), one
  panel per pair, the mean over seeds and its 95% t interval as a band (drawn only with two seeds or more), the
  line of no gain at 1; log epoch axis.

Pairs are titled in words (conf/pair/*.yaml ``title``, as run.json recorded it); legends sit outside the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter

from bench.baselines import needs_source
from bench.results.plots import STYLE, save_png
from bench.running.record import RunRecord

LABELS = {"random": "random init", "dpiat": "DPIAT (faithful)", "ghn": "GHN-2 predicted"}
RECIPES = {"paper": "paper's recipe, Adam 4e-3", "adam_lr1e-3": "Adam 1e-3"}


def _free(init: str) -> bool:
    """A source-free init (random, ghn): its runs serve every pair of their target."""
    return needs_source(init) is False


def _label(init: str, recipe: str) -> str:
    return f"{LABELS.get(init, init)}, {RECIPES.get(recipe, recipe)}"


def _log_epochs(ax, last: int) -> None:
    """A log epoch axis labelled with plain epoch numbers (1, 2, 3, 5, 10, ...), not powers of ten."""
    ax.set_xscale("log")
    ax.set_xlim(1, last)
    ticks = [t for t in (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500) if t <= last]
    if last not in ticks:
        ticks.append(last)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("epoch (log scale)")


def _colors(keys) -> dict:
    return {k: f"C{i % 10}" for i, k in enumerate(keys)}


def _titles(runs: list[RunRecord]) -> dict[str, str]:
    out = {}
    for r in runs:
        if r.title and r.source:
            out.setdefault(r.pair, r.title)
    return out


def write_horizon_plots(runs: list[RunRecord], ratio_rows: list[dict], time_rows: list[dict], epochs: int,
                        out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    titles = _titles(runs)
    pairs = list(dict.fromkeys(r["pair"] for r in time_rows))
    keys = list(dict.fromkeys((r["init"], r["recipe"]) for r in time_rows))
    colors = _colors(keys)
    written = []
    if pairs:
        fig = _accuracy(runs, pairs, keys, colors, titles, time_rows, epochs)
        save_png(fig, out_dir / "accuracy_by_epoch.png")
        written.append(out_dir / "accuracy_by_epoch.png")
    if ratio_rows:
        fig = _ratios(ratio_rows, pairs, keys, colors, titles)
        save_png(fig, out_dir / "ratio_by_epoch.png")
        written.append(out_dir / "ratio_by_epoch.png")
    return written


def _curves(runs: list[RunRecord], pair: str, init: str, recipe: str, epochs: int, target: str) -> np.ndarray:
    """seeds x epochs of val_top1_bn for the finished runs of (init, recipe) serving ``pair``."""
    rows = []
    for r in runs:
        if r.init != init or (r.recipe or "-") != recipe or r.status != "finished":
            continue
        if (r.pair != pair) and not (_free(init) and r.target == target):
            continue
        curve = r.curve(epochs, bn=True)
        if curve is not None:
            rows.append(curve)
    return np.array(rows)


def _accuracy(runs, pairs, keys, colors, titles, time_rows, epochs) -> Figure:
    fig = Figure(figsize=(max(6.2 * len(pairs), 9.0), 5.4), layout="constrained")
    axes = fig.subplots(1, len(pairs), sharey=True, squeeze=False)[0]
    targets = {r.pair: r.target for r in runs}
    drawn, ns, banded = set(), {}, False
    for ax, pair in zip(axes, pairs):
        level = next(r["random_final_best_bn"] for r in time_rows if r["pair"] == pair)
        for init, recipe in keys:
            if not any(t["pair"] == pair and t["init"] == init and t["recipe"] == recipe for t in time_rows):
                continue
            c = _curves(runs, pair, init, recipe, epochs, targets[pair])
            if not len(c):
                continue
            x = np.arange(1, c.shape[1] + 1)
            color = colors[(init, recipe)]
            ax.plot(x, c.mean(axis=0), color=color, lw=1.6)
            if len(c) > 1:
                ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=color, alpha=0.18, lw=0)
                banded = True
            drawn.add((init, recipe))
            ns.setdefault((init, recipe), set()).add(len(c))
        ax.axhline(level, color="k", ls=":", lw=1)
        _log_epochs(ax, epochs)
        ax.set_title(titles.get(pair, pair), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation top-1, BatchNorm recalibrated")
    shared = len(pairs) > 1
    handles = [Line2D([], [], color=colors[k], lw=2.5,
                      label=f"{_label(*k)} (n={'/'.join(map(str, sorted(ns[k])))} seeds"
                      + (", the same runs in every panel)" if shared and _free(k[0]) else ")")) for k in keys if k in drawn]
    if banded:
        handles.append(Patch(color=STYLE, alpha=0.25, lw=0, label="band: lowest..highest seed"))
    handles.append(Line2D([], [], color="k", ls=":", lw=1, label="R: random init's final best accuracy\n(mean over seeds)"))
    fig.suptitle(f"Validation top-1 per epoch over {epochs} epochs, mean over seeds", fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize=8)
    return fig


def _ratios(ratio_rows, pairs, keys, colors, titles) -> Figure:
    fig = Figure(figsize=(max(6.2 * len(pairs), 9.0), 5.4), layout="constrained")
    axes = fig.subplots(1, len(pairs), sharey=True, squeeze=False)[0]
    drawn, band = set(), False
    for ax, pair in zip(axes, pairs):
        for init, recipe in keys:
            rows = [r for r in ratio_rows if r["pair"] == pair and r["init"] == init and r["recipe"] == recipe]
            if not rows:
                continue
            x = np.array([r["epoch"] for r in rows])
            color = colors[(init, recipe)]
            ax.plot(x, [r["ratio_bn_mean"] for r in rows], color=color, lw=1.6)
            if all(r["ratio_bn_lo"] is not None for r in rows):
                band = True
                ax.fill_between(x, [r["ratio_bn_lo"] for r in rows], [r["ratio_bn_hi"] for r in rows], color=color,
                                alpha=0.18, lw=0)
            drawn.add((init, recipe))
        ax.axhline(1.0, color="k", ls=":", lw=1)
        _log_epochs(ax, max(r["epoch"] for r in ratio_rows))
        ax.set_title(titles.get(pair, pair), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best top-1 so far / random init's\n(BatchNorm recalibrated)")
    handles = [Line2D([], [], color=colors[k], lw=2.5, label=_label(*k)) for k in keys if k in drawn]
    if band:
        handles.append(Patch(color=STYLE, alpha=0.25, lw=0, label="band: 95% t interval over seeds\n(paired by seed)"))
    handles.append(Line2D([], [], color="k", ls=":", lw=1, label="1: no gain over random init"))
    fig.suptitle("Ratio to random init of the best accuracy so far, mean over seeds", fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize=8)
    return fig

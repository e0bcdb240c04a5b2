"""The aggregated experiment's plots, as PNG files (written atomically)::

    from bench.results.plots import write_plots
    write_plots(cells, rows, "results/proxy")     # cells and rows from bench.results.cells

- ``curves.png``: the curves of every pair in one figure, a panel each (two pairs or more).
- ``curves_<pair>.png``: validation top-1 per epoch, one colour per init: mean over the seeds averaged into
  the table, shaded band = min..max over those seeds; solid line and filled circles as the protocol evaluates,
  dashed line and filled squares with BatchNorm statistics recalibrated; epoch 0 (hollow marker, dotted line to
  epoch 1) = before training, when run.json has ``init_metrics``.
- ``ratios.png``: ratio to random init (best over epochs 1..N) per pair and init, bars with the 95% interval
  over seeds where there is one (two seeds or more), the mean over pairs (hatched), and the paper's figure
  when it gives one.
- ``similarity_vs_ratio.png``: architecture similarity vs that ratio, one series per source-based init with
  at least 3 pairs, Pearson r and n in the legend.

Pairs are titled in words (:mod:`bench.results.titles`); every legend sits outside the data, and says what
each colour, line style, marker, band and whisker means. Uses matplotlib's ``Figure`` directly (no pyplot),
so it sets no global backend and needs no display.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bench.results.cells import Cell
from bench.results.columns import ALL, REFERENCE_INIT
from bench.results.stats import similarity_correlations
from bench.results.titles import pair_titles
from dpiat.atomic import atomic_open

PLOT_NAMES = re.compile(r"^(curves|curves_.*|ratios|similarity_vs_ratio)\.png$")  # what this module writes
STYLE = "0.35"  # the grey of legend entries that explain a line style or marker, not a colour
MAX_LEGEND_IN_PANEL = 14  # legend entries that fit in an empty panel of curves.png; more go below the panels
SLANT_ABOVE = 8  # ratios.png with more pairs than this: narrower groups, slanted names, legend above


def save_png(fig: Figure, path: Path) -> None:
    """Save atomically (see :mod:`dpiat.atomic`)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


def _colors(inits) -> dict[str, str]:
    """One colour per init, the same in every plot."""
    return {init: f"C{i % 10}" for i, init in enumerate(inits)}


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)) or text


# --------------------------------------------------------------------------------------------------- curves


def _draw_curves(ax, cells: list[Cell], colors: dict[str, str]) -> dict | None:
    """One pair's curves into ``ax``; what was drawn (for the legend), or None when no cell has a usable run."""
    seen = {"inits": {}, "epoch0": False, "bn": False, "band": False, "errorbar": False}
    for cell in cells:
        if not cell.used:
            continue
        c = np.array(list(cell.curves().values()))  # seeds x N
        x, mean, color = np.arange(1, c.shape[1] + 1), c.mean(axis=0), colors[cell.init]
        seen["inits"][cell.init] = (len(c), cell.shared_from)
        ax.plot(x, mean, color=color, marker="o", ms=3)
        if len(c) > 1 and len(x) > 1:
            seen["band"] = True
            ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=color, alpha=0.2, lw=0)
        elif len(c) > 1:  # one epoch: a band would be invisible
            seen["errorbar"] = True
            ax.errorbar(x, mean, yerr=[mean - c.min(axis=0), c.max(axis=0) - mean], color=color, capsize=3)
        start = [r.init_top1 for r in cell.used if r.init_top1 is not None]
        if start:  # accuracy before training: a different kind of point, drawn differently
            seen["epoch0"] = True
            ax.plot([0, 1], [np.mean(start), mean[0]], color=color, ls=":")
            ax.plot([0], [np.mean(start)], color=color, marker="o", mfc="white", ms=6)
        bn = cell.curves(bn=True)
        if bn:  # the BatchNorm-recalibrated evaluation of the same runs: dashed, square markers
            seen["bn"] = True
            mean_bn = np.array(list(bn.values())).mean(axis=0)
            ax.plot(x, mean_bn, color=color, ls="--", marker="s", ms=3)
            start_bn = [r.init_top1_bn for r in cell.used if r.init_top1_bn is not None]
            if start_bn:
                ax.plot([0, 1], [np.mean(start_bn), mean_bn[0]], color=color, ls=":")
                ax.plot([0], [np.mean(start_bn)], color=color, marker="s", mfc="white", ms=6)
    if not seen["inits"]:
        return None
    ax.set_xlabel("epoch" + (" (0 = before training)" if seen["epoch0"] else ""))
    ax.set_ylabel("validation top-1")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    return seen


def _curve_legend(drawn: list[dict], colors: dict[str, str]) -> list:
    """Legend handles: a colour per init (with its seeds), then what each line style, marker and band means."""
    handles = []
    for init in colors:
        found = [d["inits"][init] for d in drawn if init in d["inits"]]
        if not found:
            continue
        ns = sorted({n for n, _ in found})
        text = f"{init} (n={ns[0]}" if len(ns) == 1 else f"{init} (n={ns[0]}-{ns[-1]}"
        text += " seeds" + (", source-free: shared by all pairs)" if any(shared for _, shared in found) else ")")
        handles.append(Line2D([], [], color=colors[init], lw=2.5, label=text))
    any_bn = any(d["bn"] for d in drawn)
    handles.append(Line2D([], [], color=STYLE, marker="o", ms=4, label="solid, filled circle: as the protocol "
                          "evaluates" + (" (running statistics)" if any_bn else "")))
    if any_bn:
        handles.append(Line2D([], [], color=STYLE, ls="--", marker="s", ms=4,
                              label="dashed, filled square: BatchNorm statistics recalibrated"))
    if any(d["epoch0"] for d in drawn):
        both = any(d["bn"] for d in drawn)
        handles.append(Line2D([], [], color=STYLE, ls=":", marker="o", mfc="white", ms=6,
                              label="hollow " + ("circle / square" if both else "marker")
                              + ": before training (epoch 0), dotted to epoch 1"))
    if any(d["band"] for d in drawn):
        handles.append(Patch(color=STYLE, alpha=0.25, lw=0, label="band: min..max over seeds (solid line)"))
    if any(d["errorbar"] for d in drawn):
        handles.append(Line2D([], [], color=STYLE, marker="|", ms=10, ls="none",
                              label="whisker: min..max over seeds (solid line)"))
    return handles


def plot_curves(pair: str, cells: list[Cell], colors: dict[str, str], title: str | None = None) -> Figure | None:
    """One pair's curves, its legend on the right of the axes."""
    fig = Figure(figsize=(9.6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    drawn = _draw_curves(ax, cells, colors)
    if drawn is None:
        return None
    ax.set_title(f"{title or pair}\nvalidation top-1 per epoch, mean over seeds", fontsize=10)
    fig.legend(handles=_curve_legend([drawn], colors), loc="outside right upper", fontsize=8)
    return fig


def plot_all_curves(cells: list[Cell], colors: dict[str, str], titles: dict[str, str] | None = None,
                    columns: int = 3) -> Figure | None:
    """Every pair's curves in one figure (a panel per pair, same y range), for a README; one legend, in an
    empty panel when there is one and it fits, else below the panels."""
    titles = titles or {}
    pairs = [p for p in dict.fromkeys(c.pair for c in cells) if any(c.used for c in cells if c.pair == p)]
    if len(pairs) < 2:
        return None
    cols = min(columns, len(pairs))
    rows = -(-len(pairs) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    drawn = []
    for ax, pair in zip(axes, pairs):
        drawn.append(_draw_curves(ax, [c for c in cells if c.pair == pair], colors))
        ax.set_title(_wrap(titles.get(pair, pair), 48), fontsize=10)
    handles = _curve_legend(drawn, colors)
    spare = axes[len(pairs):]
    for ax in spare:
        ax.axis("off")
    if len(spare) and len(handles) <= MAX_LEGEND_IN_PANEL:
        spare[0].legend(handles=handles, loc="center", fontsize=8, frameon=False,
                        title="colour: init; line and marker: evaluation", title_fontsize=8)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle("Validation top-1 per epoch, mean over seeds, one panel per source -> target pair", fontsize=11)
    return fig


# --------------------------------------------------------------------------------------------------- ratios


def _interval_text(rows: list[dict]) -> str:
    kinds = {r["interval"] for r in rows if r.get("interval")}
    if kinds == {"bootstrap"}:
        return "percentile bootstrap"
    return "Student's t" if kinds <= {"t"} else "Student's t below 5 seeds, bootstrap from 5"


def plot_ratios(rows: list[dict], colors: dict[str, str], paper: dict | None,
                titles: dict[str, str] | None = None) -> Figure | None:
    """Ratio to random init per pair and init, with its 95% interval where one exists (two seeds or more); a
    second panel for the BatchNorm-recalibrated evaluation when the runs recorded it."""
    titles = titles or {}
    panels = [c for c in ("ratio_best", "ratio_best_bn") if any(r[f"{c}_mean"] is not None for r in rows)]
    inits = [i for i in colors if i != REFERENCE_INIT
             and any(r["init"] == i and r["ratio_best_mean"] is not None for r in rows)]
    if not inits:
        return None
    groups = [p for p in dict.fromkeys(r["pair"] for r in rows if r["pair"] != ALL)
              if any(r["pair"] == p and r["init"] in inits and r["ratio_best_mean"] is not None for r in rows)]
    groups.append(ALL)
    lookup = {(r["pair"], r["init"]): r for r in rows}
    slanted = len(groups) > SLANT_ABOVE  # many pairs: narrower groups, names slanted so that none overlaps
    per_group = max(0.6 if slanted else 1.3, 0.3 * len(inits))  # inches
    fig = Figure(figsize=(max(6.4, per_group * len(groups)) + (0 if slanted else 3.2), 3.6 * len(panels) + 0.8),
                 layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False).ravel()
    epochs = {r["epochs"] for r in rows if r["pair"] != ALL and r["epochs"] is not None}
    n_text = f"1..{epochs.pop()}" if len(epochs) == 1 else "1..N"
    width = 0.8 / len(inits)
    whiskers, bare = [], False  # rows drawn with an interval; a pair's bar drawn without one (one seed)
    for ax, col in zip(axes, panels):
        for j, init in enumerate(inits):
            bars = [(g - 0.4 + width * (j + 0.5), lookup[pair, init]) for g, pair in enumerate(groups)
                    if (pair, init) in lookup and lookup[pair, init][f"{col}_mean"] is not None]
            ax.bar([x for x, _ in bars], [r[f"{col}_mean"] for _, r in bars], width, color=colors[init],
                   hatch=[("//" if r["pair"] == ALL else "") for _, r in bars])
            ci = [(x, r) for x, r in bars if r[f"{col}_ci_low"] is not None]
            bare |= any(r[f"{col}_ci_low"] is None and r["pair"] != ALL for _, r in bars)
            if ci:  # only where an interval exists: one seed has none, and none is pretended
                whiskers += [r for _, r in ci]
                y = np.array([r[f"{col}_mean"] for _, r in ci])
                lo, hi = (np.array([r[f"{col}_ci_{c}"] for _, r in ci]) for c in ("low", "high"))
                ax.errorbar([x for x, _ in ci], y, yerr=[y - lo, hi - y], fmt="none", ecolor="black", capsize=3)
        ax.axhline(1.0, color="black", lw=0.8)
        if paper:
            ax.axhline(paper["value"], color="gray", ls="--")
        how = "BatchNorm statistics recalibrated" if col.endswith("_bn") else "as the protocol evaluates"
        ax.set_ylabel(f"ratio to random init\n(best top-1, epochs {n_text})")
        ax.set_title(("Ratio to random init of the same seed, mean over seeds\n" if ax is axes[0] else "") + how,
                     fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if slanted:  # one line each, slanted, ending under its bars
        axes[-1].set_xticks(range(len(groups)), [titles.get(g, g) for g in groups], fontsize=8.5, rotation=35,
                            ha="right", rotation_mode="anchor")
    else:
        wrap = max(12, int(per_group * 11))
        axes[-1].set_xticks(range(len(groups)), [_wrap(titles.get(g, g), wrap) for g in groups], fontsize=8)
    handles = [Patch(color=colors[i], label=i) for i in inits]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                         label="hatched: mean over pairs (no interval)"))
    handles.append(Line2D([], [], color="black", lw=0.8, label="1 = random init"))
    if paper:
        handles.append(Line2D([], [], color="gray", ls="--",
                              label=f"paper: {paper['value']}x ({paper['init']}, {paper['epochs']} epochs)"))
    if whiskers:
        handles.append(Line2D([], [], color="black", marker="_", ms=8, ls="-",
                              label=f"whisker: 95% interval over seeds ({_interval_text(whiskers)})"))
    if bare:
        handles.append(Patch(facecolor="none", edgecolor="none", label="no whisker: one seed, no interval"))
    if slanted:  # a wide figure: the legend in rows above the panels, at the size of the axis labels
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 3), fontsize=10)
    else:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------ similarity


def _dodged(points: list[dict], span: float) -> bool:
    """Sort ``points`` by similarity and give those of (nearly) the same similarity side-by-side x positions
    (``x``) and a common ``cluster`` number, so that none hides another; True when any were moved."""
    tol, step = 0.02 * span, 0.018 * span
    points.sort(key=lambda p: p["similarity"])
    clusters: list[list[dict]] = []
    for p in points:
        if clusters and p["similarity"] - clusters[-1][0]["similarity"] <= tol:
            clusters[-1].append(p)
        else:
            clusters.append([p])
    for c, cluster in enumerate(clusters):
        centre = float(np.mean([q["similarity"] for q in cluster]))
        for k, q in enumerate(sorted(cluster, key=lambda q: (q["pair"], q["order"]))):
            q["x"], q["cluster"] = centre + (k - (len(cluster) - 1) / 2) * step, c
    return any(len(c) > 1 for c in clusters)


def plot_similarity(rows: list[dict], colors: dict[str, str], titles: dict[str, str] | None = None) -> Figure | None:
    """Similarity vs ratio to random, one series per init; points of equal similarity side by side, each pair
    numbered beside its points, the numbers keyed in the legend (title and similarity)."""
    titles = titles or {}
    corr = similarity_correlations(rows)
    if not corr:
        return None
    points = [dict(r, order=k) for k, init in enumerate(corr) for r in rows
              if r["init"] == init and r["pair"] != ALL
              and r["similarity"] is not None and r["ratio_best_mean"] is not None]
    sims = [p["similarity"] for p in points]
    span = max(max(sims) - min(sims), 0.2)
    moved = _dodged(points, span)
    fig = Figure(figsize=(10.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    whiskers, bare = [], False
    for init, (r, n) in corr.items():
        pts = [p for p in points if p["init"] == init]
        label = f"{init}: Pearson r = " + ("undefined" if np.isnan(r) else f"{r:.2f}") + f", n = {n}"
        ax.plot([p["x"] for p in pts], [p["ratio_best_mean"] for p in pts], "o", color=colors[init], ms=5,
                gid="points", label=label)
        ci = [p for p in pts if p["ratio_best_ci_low"] is not None]  # whiskers only where an interval exists
        bare |= len(ci) < len(pts)
        if ci:
            whiskers += ci
            ax.errorbar([p["x"] for p in ci], [p["ratio_best_mean"] for p in ci], fmt="none", ecolor=colors[init],
                        capsize=3, yerr=[[p["ratio_best_mean"] - p["ratio_best_ci_low"] for p in ci],
                                         [p["ratio_best_ci_high"] - p["ratio_best_mean"] for p in ci]])
    ax.axhline(1.0, color="black", lw=0.8)
    lo, hi = min(sims), max(sims)
    ax.set_xlim(lo - 0.12 * span, hi + 0.12 * span)
    ax.set_xlabel("architecture similarity of source and target (dpiat.similarity)")
    ax.set_ylabel("ratio to random init\n(best top-1, mean over seeds)")
    ax.grid(alpha=0.3)
    # each pair gets a number beside its points (outside its side-by-side cluster), keyed in the legend
    y0, y1 = ax.get_ylim()
    keys = []
    for k, pair in enumerate(dict.fromkeys(p["pair"] for p in points), 1):
        mine = [p for p in points if p["pair"] == pair]
        sim = mine[0]["similarity"]
        cluster = [p for p in points if p["cluster"] == mine[0]["cluster"]]
        centre = float(np.mean([p["x"] for p in cluster]))
        mean_x = float(np.mean([p["x"] for p in mine]))
        left = len(cluster) > len(mine) and mean_x < centre  # the left pair of a shared cluster
        x = min(p["x"] for p in cluster) if left else max(p["x"] for p in cluster)
        y = float(np.mean([p["ratio_best_mean"] for p in mine]))
        ax.annotate(str(k), (x, y), xytext=(-7 if left else 7, 0), textcoords="offset points", fontsize=8,
                    fontweight="bold", ha="right" if left else "left", va="center")
        keys.append(f"{k}: {titles.get(pair, pair)}, similarity {sim:.3f}")
    ax.set_ylim(y0, y1)
    handles, _ = ax.get_legend_handles_labels()
    handles = list(handles)
    if whiskers:
        handles.append(Line2D([], [], color=STYLE, marker="_", ms=8,
                              label=f"whisker: 95% interval over seeds ({_interval_text(whiskers)})"))
    if bare:
        handles.append(Patch(facecolor="none", edgecolor="none", label="no whisker: one seed, no interval"))
    if moved:
        handles.append(Patch(facecolor="none", edgecolor="none",
                             label="points of about equal similarity are drawn side by side"))
    handles += [Patch(facecolor="none", edgecolor="none", label=key) for key in keys]
    ax.set_title("Does architecture similarity predict the gain over random init?", fontsize=10)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------------- files


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def write_plots(cells: list[Cell], rows: list[dict], out_dir: str | Path, paper: dict | None = None) -> list[Path]:
    """Write every plot there is data for; remove this module's plots from earlier runs that no longer apply."""
    out_dir = Path(out_dir)
    colors = _colors(dict.fromkeys(r["init"] for r in rows if r["pair"] != ALL))
    titles = pair_titles(cells)
    figures = {}
    for pair in dict.fromkeys(c.pair for c in cells):
        figures[f"curves_{_safe(pair)}.png"] = plot_curves(pair, [c for c in cells if c.pair == pair], colors,
                                                           titles.get(pair))
    figures["curves.png"] = plot_all_curves(cells, colors, titles)
    figures["ratios.png"] = plot_ratios(rows, colors, paper, titles)
    figures["similarity_vs_ratio.png"] = plot_similarity(rows, colors, titles)
    written = []
    for name, fig in figures.items():
        if fig is not None:
            save_png(fig, out_dir / name)
            written.append(out_dir / name)
    for old in out_dir.glob("*.png"):  # e.g. the curves of a pair that is gone: stale, and misleading
        if PLOT_NAMES.match(old.name) and old not in written:
            old.unlink()
    return written

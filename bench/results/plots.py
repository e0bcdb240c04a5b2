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
  at least 3 pairs, Pearson r and n in the legend; each pair numbered beside its points (the key in the
  legend), numbers that would collide moved apart, a moved one with a grey leader line to its point.

Pairs are titled in words (:mod:`bench.results.titles`); every legend sits outside the data, and says what
each colour, line style, marker, band and whisker means. Uses matplotlib's ``Figure`` directly (no pyplot),
so it sets no global backend and needs no display.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
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

NUMBER_GAP = 7  # points from a point's centre to the near edge of its number, where a number first sits
NUMBER_PAD = 1.5  # pixels kept clear around each number: no two numbers touch
LEADER = dict(arrowstyle="-", color="0.6", lw=0.6, shrinkA=0, shrinkB=3.5)  # a moved number -> its point


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


def _overlaps(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """How many of ``others`` (m x 4: x0, y0, x1, y1) each of ``boxes`` (n x 4) overlaps: (n,)."""
    if not len(others):
        return np.zeros(len(boxes))
    return ((boxes[:, None, 0] < others[None, :, 2]) & (others[None, :, 0] < boxes[:, None, 2])
            & (boxes[:, None, 1] < others[None, :, 3]) & (others[None, :, 1] < boxes[:, None, 3])).sum(axis=1)


def _crossed(starts: np.ndarray, ends: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Segments starts[i] -> ends[i] (n x 2) and boxes (m x 4): (n, m), True where segment i passes through
    box j (the slab test: the segment's stretches inside the box's x and y ranges overlap)."""
    d = (ends - starts)[:, None, :]
    lo, hi = boxes[None, :, :2], boxes[None, :, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - starts[:, None, :]) / d, (hi - starts[:, None, :]) / d
    inside = (starts[:, None, :] > lo) & (starts[:, None, :] < hi)  # where d is 0: always or never in the slab
    enter = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2)).max(axis=2)
    leave = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2)).min(axis=2)
    return np.maximum(enter, 0.0) < np.minimum(leave, 1.0)


def _intersect(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Segments a0[i] -> a1[i] (n x 2) and b0[j] -> b1[j] (m x 2): (n, m), True where they cross."""
    def side(p, q, r):  # sign of the turn p -> q -> r
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1])
                       - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))
    p, q, r, s = a0[:, None], a1[:, None], b0[None], b1[None]
    return (side(p, q, r) * side(p, q, s) < 0) & (side(r, s, p) * side(r, s, q) < 0)


def _place_numbers(fig: Figure, ax, labels: list[dict], markers: list, whiskers: list) -> None:
    """Write each pair's number beside its points where it overlaps no other number and, where it can, covers
    no marker or whisker; a number moved away from its points gets a thin grey leader line to the nearest.

    ``labels``: ``text``, ``own`` (the pair's points, data x, y) and ``cluster`` (the data x range of the
    side-by-side points it belongs to); ``markers``: data x, y of every point; ``whiskers``: data x, low, high.
    Measured in display space after the constrained layout (the axes' limits must be final). The places tried,
    for each number in turn: level with the mean of its points, right of them, left of them, and beyond the
    edges of their side-by-side cluster, each shifted up or down pixel by pixel; the cheapest place that
    overlaps no number already placed and stays inside the axes wins. Cost: the distance moved, the other
    side, a leader, each marker or whisker covered, each marker, whisker, number or leader its leader crosses,
    and a leader it sits on. Then every number is placed again given all the others, until none moves (a
    number with no free place at all, which takes more numbers than the axes hold, keeps its first place).
    Deterministic: no randomness, the same figure every time. Offsets are kept in points, so any dpi draws
    the same picture; a white outline keeps a number legible where it must cross a line.
    """
    canvas = FigureCanvasAgg(fig)
    texts = [ax.text(0.5, 0.5, lab["text"], fontsize=8, fontweight="bold", transform=ax.transAxes, in_layout=False)
             for lab in labels]
    canvas.draw()  # the layout engine places the axes; each number's size as drawn
    renderer = canvas.get_renderer()
    sizes = [(e.width, e.height) for e in (t.get_window_extent(renderer) for t in texts)]
    for t in texts:
        t.remove()
    to_px, px_per_pt = ax.transData.transform, fig.dpi / 72
    frame = ax.get_window_extent(renderer)
    clear = 1.0 * px_per_pt  # kept between a number and a marker or whisker it is not to cover
    dot = 3.0 * px_per_pt + clear  # marker radius (ms=5) and its edge
    cap, stem = 3.0 * px_per_pt + clear, 0.75 * px_per_pt + clear  # capsize; half a whisker's line width
    centres = to_px(np.array(markers, dtype=float).reshape(-1, 2))
    dots = np.column_stack([centres - dot, centres + dot])
    bars = []
    for x, lo, hi in whiskers:
        (xp, yl), (_, yh) = to_px([(x, lo), (x, hi)])
        bars += [(xp - stem, yl, xp + stem, yh), (xp - cap, yl - stem, xp + cap, yl + stem),
                 (xp - cap, yh - stem, xp + cap, yh + stem)]
    bars = np.array(bars, dtype=float).reshape(-1, 4)
    gap = NUMBER_GAP * px_per_pt
    steps = np.arange(1.0, frame.height)
    shifts = np.concatenate([[0.0], np.column_stack([steps, -steps]).ravel()])  # 0, 1, -1, 2, -2, ... pixels

    options = []  # per number: each place's box, leader (centre -> nearest own point), moved, own cost
    for lab, (w, h) in zip(labels, sizes):
        own = to_px(np.array(lab["own"], dtype=float).reshape(-1, 2))
        y, left, right = float(own[:, 1].mean()), float(own[:, 0].min()), float(own[:, 0].max())
        c0, c1 = (float(to_px([(c, 0.0)])[0, 0]) for c in lab["cluster"])
        columns = [(right + gap + w / 2, right, False), (left - gap - w / 2, left, False)]
        if c1 > right + 0.5:
            columns.append((c1 + gap + w / 2, right, True))
        if c0 < left - 0.5:
            columns.append((c0 - gap - w / 2, left, True))
        n = len(shifts)
        cx = np.repeat([c[0] for c in columns], n)
        cy = y + np.tile(shifts, len(columns))
        far = np.repeat([c[2] for c in columns], n)
        boxes = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        start = np.column_stack([cx, cy])
        end = own[np.argmin(((start[:, None, :] - own[None, :, :]) ** 2).sum(axis=2), axis=1)]
        moved = far | (np.abs(cy - y) > h / 2 - 1)  # no longer level with its points, or past other points
        edge = np.repeat([c[1] for c in columns], n)  # the x of its own points' edge on that side
        cost = (0.25 * np.abs(cy - y) + 0.05 * np.abs(cx - edge)
                + 1.0 * (np.repeat(np.arange(len(columns)), n) % 2) + 6.0 * moved
                + 40.0 * _overlaps(boxes, dots) + 5.0 * _overlaps(boxes, bars))
        out = ((boxes[:, 0] < frame.x0 + 2) | (boxes[:, 2] > frame.x1 - 2)
               | (boxes[:, 1] < frame.y0 + 2) | (boxes[:, 3] > frame.y1 - 2))
        cost[out] = np.inf  # nothing cut off
        others = np.array([d for d, c in zip(dots, centres) if not np.isclose(own, c).all(axis=1).any()])
        beside = np.column_stack([edge, np.full(len(edge), y)])
        options.append(dict(boxes=boxes, start=start, end=end, beside=beside, moved=moved, cost=cost,
                            others=others.reshape(-1, 4)))

    pad = np.array([-NUMBER_PAD, -NUMBER_PAD, NUMBER_PAD, NUMBER_PAD])

    def crossings(o: dict, idx: np.ndarray, placed: np.ndarray, lines: tuple) -> np.ndarray:
        """The cost of what the places idx cross, given the numbers placed (padded boxes) and their leaders."""
        cost = np.zeros(len(idx))
        m = o["moved"][idx]
        start, end = o["start"][idx][m], o["end"][idx][m]
        if m.any():  # its leader over other markers, across whiskers, through numbers, across their leaders
            for boxes, weight in ((o["others"], 5.0), (bars, 1.0), (placed, 30.0)):
                if len(boxes):
                    cost[m] += weight * _crossed(start, end, boxes).sum(axis=1)
            if len(lines[0]):
                cost[m] += 15.0 * _intersect(start, end, *lines).sum(axis=1)
        if len(lines[0]):  # it sits on another number's leader
            cost += 10.0 * _crossed(*lines, o["boxes"][idx]).sum(axis=0)
        return cost

    def best_place(i: int, chosen: dict[int, int]) -> tuple[int, float, float]:
        """Number i's cheapest place given the others: (place, its cost, the cost of where it is now). The
        crossings are counted only for the places whose other costs could still win, cheapest first."""
        o, cost = options[i], options[i]["cost"].copy()
        rest = [(options[j], c) for j, c in chosen.items() if j != i]
        placed = np.array([q["boxes"][c] for q, c in rest]).reshape(-1, 4) + pad
        lines = tuple(np.array([q[k][c] for q, c in rest if q["moved"][c]]).reshape(-1, 2) for k in ("start", "end"))
        cost[_overlaps(o["boxes"], placed) > 0] = np.inf  # numbers never overlap
        order = np.argsort(cost, kind="stable")
        best, best_cost = int(order[0]), np.inf
        for k in range(0, len(order), 256):
            idx = order[k:k + 256]
            if not cost[idx[0]] < best_cost:
                break
            full = cost[idx] + crossings(o, idx, placed, lines)
            if full.min() < best_cost:
                best, best_cost = int(idx[np.argmin(full)]), float(full.min())
        now = float(cost[chosen[i]] + crossings(o, np.array([chosen[i]]), placed, lines)[0]) if i in chosen else np.inf
        return best, best_cost, now

    chosen: dict[int, int] = {}
    for i in range(len(labels)):
        chosen[i] = best_place(i, chosen)[0]
    for _ in range(10):  # again, each given all the others, until none moves
        changed = False
        for i in range(len(labels)):
            best, cost, now = best_place(i, chosen)
            if cost < now - 1e-9:
                chosen[i], changed = best, True
        if not changed:
            break

    to_data = ax.transData.inverted().transform
    for i, lab in enumerate(labels):
        o, c = options[i], chosen[i]
        moved = bool(o["moved"][c])
        # a moved number points at its nearest point; one level with its points sits beside their edge
        target = o["end"][c] if moved else o["beside"][c]
        offset = (o["start"][c] - target) / px_per_pt  # points, so that any dpi gives the same picture
        text = ax.annotate(lab["text"], tuple(to_data([target])[0]), xytext=tuple(offset), textcoords="offset points",
                           fontsize=8, fontweight="bold", ha="center", va="center",
                           arrowprops=dict(LEADER) if moved else None,
                           path_effects=[patheffects.withStroke(linewidth=1.5, foreground="white")])
        text.set_gid("number")
        text.set_in_layout(False)  # inside the axes: the layout measured above stays


def plot_similarity(rows: list[dict], colors: dict[str, str], titles: dict[str, str] | None = None) -> Figure | None:
    """Similarity vs ratio to random, one series per init; points of equal similarity side by side, each pair
    numbered, the numbers keyed in the legend (title and similarity).

    A number sits beside its points, level with them, on the right (else the left) where that is free. Once
    the layout is final, the numbers are placed in display space (:func:`_place_numbers`): no two overlap,
    none leaves the axes, and where it is cheap none covers a marker or whisker; a number that had to move
    up or down, or past the other points of its side-by-side cluster, is joined to its nearest point by a
    thin grey leader line. Deterministic, so the same rows give the same PNG."""
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
    ax.set_ylim(ax.get_ylim())  # final before the numbers are placed in display space
    # each pair gets a number beside its points, keyed in the legend; placed once the layout is final
    keys, labels = [], []
    for k, pair in enumerate(dict.fromkeys(p["pair"] for p in points), 1):
        mine = [p for p in points if p["pair"] == pair]
        cluster = [p["x"] for p in points if p["cluster"] == mine[0]["cluster"]]
        labels.append(dict(text=str(k), own=[(p["x"], p["ratio_best_mean"]) for p in mine],
                           cluster=(min(cluster), max(cluster))))
        keys.append(f"{k}: {titles.get(pair, pair)}, similarity {mine[0]['similarity']:.3f}")
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
    _place_numbers(fig, ax, labels, [(p["x"], p["ratio_best_mean"]) for p in points],
                   [(p["x"], p["ratio_best_ci_low"], p["ratio_best_ci_high"]) for p in whiskers])
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

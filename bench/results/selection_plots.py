"""Pictures of source selection (bench/selection.py): each predictor against the measured gain, coloured by
target; the authors' pairs the same way; and DPIAT's similarity over every pair of the grid's models."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.results.plots import save_png  # noqa: E402

PANELS = (("similarity", "DPIAT similarity"), ("overwritten", "fraction of target parameters overwritten"),
          ("transfer_top1", "transferred top-1, BN recomputed (256 images)"),
          ("probe_top1", "linear-probe top-1 on transferred features"),
          ("source_top1", "source's own top-1"), ("combined", "ridge combination (leave one target out)"))


def _scatter_panel(ax, records, x_key, y_key, group, colors, stat):
    for t in colors:
        pts = [(r[x_key], r[y_key]) for r in records if r[group] == t and r.get(x_key) is not None]
        if pts:
            x, y = np.array(pts).T
            ax.scatter(x, y, s=28, color=colors[t], edgecolor="black", linewidth=0.4, label=t, zorder=3)
            best = int(np.argmax(y))
            ax.scatter([x[best]], [y[best]], s=110, facecolor="none", edgecolor=colors[t], linewidth=1.4, zorder=2)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":", zorder=1)
    ys = [r[y_key] for r in records if r.get(x_key) is not None]
    if ys:  # headroom above the points for the statistics box, so it covers none of them
        lo, hi = min(ys + [1.0]), max(ys + [1.0])
        ax.set_ylim(lo - 0.05 * (hi - lo or 1), hi + 0.35 * (hi - lo or 1))
    if stat:
        m, iv = stat.get("within_target_spearman_mean"), stat.get("within_target_interval")
        text = f"within-target Spearman {m:+.2f}" if m is not None else "within-target Spearman -"
        if iv:
            text += f" [{iv[0]:+.2f}, {iv[1]:+.2f}]"
        text += f"\ntop-1 hits {stat['top1_hits']:.1f} of {stat['targets']}"
        ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=7.5,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5})
    ax.grid(alpha=0.25)


def plot_scatter(records: list[dict], summary: dict, path: Path, ref_records: list[dict]) -> Path | None:
    """One panel per predictor (ours) plus the authors' similarity panel (``ref_records``: their pairs as
    bench.selection.read_reference gives them); gain = ratio to random init."""
    grid = summary.get("grid")
    ref = summary.get("reference")
    panels = [p for p in PANELS if grid and any(r.get(p[0] if p[0] != "combined" else "combined_last") is not None
                                                for r in records)]
    n = len(panels) + 1
    cols = 4 if n > 4 else n
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows + 0.9), squeeze=False)
    cmap = plt.get_cmap("tab10")
    targets = list(dict.fromkeys(r["target"] for r in records))
    colors = {t: cmap(i % 10) for i, t in enumerate(targets)}
    for ax, (key, label) in zip(axes.flat, panels):
        x_key = "combined_last" if key == "combined" else key
        _scatter_panel(ax, records, x_key, "gain_last", "target", colors, grid["predictors"].get(key))
        ax.set_xlabel(label, fontsize=8.5)
        ax.set_ylabel("gain: ratio to random, last epoch (BN)", fontsize=8)
        ax.set_title(f"Ours: {label}", fontsize=9)
    # the authors' pairs, grouped by student
    students = list(dict.fromkeys(r["target"] for r in ref_records))
    rcolors = {t: plt.get_cmap("tab10")(i % 10) for i, t in enumerate(students)}
    ax = axes.flat[len(panels)]
    _scatter_panel(ax, ref_records, "sim", "acc_ratio", "target", rcolors, ref)
    ax.set_xlabel("their similarity", fontsize=8.5)
    ax.set_ylabel("their accuracy ratio to random (CIFAR-100)", fontsize=8)
    ax.set_title("The authors' 67 pairs (CIFAR-100, 4 epochs)", fontsize=9)
    spare = list(axes.flat)[n:]
    for a in spare:
        a.axis("off")
    handles, labels = ax.get_legend_handles_labels()
    if spare:  # the authors' students in the empty panel beside theirs, so no point is covered
        spare[0].legend(handles, labels, loc="center left", fontsize=7.5, title="the authors' students (targets)",
                        title_fontsize=8, frameon=False)
    else:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6.5, frameon=False)
    if targets:
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[t], markeredgecolor="black",
                              markeredgewidth=0.4, label=f"target {t}") for t in targets]
        handles.append(plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="black",
                                  markersize=10, label="the target's measured best source"))
        handles.append(plt.Line2D([], [], color="grey", linestyle=":", label="no gain (ratio 1)"))
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle("Does a predictor computed before training rank the sources of a target? "
                 "(one point per source -> target pair)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if targets else 0, 1, 0.95))
    save_png(fig, path)
    return path


def plot_heatmap(records: list[dict], path: Path) -> Path | None:
    """DPIAT similarity of every ordered pair of the grid's models (symmetric), measured pairs outlined."""
    if not records:
        return None
    import dpiat

    models = list(dict.fromkeys([r["target"] for r in records] + [r["source"] for r in records]))
    nets = {m: dpiat.create_model(m, device="meta", num_classes=10, in_chans=1) for m in models}
    sim = np.array([[1.0 if a == b else dpiat.similarity(nets[a], nets[b]) for b in models] for a in models])
    fig, ax = plt.subplots(figsize=(1.0 * len(models) + 3.2, 0.8 * len(models) + 2.2))
    im = ax.imshow(sim, cmap="viridis", vmin=0, vmax=1)
    measured = {(r["source"], r["target"]) for r in records}
    for i, a in enumerate(models):          # row: target
        for j, b in enumerate(models):      # column: source
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if sim[i, j] < 0.55 else "black")
            if (b, a) in measured:  # inset, so that the frames of neighbours never seem to frame a cell between
                ax.add_patch(plt.Rectangle((j - 0.42, i - 0.42), 0.84, 0.84, fill=False, edgecolor="red",
                                           linewidth=1.6))
    ax.set_xticks(range(len(models)), models, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.colorbar(im, ax=ax, fraction=0.04, label="DPIAT similarity (symmetric)")
    ax.set_title("Architecture similarity of the grid's models\n(red frame inside a cell: a source -> target "
                 "pair trained and measured; the diagonal, a model with itself, never is)", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
    return path

"""Pictures of a matching and of a similarity matrix (``dpiat explain --plot``, ``dpiat similarity --plot``).

    >>> import dpiat
    >>> from dpiat.plots import plot_matching, plot_similarity
    >>> plot_matching(dpiat.match(src, dst), "b2_to_b0.png", source="tf_efficientnet_b2", target="tf_efficientnet_b0")
    >>> names = ["tf_efficientnet_b0", "tf_efficientnet_b2", "mixnet_l"]
    >>> plot_similarity(names, dpiat.similarity_matrix(names), "similarity.svg")

matplotlib is imported only here, when a picture is asked for: the core install does not need it
(``pip install 'dpiat[plot]'`` adds it). The format follows the file's extension (.png or .svg).
"""

from __future__ import annotations

from pathlib import Path

from dpiat.atomic import atomic_open
from dpiat.errors import DpiatError
from dpiat.matching import Matching
from dpiat.structure import Block

FORMATS = (".png", ".svg")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise DpiatError("pictures need matplotlib, which is not installed: pip install 'matplotlib==3.11.2' "
                         "(or pip install 'dpiat[plot]')") from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _check_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise DpiatError(f"--plot writes .png or .svg files, got {str(path)!r}")
    return path


def check_plot_path(path) -> Path:
    """``path`` as a picture can be written there (.png or .svg, matplotlib installed), or a DpiatError: what
    a command checks before it prints or computes anything."""
    path = _check_path(path)
    _pyplot()
    return path


def _save(fig, path: Path, plt) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=path.suffix.lower()[1:], dpi=110, bbox_inches="tight")
    plt.close(fig)


def _rows(blocks: Block) -> tuple[list, list[tuple[str, int, int]]]:
    """Transferable leaves in order, and the spans ``(name, first row, last row)`` of the top-level blocks."""
    leaves, spans = [], []
    for item in blocks:
        first = len(leaves)
        if isinstance(item, Block):
            leaves.extend(leaf for leaf in item.layers() if leaf.transferable)
            if len(leaves) > first:
                spans.append((item.name, first, len(leaves) - 1))
        elif item.transferable:
            leaves.append(item)
    return leaves, spans


def _kind(s_shape, t_shape) -> str:
    if s_shape == t_shape:
        return "same shape"
    smaller = any(a < b for a, b in zip(s_shape, t_shape))
    larger = any(a > b for a, b in zip(s_shape, t_shape))
    if smaller and larger:
        return "cropped and pasted"
    return "pasted (source smaller)" if smaller else "cropped (source larger)"


_STYLES = {"same shape": "-", "cropped (source larger)": "--", "pasted (source smaller)": ":",
           "cropped and pasted": "-."}


NAME_GAP, NAME_MARGIN = 0.08, 0.03  # data units (the columns sit at x = 0 and 1): column to name, name to edge


def _fit_names(fig, ax, left: list, right: list) -> None:
    """Set the x range so that it ends just beyond the block names on each side: the colour bar then follows
    the target's names after its pad, whatever their length, instead of after an empty band. A name of p
    pixels spans p * L / W data units (axis range L, axis width W pixels), so L solves
    L = 1 + 2 * (gap + margin) + (p_left + p_right) * L / W."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width = ax.get_window_extent(renderer).width
    pl, pr = (max((t.get_window_extent(renderer).width for t in texts), default=0.0) for texts in (left, right))
    span = (1 + 2 * (NAME_GAP + NAME_MARGIN)) / max(1 - (pl + pr) / width, 0.2)
    ax.set_xlim(-(NAME_GAP + NAME_MARGIN) - pl * span / width, 1 + NAME_GAP + NAME_MARGIN + pr * span / width)


def plot_matching(matching: Matching, path, *, source: str = "source", target: str = "target",
                  method: str = "dpiat") -> None:
    """The two standardized networks as columns of layers (top-level blocks shaded and named), matched layers
    joined by lines coloured by shape score, line style telling identical / cropped / pasted copies apart,
    unmatched target layers and unused source layers marked."""
    path = _check_path(path)
    plt = _pyplot()
    from matplotlib import cm, colors
    from matplotlib.lines import Line2D

    src_leaves, src_spans = _rows(matching.source_blocks)
    dst_leaves, dst_spans = _rows(matching.target_blocks)
    if not src_leaves or not dst_leaves:
        raise DpiatError("nothing to draw: a model without transferable layers")
    n = max(len(src_leaves), len(dst_leaves))
    # both columns span the same height, top to bottom, so corresponding depths face each other
    ys = {id(leaf): 1 - i / max(len(src_leaves) - 1, 1) for i, leaf in enumerate(src_leaves)}
    yt = {id(leaf): 1 - i / max(len(dst_leaves) - 1, 1) for i, leaf in enumerate(dst_leaves)}
    xs, xt = 0.0, 1.0
    fig, ax = plt.subplots(figsize=(9, max(8, n * 0.075)))
    cmap, norm = plt.get_cmap("viridis"), colors.Normalize(0, 1)
    names = {xs: [], xt: []}  # the block names beside each column, to fit the axis to them
    for col_x, spans, leaves, y in ((xs, src_spans, src_leaves, ys), (xt, dst_spans, dst_leaves, yt)):
        step = 1 / max(len(leaves) - 1, 1)
        for k, (name, a, b) in enumerate(spans):
            top, bottom = y[id(leaves[a])] + step / 2, y[id(leaves[b])] - step / 2
            ax.fill_between([col_x - 0.06, col_x + 0.06], bottom, top, color="0.85" if k % 2 else "0.93", lw=0)
            side, ha = (col_x - NAME_GAP, "right") if col_x == xs else (col_x + NAME_GAP, "left")
            names[col_x].append(ax.text(side, (top + bottom) / 2, name, ha=ha, va="center", fontsize=6.5))
    kinds_used = set()
    for s, t, score in matching.layers:
        if s is not None and t is not None:
            kind = _kind(s.shape, t.shape)
            kinds_used.add(kind)
            ax.plot([xs + 0.06, xt - 0.06], [ys[id(s)], yt[id(t)]], ls=_STYLES[kind], lw=0.9,
                    color=cmap(norm(score)), zorder=2)
    matched_t = {id(t) for s, t, _ in matching.layers if s is not None and t is not None}
    matched_s = {id(s) for s, t, _ in matching.layers if s is not None and t is not None}
    ax.scatter([xs] * len(src_leaves), [ys[id(x)] for x in src_leaves], s=7, zorder=3,
               c=["0.2" if id(x) in matched_s else "white" for x in src_leaves], edgecolors="0.2", linewidths=0.5)
    ax.scatter([xt] * len(dst_leaves), [yt[id(x)] for x in dst_leaves], s=7, zorder=3, c="0.2", linewidths=0)
    missing = [x for x in dst_leaves if id(x) not in matched_t]
    if missing:
        ax.scatter([xt] * len(missing), [yt[id(x)] for x in missing], s=40, marker="x", c="red", zorder=4,
                   linewidths=1.2)
    handles = [Line2D([], [], color="0.3", ls=_STYLES[k], label=k) for k in _STYLES if k in kinds_used]
    handles += [Line2D([], [], marker="o", ls="", color="0.2", ms=4, label="layer (matched)"),
                Line2D([], [], marker="o", ls="", mfc="white", mec="0.2", ms=4, label="source layer not used"),
                Line2D([], [], marker="x", ls="", color="red", ms=6, label=f"target layer unmatched ({len(missing)})")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=8, frameon=False)
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, fraction=0.03, pad=0.02, shrink=0.5, label="shape score of the matched pair")
    _fit_names(fig, ax, names[xs], names[xt])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks([xs, xt], [f"source: {source}\n{len(src_leaves)} layers", f"target: {target}\n{len(dst_leaves)} layers"])
    ax.xaxis.tick_top()
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    n_matched = len(matched_t)
    what = "DPIAT matching" if method == "dpiat" else f"DPIAT matching ({method})"
    ax.set_title(f"{what}, {source} -> {target}: {n_matched} of {len(dst_leaves)} target layers receive "
                 f"weights\n(grey bands: top-level blocks; lines: matched layers, colour = shape score, "
                 "style = how the tensor is copied)", fontsize=9)
    _save(fig, path, plt)


def plot_similarity(names: list[str], values: list[list[float]], path, *, method: str = "dpiat") -> None:
    """A heatmap of a similarity matrix with the value in every cell."""
    path = _check_path(path)
    plt = _pyplot()
    k = len(names)
    size = max(4.0, 0.7 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            v = values[i][j]
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="black" if v > 0.6 else "white")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="DPIAT similarity (1 = same layer shapes)")
    how = "" if method == "dpiat" else f" (matching of {method})"
    ax.set_title(f"DPIAT architecture similarity of {k} timm models{how}", fontsize=10)
    _save(fig, path, plt)

"""bench/results/plots.py and titles.py on hand-written run folders: what a reader of the pictures relies on.

Pairs are titled in words, every legend sits outside the data it explains and names every line style and
marker, an interval is drawn only where one exists (two seeds or more) and the legend says so, and points
of equal similarity do not hide each other. The figures are captured before saving (``save_png``).
"""

from __future__ import annotations

import json
import math

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Text

from bench.results import plots
from bench.results.table import aggregate
from bench.results.titles import derived_title
from tests.test_aggregate import write_run


@pytest.fixture
def figures(monkeypatch):
    """name -> Figure of every plot an aggregation makes (nothing is written)."""
    captured = {}
    monkeypatch.setattr(plots, "save_png", lambda fig, path: captured.__setitem__(path.name, fig))
    return captured


def with_config(path, **pair):
    """Add what the harness records under config (pair.title, source.weights) to a written run.json."""
    run = json.loads(path.read_text())
    weights = pair.pop("weights", "train")
    run["config"] = {"pair": {"name": run["pair"], "source": run["source"], "target": run["target"], **pair},
                     "source": {"weights": weights}}
    path.write_text(json.dumps(run))


def proxy_like(root, seeds=3, extra_pairs=0):
    """The proxy's shape on a 2-epoch scale: random and ghn once per seed in tinynet_d_to_e, dpiat per pair;
    two pairs share a similarity (0.915), as the trained and untrained TinyNet-D do."""
    pairs = [("tinynet_d_to_e", "tinynet_d", 0.915, 0.7), ("tinynet_d_untrained_to_e", "tinynet_d", 0.915, 0.5),
             ("rexnet_100_to_tinynet_e", "rexnet_100", 0.525, 0.55),
             ("resnet10t_to_tinynet_e", "resnet10t", 0.246, 0.52)]
    pairs += [(f"m{k}_to_tinynet_e", f"m{k}", 0.3 + 0.1 * k, 0.5 + 0.01 * k) for k in range(extra_pairs)]
    for seed in range(seeds):
        for init, top1 in (("random", 0.5), ("ghn", 0.45)):
            write_run(root, "tinynet_d_to_e", init, seed, [0.3, top1 + 0.01 * seed], target="tinynet_e",
                      init_top1=0.1, bn=[0.35, top1 + 0.02], init_top1_bn=0.1)
        for pair, source, sim, top1 in pairs:
            path = write_run(root, pair, "dpiat", seed, [0.4, top1 + 0.02 * seed], source=source, target="tinynet_e",
                             similarity=sim, init_top1=0.1, bn=[0.45, top1 + 0.03], init_top1_bn=0.6)
            if pair == "tinynet_d_untrained_to_e":
                with_config(path, weights="none")  # as recorded before pair.title existed


def renderer_of(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def legends(fig):
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def legend_text(fig) -> str:
    return "\n".join(t.get_text() for leg in legends(fig) for t in leg.get_texts())


def assert_legends_cover_no_data(fig):
    r = renderer_of(fig)
    data_axes = [ax for ax in fig.axes if ax.axison and ax.has_data()]
    assert legends(fig) and data_axes
    for leg in legends(fig):
        box = leg.get_window_extent(r)
        for ax in data_axes:
            assert not box.overlaps(ax.get_window_extent(r)), f"legend over the data of {ax.get_title()!r}"


def test_titles_are_words_from_the_record_the_pair_config_or_the_model_names(tmp_path, figures):
    root = tmp_path / "runs" / "exp"
    proxy_like(root)
    for seed in range(3):
        with_config(root / "rexnet_100_to_tinynet_e" / "dpiat" / f"seed{seed}" / "run.json",
                    title="ReXNet, as recorded")
    aggregate(root, tmp_path / "out")
    titles = [ax.get_title().replace("\n", " ") for ax in figures["curves.png"].axes if ax.axison]
    assert "TinyNet-D -> TinyNet-E (same family)" in titles  # from conf/pair/tinynet_d_to_e.yaml
    assert "untrained TinyNet-D -> TinyNet-E (control)" in titles
    assert "ReXNet, as recorded" in titles  # run.json's config.pair.title wins
    assert not any("_to_" in t for t in titles)  # no folder names
    ticks = " ".join(t.get_text().replace("\n", " ") for t in figures["ratios.png"].axes[-1].get_xticklabels())
    assert "TinyNet-D -> TinyNet-E (same family)" in ticks and "mean over pairs" in ticks and "_to_" not in ticks
    assert "TinyNet-D -> TinyNet-E (same family)" in figures["curves_tinynet_d_to_e.png"].axes[0].get_title()

    # a custom pair (pair=custom) has no title anywhere: its name is derived from its networks, "a -> b", and
    # then every pair of the figure is named so, none in words among model names
    figures.clear()
    for seed in range(3):
        write_run(root, "mixnet_m_to_tinynet_e", "dpiat", seed, [0.4, 0.6], source="mixnet_m", target="tinynet_e",
                  similarity=0.4)
    aggregate(root, tmp_path / "out")
    titles = [ax.get_title().replace("\n", " ") for ax in figures["curves.png"].axes if ax.axison]
    assert "mixnet_m -> tinynet_e" in titles and "tinynet_d -> tinynet_e" in titles
    assert "untrained tinynet_d -> tinynet_e (control)" in titles and "rexnet_100 -> tinynet_e" in titles
    assert not any("TinyNet" in t or "ReXNet" in t for t in titles)
    ticks = [t.get_text() for t in figures["ratios.png"].axes[-1].get_xticklabels()]
    assert not any("TinyNet" in t or "_to_" in t for t in ticks)


def test_many_pairs_get_slanted_names_that_never_overlap_and_a_readable_legend(tmp_path, figures):
    root = tmp_path / "runs" / "exp"
    proxy_like(root, extra_pairs=20)  # 24 pairs, as the selection grid
    aggregate(root, tmp_path / "out")
    fig = figures["ratios.png"]
    r = renderer_of(fig)
    labels = [t for t in fig.axes[-1].get_xticklabels() if t.get_text()]
    assert len(labels) == 25
    # slanted names are parallel lines of text anchored at their ticks: two neighbours stay apart when the
    # distance between their lines, (tick spacing) x sin(angle), exceeds a line's height
    assert all(abs(t.get_rotation() - 35) < 1e-6 and t.get_ha() == "right" for t in labels)
    xs = [fig.axes[-1].transData.transform((x, 0))[0] for x in fig.axes[-1].get_xticks()]
    line = 1.2 * max(t.get_fontsize() for t in labels) * fig.dpi / 72
    assert min(b - a for a, b in zip(xs, xs[1:])) * math.sin(math.radians(35)) > line, "two pair names overlap"
    assert all(t.get_window_extent(r).height < 0.9 * fig.bbox.height for t in labels)
    size = max(t.get_fontsize() for t in labels)
    assert all(t.get_fontsize() >= size for leg in legends(fig) for t in leg.get_texts())
    assert_legends_cover_no_data(fig)


def test_derived_titles_say_where_the_source_weights_come_from():
    assert derived_title("a", "b", "train") == "a -> b"
    assert derived_title("a", "b", None) == "a -> b"
    assert derived_title("a", "b", "none") == "untrained a -> b (control)"
    assert derived_title("a", "b", "zoo:lite0_imagenet") == "a (zoo: lite0_imagenet) -> b"
    assert derived_title(None, "b", None) == "b alone (no source)"


def test_a_conf_title_is_not_used_for_runs_of_other_networks(tmp_path, figures):
    root = tmp_path / "runs" / "exp"
    for seed in range(2):  # named like conf/pair/tinynet_d_to_e.yaml, but another source
        write_run(root, "tinynet_d_to_e", "random", seed, [0.3, 0.5], target="tinynet_e")
        write_run(root, "tinynet_d_to_e", "dpiat", seed, [0.4, 0.6], source="mixnet_s", target="tinynet_e")
    aggregate(root, tmp_path / "out")
    assert "mixnet_s -> tinynet_e" in figures["curves_tinynet_d_to_e.png"].axes[0].get_title()


@pytest.mark.parametrize("extra_pairs", [0, 4])  # 4 panels (one spare: the legend goes there), 8 (below)
def test_curve_legends_cover_no_data_and_explain_every_line_and_marker(tmp_path, figures, extra_pairs):
    root = tmp_path / "runs" / "exp"
    proxy_like(root, extra_pairs=extra_pairs)
    aggregate(root, tmp_path / "out")
    for name in ("curves.png", "curves_tinynet_d_to_e.png"):
        fig = figures[name]
        assert_legends_cover_no_data(fig)
        text = legend_text(fig)
        for words in ("random (n=3 seeds", "dpiat (n=3 seeds)", "ghn (n=3 seeds", "solid, filled circle",
                      "dashed, filled square", "hollow circle / square: before training", "band: min..max"):
            assert words in text, (name, words)
    titles = [ax.get_title() for ax in figures["curves.png"].axes if ax.axison]
    assert all("solid" not in t and "dashed" not in t for t in titles)  # said once, in the legend


def test_ratio_and_similarity_legends_cover_no_data(tmp_path, figures):
    root = tmp_path / "runs" / "exp"
    proxy_like(root)
    aggregate(root, tmp_path / "out")
    for name in ("ratios.png", "similarity_vs_ratio.png"):
        assert_legends_cover_no_data(figures[name])
        assert "whisker: 95% interval over seeds (Student's t)" in legend_text(figures[name])
    assert any(isinstance(c, ErrorbarContainer) for ax in figures["ratios.png"].axes for c in ax.containers)


def test_one_seed_draws_no_interval_and_the_legend_says_so(tmp_path, figures):
    root = tmp_path / "runs" / "exp"
    proxy_like(root, seeds=1, extra_pairs=4)  # one seed, eight pairs
    aggregate(root, tmp_path / "out")
    for name in ("ratios.png", "similarity_vs_ratio.png"):
        fig = figures[name]
        assert not any(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers), name
        text = legend_text(fig)
        assert "95%" not in text and "no whisker: one seed, no interval" in text, name
        assert not any("95%" in ax.get_title() for ax in fig.axes), name  # no interval claimed in a title either
        assert_legends_cover_no_data(fig)


def test_the_defaults_shape_one_pair_one_seed(tmp_path, figures):
    root = tmp_path / "runs" / "default"
    for init in ("random", "dpiat", "ghn"):
        write_run(root, "tinynet_d_to_e", init, 0, [0.4, 0.5, 0.6], source="tinynet_d" if init == "dpiat" else None,
                  target="tinynet_e", epochs=3, similarity=0.915 if init == "dpiat" else None, init_top1=0.1,
                  bn=[0.5, 0.6, 0.7], init_top1_bn=0.8)
    aggregate(root, tmp_path / "out")
    assert set(figures) == {"curves_tinynet_d_to_e.png", "ratios.png"}  # one pair: no panels, no correlation
    for fig in figures.values():
        assert_legends_cover_no_data(fig)
    assert "95%" not in legend_text(figures["ratios.png"])
    assert "n=1 seeds" in legend_text(figures["curves_tinynet_d_to_e.png"])
    assert "band" not in legend_text(figures["curves_tinynet_d_to_e.png"])  # one seed: no min..max band drawn


def test_points_of_equal_similarity_are_side_by_side_and_labels_stay_inside(tmp_path, figures):
    root = tmp_path / "runs" / "exp"
    proxy_like(root)
    aggregate(root, tmp_path / "out")
    fig = figures["similarity_vs_ratio.png"]
    r = renderer_of(fig)
    ax = fig.axes[0]
    xy = [ax.transData.transform(p) for line in ax.lines if line.get_gid() == "points" for p in line.get_xydata()]
    assert len(xy) == 4
    for i in range(len(xy)):
        for j in range(i):
            assert abs(xy[i][0] - xy[j][0]) > 5, "two points (and their whiskers) drawn on one x"
    inside = ax.get_window_extent(r)
    assert len(ax.texts) == 4
    for text in ax.texts:
        box = text.get_window_extent(r)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, \
            f"label {text.get_text()!r} runs off the axes"
    keys = legend_text(fig)
    assert "TinyNet-D -> TinyNet-E (same family), similarity 0.915" in keys and "side by side" in keys


def crowded_rows(n=14):
    """Rows of n pairs of nearly equal similarity (0.25-0.28) and ratio (1.00-1.02), as the selection grid's
    many similar pairs, and two far apart; 95% intervals of +-0.1."""
    pairs = [(f"m{k}_to_t", 0.25 + 0.002 * k, 1.0 + 0.004 * (k % 5)) for k in range(n)]
    pairs += [("far_to_t", 0.9, 1.3), ("mid_to_t", 0.6, 1.2)]
    return [{"pair": pair, "init": "dpiat", "similarity": sim, "ratio_best_mean": ratio, "interval": "t",
             "ratio_best_ci_low": ratio - 0.1, "ratio_best_ci_high": ratio + 0.1} for pair, sim, ratio in pairs]


def test_numbers_of_crowded_points_never_overlap_and_a_moved_one_has_a_leader():
    fig = plots.plot_similarity(crowded_rows(), {"dpiat": "C1"})
    r = renderer_of(fig)
    ax = fig.axes[0]
    numbers = [t for t in ax.texts if t.get_gid() == "number"]
    assert sorted(int(t.get_text()) for t in numbers) == list(range(1, 17))
    boxes = [Text.get_window_extent(t, r) for t in numbers]  # the text's own extent, not its leader's too
    for i in range(len(boxes)):
        for j in range(i):
            assert not boxes[i].overlaps(boxes[j]), f"numbers {numbers[i].get_text()} and {numbers[j].get_text()}"
    inside = ax.get_window_extent(r)
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1 for b in boxes)
    points = [ax.transData.transform(p) for line in ax.lines if line.get_gid() == "points" for p in line.get_xydata()]
    gap = (plots.NUMBER_GAP + 1) * fig.dpi / 72
    moved = 0
    for text, box in zip(numbers, boxes):
        x, y = ax.transData.transform(text.xy)  # the point it labels (one point per pair here)
        assert min(math.dist((x, y), p) for p in points) < 0.5, f"number {text.get_text()} labels no point"
        beside = box.y0 <= y <= box.y1 and min(abs(box.x0 - x), abs(box.x1 - x)) <= gap
        if not beside:  # moved up or down, or past other points: a thin grey leader line to its point
            moved += 1
            assert text.arrow_patch is not None, f"number {text.get_text()} moved without a leader"
            assert text.arrow_patch.get_linewidth() < 1 and tuple(text.arrow_patch.get_edgecolor()[:3]) == (0.6,) * 3
        else:
            assert text.arrow_patch is None
    assert moved  # 14 numbers in a crowd: some had to move
    assert_legends_cover_no_data(fig)


def test_the_similarity_plot_is_the_same_every_time(tmp_path):
    saved = []
    for k in range(2):
        plots.save_png(plots.plot_similarity(crowded_rows(), {"dpiat": "C1"}), tmp_path / f"{k}.png")
        saved.append((tmp_path / f"{k}.png").read_bytes())
    assert saved[0] == saved[1]


def test_the_heatmap_frames_measured_pairs_inside_their_cells(tmp_path, monkeypatch):
    """Frames inset in their own cells: neighbours' frames never seem to frame the diagonal between them."""
    from bench.results import selection_plots

    captured = {}
    monkeypatch.setattr(selection_plots, "save_png", lambda fig, path: captured.setdefault("fig", fig))
    models = ["test_resnet", "test_efficientnet", "test_byobnet"]
    records = [{"source": s, "target": t} for t in models[:2] for s in models if s != t]
    selection_plots.plot_heatmap(records, tmp_path / "h.png")
    ax = captured["fig"].axes[0]
    frames = [p for p in ax.patches if p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
    assert len(frames) == len(records)
    for frame in frames:
        x0, y0 = frame.get_xy()
        j, i = round(x0 + frame.get_width() / 2), round(y0 + frame.get_height() / 2)
        assert i != j, "a frame on the diagonal"
        assert j - 0.5 < x0 and x0 + frame.get_width() < j + 0.5 and i - 0.5 < y0 and y0 + frame.get_height() < i + 0.5


def test_the_matching_colour_bar_follows_the_target_names_without_a_gap(monkeypatch):
    pytest.importorskip("matplotlib")
    import dpiat
    from dpiat import plots as dplots

    captured = {}
    monkeypatch.setattr(dplots, "_save", lambda fig, path, plt: captured.setdefault("fig", fig))
    for source, target in (("tf_efficientnet_b2", "tf_efficientnet_b0"), ("convnext_atto", "convnext_pico")):
        captured.clear()
        dplots.plot_matching(dpiat.match(source, target), "m.png", source=source, target=target)
        fig = captured["fig"]
        r = renderer_of(fig)
        ax, bar = fig.axes[0], fig.axes[1]
        right = max(t.get_window_extent(r).x1 for t in ax.texts)
        left = min(t.get_window_extent(r).x0 for t in ax.texts)
        gap = bar.get_window_extent(r).x0 - right
        assert 0 < gap < 0.5 * fig.dpi, f"{gap / fig.dpi:.2f} in between the names and the colour bar"
        assert left >= ax.get_window_extent(r).x0  # the source's names inside the axis too

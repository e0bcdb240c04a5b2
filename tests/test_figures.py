"""The figures README.md, docs/*.md and results/*/README.md quote from committed results match their files.

Two ways, both checked here, so a changed digit on either side fails:

- a table of committed rows: put ``<!-- rows of results/<experiment>/table.md -->`` on the line before a
  markdown table whose columns are columns of that file's table (same header text, starting with its first
  column); every row must then be a row of the file, cell for cell. Found in every page automatically.
- a figure in prose: one line in ``FIGURES`` below, ``(page, text in the page, figure, file, row, column)``:
  the text must be in the page and contain the figure, and the figure must be the file's cell (the row whose
  cells include ``row``, the column headed ``column``; csv files too, compared at the figure's decimals), or,
  with ``row`` None, a number in the file's text.
"""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.figures import REPO, cell, check_view, number_in, views

PROXY, PROXY1 = "results/proxy/table.md", "results/proxy/epoch1/table.md"
VARIANTS = "results/variants/table.md"
VIT4, VIT1, VIT1_E1 = ("results/transformers/table.md", "results/transformers_lr1e-3/table.md",
                       "results/transformers_lr1e-3/epoch1/table.md")
HZ, HZT = "results/horizon/ratios_by_epoch.csv", "results/horizon/time_to_accuracy.csv"
SELECTION, RECIPE = "results/selection/selection.md", "results/recipe/table.md"
REC, REC_VIT = "results/speed/recommend.txt", "results/speed/recommend_vit.txt"
OURS3, OURS1 = "BN ratio to random, last epoch (3)", "BN ratio to random, epoch 1"
SIM = "DPIAT similarity (the paper's)"
R, RB = "ratio best [95% CI]", "ratio best, BN [95% CI]"
D, DS, TD, CX = ("tinynet_d_to_e", "dpiat"), ("vit_small_to_tiny_32px", "dpiat_struct"), "tinynet_d_to_e", \
    "convnext_pico_to_atto"

# (page, text in the page, the figure in that text, its file, its row, its column)
FIGURES = [
    ("docs/custom-transformers.md", "its forward is bit-equal on 135 architectures", "135", "results/zoo/table.md",
     ("at most 60M", "`dpiat`"), "forward bit-equal"),
    ("README.md", "scores 0.861 before any training", "0.861", HZT, (TD, "dpiat", "paper"), "final_best_bn_mean"),
    ("README.md", "after 50 epochs (0.828)", "0.828", HZT, (TD, "random", "paper"), "R"),
    ("README.md", "epoch 50: 1.04 [0.98", "1.04", HZ, (TD, "dpiat", "paper", "50"), "ratio_bn_mean"),
    ("README.md", "epoch 50: 1.04 [0.98", "0.98", HZ, (TD, "dpiat", "paper", "50"), "ratio_bn_lo"),
    ("README.md", "(1.01 after 50)", "1.01", HZ, ("resnet10t_to_tinynet_e", "dpiat", "paper", "50"), "ratio_bn_mean"),
    ("results/horizon/README.md", "at epoch 50 is 1.04 [0.98, 1.10]", "1.10", HZ, (TD, "dpiat", "paper", "50"),
     "ratio_bn_hi"),
    ("results/horizon/README.md", "(R = 0.828)", "0.828", HZT, (TD, "random", "paper"), "R"),
    ("results/horizon/README.md", "final ratio 1.01 [0.96, 1.05]", "0.96", HZ,
     ("resnet10t_to_tinynet_e", "dpiat", "paper", "50"), "ratio_bn_lo"),
    ("README.md", "yes: 1.25 [1.17, 1.34] after 3 epochs", "1.25 [1.17, 1.34]", PROXY, D, RB),
    ("README.md", "2.03 [1.68, 2.38] after 1", "2.03 [1.68, 2.38]", PROXY1, D, RB),
    ("README.md", "across families 0.99-", "0.99", PROXY, ("lite0_imagenet_to_tinynet_e", "dpiat"), RB),
    ("README.md", "-1.06 with intervals", "1.06", PROXY, ("rexnet_100_to_tinynet_e", "dpiat"), RB),
    ("README.md", "GHN-2 1.02 [1.00, 1.04]", "1.02 [1.00, 1.04]", PROXY, (TD, "ghn"), RB),
    ("README.md", "(0.849 top-1 with no training", "0.849", VARIANTS, (TD, "dpiat_bn"), "before: top-1 / BN"),
    ("README.md", "faithful 0.060)", "0.060", VARIANTS, D, "before: top-1 / BN"),
    ("README.md", "Spearman 0.46 [-0.17, 1.08]", "0.46 [-0.17, 1.08]", SELECTION, (OURS3, SIM),
     "within-target Spearman"),
    ("README.md", "and 0.46 [0.09, 0.77])", "0.46 [0.09, 0.77]", SELECTION, ("authors: CIFAR-100, 4 epochs", SIM),
     "within-target Spearman"),
    ("README.md", "gets 0.99 of the best gain", "0.99", SELECTION, (OURS3, SIM), "pick/best (random)"),
    ("README.md", "ViT-S -> ViT-Ti 1.22 [1.07, 1.38]", "1.22 [1.07, 1.38]", VIT1, DS, R),
    ("README.md", "0.408 top-1 before training", "0.408", VIT1, DS, "before: top-1"),
    ("README.md", "(faithful 0.060)", "0.060", VIT1, ("vit_small_to_tiny_32px", "dpiat"), "before: top-1"),
    ("README.md", "ConvNeXt-Atto (0.98 [0.91, 1.04])", "0.98 [0.91, 1.04]", VIT1, (CX, "dpiat_struct"), R),
    ("README.md", "DPIAT 1.32 [1.29, 1.35]", "1.32 [1.29, 1.35]", RECIPE, D, "selected vs selected (BN)"),
    ("README.md", "instead of 1.26 [1.22, 1.29]", "1.26 [1.22, 1.29]", RECIPE, D, "paper's recipe (BN)"),
    ("README.md", "hence not the first row's 1.25 [1.17, 1.34]", "1.25 [1.17, 1.34]", PROXY, D, RB),
    ("results/proxy/README.md", "tinynet_d 0.915", "0.915", "results/proxy/table.csv", D, "similarity"),
    ("results/proxy/README.md", "rexnet_100 0.525", "0.525", "results/proxy/table.csv",
     ("rexnet_100_to_tinynet_e", "dpiat"), "similarity"),
    ("results/proxy/README.md", "resnet10t 0.246", "0.246", "results/proxy/table.csv",
     ("resnet10t_to_tinynet_e", "dpiat"), "similarity"),
    ("results/proxy/README.md", "tf_efficientnet_lite0 0.526", "0.526", "results/proxy/table.csv",
     ("lite0_imagenet_to_tinynet_e", "dpiat"), "similarity"),
    ("results/proxy/README.md", "scores **0.861 before any training**", "0.861", PROXY, D, "before: top-1 / BN"),
    ("results/proxy/README.md", "0.060 (chance) as the protocol", "0.060", PROXY, D, "before: top-1 / BN"),
    ("results/proxy/README.md", "(0.728 vs 0.239)", "0.728", PROXY1, D, "best top-1 / BN"),
    ("results/proxy/README.md", "(0.728 vs 0.239)", "0.239", PROXY1, (TD, "random"), "best top-1 / BN"),
    ("results/proxy/README.md", "3.07x random", "3.07", PROXY1, D, R),
    ("results/proxy/README.md", "(0.861 -> 0.785 after epoch 1, BN)", "0.785", PROXY1, D, "best top-1 / BN"),
    ("results/proxy/README.md", "ends slightly *below* random init (0.95 [0.94, 0.97], BN)", "0.95 [0.94, 0.97]", PROXY,
     ("tinynet_d_untrained_to_e", "dpiat"), RB),
    ("results/proxy/README.md", "its target stays at chance through epoch 1 (0.096)", "0.096", PROXY1,
     ("resnet10t_to_tinynet_e", "dpiat"), "best top-1 / BN"),
    ("results/proxy/README.md", "with BN it is at 0.502 (1.30x)", "0.502", PROXY1,
     ("resnet10t_to_tinynet_e", "dpiat"), "best top-1 / BN"),
    ("results/proxy/README.md", "prediction scores 0.557 before training", "0.557", PROXY, (TD, "ghn"),
     "before: top-1 / BN"),
    ("results/proxy/README.md", "0.81 [0.77, 0.85] on tinynet_d", "0.81 [0.77, 0.85]", PROXY, (TD, "ghn"),
     "vs dpiat, BN [95% CI]"),
    ("results/variants/README.md", "0.849 top-1 with no training at all", "0.849", VARIANTS, (TD, "dpiat_bn"),
     "before: top-1 / BN"),
    ("results/variants/README.md", "with BN 0.94 [0.91, 0.97] from Lite0", "0.94 [0.91, 0.97]", VARIANTS,
     ("lite0_imagenet_to_tinynet_e", "dpiat_wsel"), RB),
    ("results/transformers/README.md", "(0.408 before any training", "0.408", VIT1, DS, "before: top-1"),
    ("results/transformers/README.md", "1.10 [0.99, 1.21] better at 1e-3", "1.10 [0.99, 1.21]", VIT1, DS,
     "vs dpiat, best [95% CI]"),
    ("results/transformers/README.md", "(1.19 [0.59, 1.80] at 4e-3)", "1.19 [0.59, 1.80]", VIT4, DS,
     "vs dpiat, best [95% CI]"),
    ("results/transformers/README.md", "`dpiat_struct` 1.57 -> 1.22", "1.57", VIT4, DS, R),
    ("results/transformers/README.md", "`dpiat_struct` 1.57 -> 1.22", "1.22", VIT1, DS, R),
    ("results/transformers/README.md", "(`dpiat_struct` 0.91 [0.88, 0.93] at 1e-3)", "0.91 [0.88, 0.93]", VIT1_E1,
     (CX, "dpiat_struct"), R),
    ("results/transformers/README.md", "`dpiat_struct`'s at 4e-3, 0.98 [0.97, 0.99]", "0.98 [0.97, 0.99]", VIT4,
     (CX, "dpiat_struct"), R),
    ("results/selection/README.md", "(mean\n  within-target Spearman 0.46 in both)", "0.46", SELECTION, (OURS3, SIM),
     "within-target Spearman"),
    ("results/selection/README.md", "(0.60 ours, 0.81 theirs)", "0.60", SELECTION, (OURS3, SIM), "pooled Spearman"),
    ("results/selection/README.md", "(0.60 ours, 0.81 theirs)", "0.81", SELECTION,
     ("authors: CIFAR-100, 4 epochs", SIM), "pooled Spearman"),
    ("results/selection/README.md", "is +0.21 [-0.38, 0.81] at epoch 3", "+0.21 [-0.38, 0.81]", SELECTION,
     (OURS3, "fraction of target parameters overwritten"), "vs similarity"),
    ("results/selection/README.md", "-0.83 [-1.53, -0.13])", "-0.83 [-1.53, -0.13]", SELECTION,
     (OURS1, "the source's own top-1"), "vs similarity"),
    ("results/selection/README.md", "(+0.21 [0.01, 0.42], better on all 4 targets)", "+0.21 [0.01, 0.42]", SELECTION,
     (OURS3, "ridge combination, leave-one-target-out"), "vs similarity"),
    ("results/selection/README.md", "0.71 [0.52, 0.91] at epoch 3", "0.71 [0.52, 0.91]", SELECTION, None, None),
    ("results/selection/README.md", "0.93 [0.88, 0.97] at epoch 1", "0.93 [0.88, 0.97]", SELECTION, None, None),
    ("results/recipe/README.md", "keeps 0.837 best BN top-1 instead of 0.796", "0.837", RECIPE,
     (TD, "dpiat", "adam_lr1e-3 (optim.lr=0.001)"), "best top-1, BN"),
    ("results/recipe/README.md", "keeps 0.837 best BN top-1 instead of 0.796", "0.796", RECIPE,
     (TD, "dpiat", "paper (the experiment's own settings)"), "best top-1, BN"),
    ("results/recipe/README.md", "(at 1e-3 it reaches only 0.453)", "0.453", RECIPE,
     (TD, "random", "adam_lr1e-3 (optim.lr=0.001)"), "best top-1, BN"),
    # speed figures: numbers of the raw outputs in results/speed/
    ("docs/performance.md", "**cold** (empty cache) **11.8 s / 15.9 s**", "11.8", REC, None, None),
    ("docs/performance.md", "**cold** (empty cache) **11.8 s / 15.9 s**", "15.9", REC, None, None),
    ("docs/performance.md", "**warm** (the same command again) **0.16 s /\n0.13 s**", "0.16", REC, None, None),
    ("docs/performance.md", "9.1 s /\n14.5 s", "9.1", REC, None, None),
    ("docs/performance.md", "9.1 s /\n14.5 s", "14.5", REC, None, None),
    ("docs/performance.md", "59 s /\n123 s", "123", REC, None, None),
    ("docs/performance.md", "**cold 8.0 s / 15.0 s**", "8.0", REC_VIT, None, None),
    ("docs/performance.md", "**cold 8.0 s / 15.0 s**", "15.0", REC_VIT, None, None),
    ("docs/performance.md", "warm 0.10 s / 0.15 s", "0.10", REC_VIT, None, None),
    ("docs/performance.md", "7.1 s / 15.3 s", "15.3", REC_VIT, None, None),
    ("docs/performance.md", "from nothing 45 s /\n96 s", "45", REC_VIT, None, None),
    ("docs/performance.md", "from nothing 45 s /\n96 s", "96", REC_VIT, None, None),
    ("docs/pretrained-sources.md", "takes 8.0 s on an idle 2-core VM", "8.0", REC_VIT, None, None),
    ("docs/pretrained-sources.md", "15.0 s with both cores kept busy", "15.0", REC_VIT, None, None),
    ("docs/reproducing.md", "counted 276 s of CPU in the three\nworkers", "276", "results/first_contact/suite_cpu.json",
     None, None),
    ("docs/reproducing.md", "and 378 s in the commands the tests started", "378", "results/first_contact/suite_cpu.json",
     None, None),
    ("docs/performance.md", "construction included: 2.30 s", "2.30", "results/speed/rank_speed_loaded.txt", None, None),
]


def source_cell(source: str, row, column: str) -> str:
    if source.endswith(".csv"):
        rows = [r for r in csv.DictReader(io.StringIO((REPO / source).read_text())) if all(k in r.values() for k in row)]
        assert len(rows) == 1, f"{source}: {len(rows)} rows with cells {row}"
        return rows[0][column]
    return cell(source, row, column)


def figure_problems(page_text: str, text: str, figure: str, source: str, row, column) -> list[str]:
    problems = []
    if text not in page_text:
        problems.append(f"the page no longer says {text!r}")
    if figure not in text:
        problems.append(f"{figure!r} is not in {text!r}")
    if row is None:
        if not number_in(figure, (REPO / source).read_text()):
            problems.append(f"{figure!r} is not in {source}")
        return problems
    value = source_cell(source, row, column)
    if source.endswith(".csv") and re.fullmatch(r"-?\d+\.\d+", figure):
        decimals = len(figure.split(".")[1])
        ok = f"{float(value):.{decimals}f}" == figure
    else:
        ok = number_in(figure, value)
    if not ok:
        problems.append(f"{figure!r} is not {source} [{', '.join(row)}] {column!r} = {value!r}")
    return problems


@pytest.mark.parametrize("entry", FIGURES, ids=lambda e: f"{e[0]}: {e[1][:40]}")
def test_figure_in_prose_matches_its_file(entry):
    page, *rest = entry
    assert not figure_problems((REPO / page).read_text(), *rest)


def pages():
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("results/*/README.md"))]


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_tables_of_committed_rows_match_their_files(page):
    for source, header, rows, line in views(page):
        assert not check_view(source, header, rows), f"{page.relative_to(REPO)}:{line}: {check_view(source, header, rows)}"


def test_the_tables_of_results_pages_are_checked():
    """Every table in a results page is a table of committed rows (prose tables live in docs/)."""
    from tests.figures import tables

    for page in REPO.glob("results/*/README.md"):
        marked = {line for *_, line in views(page)}
        for start, header, _ in tables(page.read_text()):
            assert start + 1 in marked, f"{page.relative_to(REPO)}:{start + 1}: a table not marked as committed rows"


def test_a_changed_digit_fails():
    """The transformers figure, one digit changed in the page or in the file's row: both caught."""
    readme = (REPO / "README.md").read_text()
    entry = next(e for e in FIGURES if e[2] == "1.22 [1.07, 1.38]" and e[0] == "README.md")
    assert not figure_problems(readme, *entry[1:])
    assert figure_problems(readme.replace("1.22 [1.07, 1.38]", "1.22 [1.07, 1.39]"), *entry[1:])
    assert figure_problems(readme, "ViT-S -> ViT-Ti 1.23 [1.07, 1.38]", "1.23 [1.07, 1.38]", *entry[3:])
    page = REPO / "results/transformers/README.md"
    source, header, rows, _ = next(v for v in views(page) if v[0] == VIT1)
    assert not check_view(source, header, rows)
    changed = [[c.replace("1.22 [1.07, 1.38]", "1.22 [1.08, 1.38]") for c in r] for r in rows]
    assert check_view(source, header, changed)


def test_the_zoo_table_is_the_counts_of_its_csv_files():
    """results/zoo/table.md (quoted by docs/custom-transformers.md as rows of it) is what the zoo script makes from
    the committed identity CSVs, and each CSV's .txt holds the script's summary lines of it."""
    from bench.measure.zoo_identity import read_rows, summary, table

    assert (REPO / "results/zoo/table.md").read_text() == table(REPO), \
        "results/zoo/table.md is stale: run .venv/bin/python -m bench.measure.zoo_identity --table"
    for name, floor, cap in (("identity", 0, 60e6), ("identity_60M_200M", 60e6, 200e6)):
        header = (REPO / f"results/zoo/{name}.txt").read_text()
        for line in summary(read_rows(REPO / f"results/zoo/{name}.csv"), cap, floor).splitlines():
            assert line in header, f"results/zoo/{name}.txt lacks the summary line {line[:80]!r}"

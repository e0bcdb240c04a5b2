"""The table's rows: one per (pair, init), plus one ``ALL`` row per init; these are their columns, in order.

Every writer (``table.csv``, ``table.md``, ``table.tex``, the plots) reads rows keyed by :data:`COLUMNS`;
a new column goes here first. What each column means: docs/experiments.md, "The table and its columns".

    >>> COLUMNS[:3], CLIPPED["ratio_best_mean"], CLIPPED["ratio_best_bn_mean"]
    (['pair', 'init', 'n'], 'ratio_best_clipped', 'ratio_best_bn_clipped')
"""

from __future__ import annotations

ALL = "ALL"  # the pair of the rows that average each ratio column over pairs
REFERENCE_INIT = "random"  # ratios are relative to this init
COMPARE_INIT = "dpiat"  # the faithful method: every other init also gets a paired ratio to it (vs_dpiat_*)

# Averaged over pairs in the ALL rows; each has an interval over seeds in a pair's row.
RATIO_COLUMNS = ["ratio_best_mean", "ratio_final_mean", "ratio_best_paper", "ratio_final_paper",
                 "ratio_best_bn_mean", "ratio_final_bn_mean"]
CLIPPED = {c: c.replace("_mean", "") + "_clipped" for c in RATIO_COLUMNS}  # ratio_best_clipped, ...
COMPARE_COLUMNS = ["vs_dpiat_best_mean", "vs_dpiat_best_bn_mean"]  # averaged, not clipped
COLUMNS = [
    "pair", "init", "n",
    "init_top1_mean", "init_top1_bn_mean",
    "best_top1_mean", "best_top1_std", "final_top1_mean", "final_top1_std",
    "best_top1_bn_mean", "best_top1_bn_std", "final_top1_bn_mean", "final_top1_bn_std",
    "ratio_best_mean", "ratio_best_ci_low", "ratio_best_ci_high",
    "ratio_final_mean", "ratio_final_ci_low", "ratio_final_ci_high",
    "ratio_best_bn_mean", "ratio_best_bn_ci_low", "ratio_best_bn_ci_high",
    "ratio_final_bn_mean", "ratio_final_bn_ci_low", "ratio_final_bn_ci_high",
    "ratio_best_seeds", "ratio_best_bn_seeds", "interval", "n_ratio",
    "vs_dpiat_best_mean", "vs_dpiat_best_ci_low", "vs_dpiat_best_ci_high",
    "vs_dpiat_best_bn_mean", "vs_dpiat_best_bn_ci_low", "vs_dpiat_best_bn_ci_high",
    "ratio_best_paper", "ratio_final_paper", *CLIPPED.values(), "paper_figure",
    "epochs", "n_runs", "n_finished", "n_running", "n_failed", "n_partial",
    "source", "target", "data", "similarity", "runs_from", "note",
]


def init_order(init: str) -> tuple:
    """Rows of the reference init first, then the others by name."""
    return (init != REFERENCE_INIT, init)

"""The table's rows: one per (pair, init), plus one ``ALL`` row per init; these are their columns, in order.

Every writer (``table.csv``, ``table.md``, ``table.tex``, the plots) reads rows keyed by :data:`COLUMNS`;
a new column goes here first. What each column means: README, "The table and its columns".

    >>> COLUMNS[:3], CLIPPED["ratio_best_mean"]
    (['pair', 'init', 'n'], 'ratio_best_clipped')
"""

from __future__ import annotations

ALL = "ALL"  # the pair of the rows that average each ratio column over pairs
REFERENCE_INIT = "random"  # ratios are relative to this init

RATIO_COLUMNS = ["ratio_best_mean", "ratio_final_mean", "ratio_best_paper", "ratio_final_paper"]
CLIPPED = {c: c.replace("_mean", "") + "_clipped" for c in RATIO_COLUMNS}  # ratio_best_clipped, ...
COLUMNS = [
    "pair", "init", "n",
    "best_top1_mean", "best_top1_std", "final_top1_mean", "final_top1_std",
    "ratio_best_mean", "ratio_best_ci_low", "ratio_best_ci_high",
    "ratio_final_mean", "ratio_final_ci_low", "ratio_final_ci_high", "n_ratio",
    "ratio_best_paper", "ratio_final_paper", *CLIPPED.values(), "paper_figure",
    "epochs", "n_runs", "n_finished", "n_running", "n_failed", "n_partial",
    "source", "target", "data", "similarity", "runs_from", "note",
]


def init_order(init: str) -> tuple:
    """Rows of the reference init first, then the others by name."""
    return (init != REFERENCE_INIT, init)

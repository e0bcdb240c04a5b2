"""The table's statistics: mean and sample std, the bootstrap interval of a mean, similarity correlations.

    >>> mean_std([0.7]), mean_std([])
    ((0.7, None), (None, None))
    >>> bootstrap_ci([1.5, 1.5, 1.5])
    (1.5, 1.5)
"""

from __future__ import annotations

import math

import numpy as np

from bench.results.columns import ALL

N_BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0  # fixed, so the same runs always give the same interval


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1); std is None for one value, both None for none."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def bootstrap_ci(values, n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED):
    """Percentile bootstrap 95% interval of the mean; (None, None) for fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None, None
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_resamples, v.size))
    low, high = np.percentile(v[idx].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def similarity_correlations(rows: list[dict], min_pairs: int = 3) -> dict[str, tuple[float, int]]:
    """Per init: Pearson r between ``similarity`` and ``ratio_best_mean`` over pairs, and n (>= min_pairs).

    r is NaN when either is constant over the pairs.
    """
    out = {}
    for init in dict.fromkeys(r["init"] for r in rows if r["pair"] != ALL):
        pts = [(r["similarity"], r["ratio_best_mean"]) for r in rows if r["init"] == init and r["pair"] != ALL
               and r["similarity"] is not None and r["ratio_best_mean"] is not None]
        if len(pts) >= min_pairs:
            x, y = np.array(pts).T
            r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else math.nan
            out[init] = (r, len(pts))
    return out

"""The table's statistics: mean and sample std, the 95% interval of a mean, similarity correlations.

Intervals are honest at the number of seeds a benchmark can afford: a percentile bootstrap over 3 values
can only resample 10 distinct means and is far too narrow, so below :data:`MIN_BOOTSTRAP` seeds the
interval is Student's t (which assumes roughly normal per-seed values and is wide at small n, as it should
be), and the per-seed values are listed beside it.

    >>> mean_std([0.7]), mean_std([])
    ((0.7, None), (None, None))
    >>> bootstrap_ci([1.5, 1.5, 1.5])
    (1.5, 1.5)
    >>> low, high, how = interval([1.0, 1.2, 1.1]); round(low, 3), round(high, 3), how
    (0.852, 1.348, 't')
"""

from __future__ import annotations

import math

import numpy as np

from bench.results.columns import ALL

N_BOOTSTRAP = 10_000
BOOTSTRAP_SEED = 0  # fixed, so the same runs always give the same interval
MIN_BOOTSTRAP = 5  # from this many values on, a percentile bootstrap; below, Student's t


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


def t_ci(values, level: float = 0.95) -> tuple[float | None, float | None]:
    """Student's t interval of the mean: mean +- t_(n-1) * s / sqrt(n); (None, None) for fewer than 2 values."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None, None
    half = float(t.ppf(0.5 + level / 2, v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return float(v.mean()) - half, float(v.mean()) + half


def interval(values) -> tuple[float | None, float | None, str | None]:
    """The 95% interval of the mean of ``values`` and how it was made: ``t`` below :data:`MIN_BOOTSTRAP`
    values, ``bootstrap`` from there on; (None, None, None) for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None, None, None
    if n < MIN_BOOTSTRAP:
        return (*t_ci(values), "t")
    return (*bootstrap_ci(values), "bootstrap")


def per_seed(values) -> str:
    """'1.02 0.98 1.10': the per-seed values behind a mean, in seed order (2 decimals)."""
    return " ".join(f"{v:.2f}" for v in values)


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

"""How well a predictor picks sources: the statistics of source selection, for any table of scored pairs.

A *record* is one (source, target) pair with a predictor's score and the measured gain (e.g. the paired ratio
to random init). What a user holding one target needs is the order of sources *for that target*, so besides
the pooled rank correlation (which also rewards knowing which targets gain more overall) everything here is
computed within each target and then summarised over targets:

- ``pooled_spearman``: Spearman's rho over all pairs (average ranks for ties).
- ``within_target_spearman``: rho over each target's sources; their mean, and a 95% interval over targets
  (:func:`bench.results.stats.interval`: Student's t below 5 targets, a percentile bootstrap over targets
  from 5 on; each target's pairs stay together). A target whose scores or gains are all equal has no rho and
  is left out (counted in ``targets_without_rho``).
- ``top1_hits``: over targets, whether the predictor's best-scored source is the measured best. Ties are
  broken uniformly at random *in expectation*: when k sources share the top score, the target contributes the
  fraction of them whose gain equals the best gain (so two tied `tf_`/non-`tf_` twins, one of them best,
  count 0.5). Ties in the gain: every source with the best gain counts as best.
- ``mean_pick_over_best``: over targets, gain(pick) / gain(best), the pick's gain averaged over tied top
  scores (1 = always the best source). ``random_pick_over_best`` is the same for a uniformly random pick (the
  mean gain over the target's sources / the best), the floor any predictor should clear; ``random_top1_hits``
  the expected hits of a random pick.

:func:`paired_difference` compares two predictors on the same targets: the per-target difference of their
within-target rho, its mean with a t interval, and how many targets favour each.

    >>> recs = [{"target": "t", "source": s, "score": x, "gain": g}
    ...         for s, x, g in [("a", 1, 1.5), ("b", 2, 1.2), ("c", 3, 2.0)]]
    >>> st = selection_stats(recs, "score", "gain")
    >>> st["pooled_spearman"], st["top1_hits"], st["mean_pick_over_best"]
    (0.5, 1.0, 1.0)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from bench.results.stats import interval


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (Spearman's convention)."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v), dtype=float)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks; NaN when either side is constant or n < 2."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} scores but {len(y)} gains")
    if len(x) < 2:
        return math.nan
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def by_target(records: Sequence[dict], score: str, gain: str, group: str = "target") -> dict[str, list[dict]]:
    """The records that have both a score and a gain, grouped by ``group`` (in first-seen order)."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.get(score) is None or r.get(gain) is None:
            continue
        if isinstance(r[score], float) and math.isnan(r[score]):
            continue
        out[r[group]].append(r)
    return dict(out)


def pick(rows: list[dict], score: str, gain: str) -> tuple[float, float]:
    """(expected hit, expected gain of the pick) for one target: uniform over the sources tied at the top score."""
    top = max(r[score] for r in rows)
    best = max(r[gain] for r in rows)
    tied = [r for r in rows if r[score] == top]
    hit = sum(r[gain] == best for r in tied) / len(tied)
    return hit, float(np.mean([r[gain] for r in tied]))


def selection_stats(records: Sequence[dict], score: str, gain: str, group: str = "target") -> dict:
    """The statistics of the module docstring for predictor ``score`` against ``gain``, grouped by ``group``."""
    groups = by_target(records, score, gain, group)
    flat = [r for rows in groups.values() for r in rows]
    per_target, hits, pick_over_best, random_pick, random_hits = {}, [], [], [], []
    for name, rows in groups.items():
        rho = spearman([r[score] for r in rows], [r[gain] for r in rows])
        best = max(r[gain] for r in rows)
        hit, picked = pick(rows, score, gain)
        n_best = sum(r[gain] == best for r in rows)
        per_target[name] = {"sources": len(rows), "spearman": None if math.isnan(rho) else rho, "hit": hit,
                            "pick": [r["source"] for r in rows if r[score] == max(x[score] for x in rows)],
                            "best": [r["source"] for r in rows if r[gain] == best],
                            "pick_over_best": picked / best if best else None}
        hits.append(hit)
        random_hits.append(n_best / len(rows))
        if best:
            pick_over_best.append(picked / best)
            random_pick.append(float(np.mean([r[gain] for r in rows])) / best)
    rhos = [t["spearman"] for t in per_target.values() if t["spearman"] is not None]
    low, high, how = interval(rhos)
    pooled = spearman([r[score] for r in flat], [r[gain] for r in flat]) if flat else math.nan
    return {
        "pairs": len(flat),
        "targets": len(groups),
        "pooled_spearman": None if math.isnan(pooled) else pooled,
        "within_target_spearman_mean": float(np.mean(rhos)) if rhos else None,
        "within_target_interval": [low, high] if low is not None else None,
        "interval_kind": f"95% {how} over targets" if how else None,
        "targets_without_rho": len(groups) - len(rhos),
        "top1_hits": float(sum(hits)),
        "random_top1_hits": float(sum(random_hits)),
        "mean_pick_over_best": float(np.mean(pick_over_best)) if pick_over_best else None,
        "random_pick_over_best": float(np.mean(random_pick)) if random_pick else None,
        "per_target": per_target,
    }


def paired_difference(a: dict, b: dict) -> dict | None:
    """Predictor ``a`` minus ``b`` (two :func:`selection_stats` results on the same records): within-target rho,
    per target where both have one; mean, 95% t interval (or bootstrap from 5 targets), and the counts of
    targets where a is better / worse / equal. None when no target has both."""
    common = [t for t in a["per_target"] if t in b["per_target"]
              and a["per_target"][t]["spearman"] is not None and b["per_target"][t]["spearman"] is not None]
    if not common:
        return None
    d = [a["per_target"][t]["spearman"] - b["per_target"][t]["spearman"] for t in common]
    low, high, how = interval(d)
    return {"targets": len(common), "mean": float(np.mean(d)), "interval": [low, high] if low is not None else None,
            "interval_kind": f"95% {how} over targets" if how else None,
            "better": sum(x > 1e-12 for x in d), "worse": sum(x < -1e-12 for x in d),
            "equal": sum(abs(x) <= 1e-12 for x in d)}

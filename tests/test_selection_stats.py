"""Source-selection statistics on small hand-made tables whose answers are computed by hand in the comments."""

import math

import pytest
from scipy.stats import spearmanr

from bench.results.selection_stats import paired_difference, ranks, selection_stats, spearman


def rec(target, source, score, gain, **more):
    return {"target": target, "source": source, "score": score, "gain": gain, **more}


# T1: scores 1 2 3, gains 1.5 1.2 2.0 -> rank differences (-1, 1, 0): rho = 1 - 6*2/(3*8) = 0.5; the top score (c)
#     is the best source: hit 1, pick/best 1; random pick: mean(1.5, 1.2, 2.0) / 2.0 = 0.78333
# T2: scores 0.9 0.9 0.5 0.1 (a, b tied at the top), gains 1.0 2.0 1.5 0.5 -> score ranks 3.5 3.5 2 1, gain ranks
#     2 4 3 1: centred (1, 1, -.5, -1.5) and (-.5, 1.5, .5, -1.5), sum of products 3, sums of squares 4.5 and 5:
#     rho = 3 / sqrt(22.5) = 0.632456; tied pick a|b, best b: hit 1/2, pick gain (1 + 2)/2 = 1.5, pick/best 0.75;
#     random pick 1.25 / 2 = 0.625, random hit 1/4
# T3: equal gains 1, 1 -> no rho; both are best: hit 1, pick/best 1, random 1
TABLE = [rec("T1", "a", 1, 1.5), rec("T1", "b", 2, 1.2), rec("T1", "c", 3, 2.0),
         rec("T2", "a", 0.9, 1.0), rec("T2", "b", 0.9, 2.0), rec("T2", "c", 0.5, 1.5), rec("T2", "d", 0.1, 0.5),
         rec("T3", "a", 0.3, 1.0), rec("T3", "b", 0.2, 1.0)]


def test_ranks_average_ties():
    assert list(ranks([0.9, 0.9, 0.5, 0.1])) == [3.5, 3.5, 2.0, 1.0]
    assert list(ranks([3, 1, 2])) == [3.0, 1.0, 2.0]


def test_spearman_hand_values_and_degenerate():
    assert spearman([1, 2, 3], [1.5, 1.2, 2.0]) == pytest.approx(0.5)
    assert spearman([0.9, 0.9, 0.5, 0.1], [1.0, 2.0, 1.5, 0.5]) == pytest.approx(3 / math.sqrt(22.5))
    assert math.isnan(spearman([1, 2], [1, 1]))
    assert math.isnan(spearman([1], [2]))
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_selection_stats_by_hand():
    st = selection_stats(TABLE, "score", "gain")
    assert st["pairs"] == 9 and st["targets"] == 3 and st["targets_without_rho"] == 1
    assert st["per_target"]["T1"]["spearman"] == pytest.approx(0.5)
    assert st["per_target"]["T2"]["spearman"] == pytest.approx(0.632456, abs=1e-6)
    assert st["per_target"]["T3"]["spearman"] is None
    assert st["within_target_spearman_mean"] == pytest.approx((0.5 + 0.632456) / 2, abs=1e-6)
    # two targets: Student's t with 1 degree of freedom, half width t(0.975, 1) * |difference| / 2
    low, high = st["within_target_interval"]
    assert (high - low) / 2 == pytest.approx(12.7062 * (0.632456 - 0.5) / 2, rel=1e-4)
    assert st["interval_kind"] == "95% t over targets"
    assert st["top1_hits"] == pytest.approx(1 + 0.5 + 1)
    assert st["random_top1_hits"] == pytest.approx(1 / 3 + 1 / 4 + 1)
    assert st["mean_pick_over_best"] == pytest.approx((1 + 0.75 + 1) / 3)
    assert st["random_pick_over_best"] == pytest.approx((4.7 / 3 / 2.0 + 0.625 + 1) / 3)
    assert st["per_target"]["T2"]["pick"] == ["a", "b"] and st["per_target"]["T2"]["best"] == ["b"]
    # the pooled value mixes targets: checked against scipy's independent implementation
    expected = spearmanr([r["score"] for r in TABLE], [r["gain"] for r in TABLE]).statistic
    assert st["pooled_spearman"] == pytest.approx(expected)


def test_missing_scores_are_left_out_not_counted():
    table = TABLE + [rec("T1", "z", None, 9.0), rec("T2", "z", float("nan"), 9.0)]
    assert selection_stats(table, "score", "gain")["pairs"] == 9


def test_perfect_and_reversed_predictors():
    perfect = [dict(r, score=r["gain"]) for r in TABLE]
    st = selection_stats(perfect, "score", "gain")
    assert st["within_target_spearman_mean"] == pytest.approx(1.0)
    assert st["top1_hits"] == 3 and st["mean_pick_over_best"] == 1
    reversed_ = [dict(r, score=-r["gain"]) for r in TABLE]
    st = selection_stats(reversed_, "score", "gain")
    assert st["within_target_spearman_mean"] == pytest.approx(-1.0)
    # T1 picks b (1.2 of 2.0), T2 picks d (0.5 of 2.0), T3 (equal gains) cannot miss
    assert st["top1_hits"] == 1 and st["mean_pick_over_best"] == pytest.approx((0.6 + 0.25 + 1) / 3)


def test_grouping_key_is_a_parameter():
    authors = [{"student": r["target"], "source": r["source"], "sim": r["score"], "acc_ratio": r["gain"]}
               for r in TABLE]
    a = selection_stats(authors, "sim", "acc_ratio", group="student")
    b = selection_stats(TABLE, "score", "gain")
    assert {k: a[k] for k in ("pooled_spearman", "top1_hits", "mean_pick_over_best")} == \
           {k: b[k] for k in ("pooled_spearman", "top1_hits", "mean_pick_over_best")}


def test_paired_difference():
    other = [dict(r, other=r["gain"]) for r in TABLE]  # a perfect predictor beside "score"
    perfect = selection_stats(other, "other", "gain")
    score = selection_stats(other, "score", "gain")
    d = paired_difference(perfect, score)
    # T1: 1 - 0.5, T2: 1 - 0.632456; T3 has no rho
    assert d["targets"] == 2 and d["better"] == 2 and d["worse"] == 0
    assert d["mean"] == pytest.approx(((1 - 0.5) + (1 - 0.632456)) / 2, abs=1e-6)
    assert paired_difference(score, score)["equal"] == 2

"""bench/aggregate.py (bench/results/) on hand-written run folders, checked against numbers computed by hand.

The base experiment (2 epochs, val_top1 per epoch) is chosen so that every statistic is a short fraction:

    a_to_t  random  seed0 [.2 .4]  seed1 [.5 .4]  seed2 [.3 .6]   best .4 .5 .6   final .4 .4 .6
    a_to_t  dpiat   seed0 [.8 .6]  seed1 [.5 1.]  seed2 [.6 .6]   best .8 1. .6   final .6 1. .6
                    per-seed ratio best 2, 2, 1 (mean 5/3), final 1.5, 2.5, 1 (mean 5/3)
                    paper def.: mean curves [1.9/3 2.2/3] / [1/3 1.4/3] -> best and final 11/7
    c_to_u  random  seed0 [.6 .5]  seed1 [.6 .5]                  mean curve [.6 .5]
    c_to_u  dpiat   seed0 [.2 .4]  seed1 [.3 .6]                  ratio best 2/3, 1 (5/6); final .8, 1.2 (1)
                    paper def.: best .5/.6 = 5/6, final .5/.5 = 1
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.aggregate import main
from bench.errors import AggregateError
from bench.results.runs import load_run
from bench.results.stats import bootstrap_ci, mean_std
from bench.results.table import aggregate

REPO = Path(__file__).resolve().parents[1]
RANDOM_T = [[0.2, 0.4], [0.5, 0.4], [0.3, 0.6]]
DPIAT_A = [[0.8, 0.6], [0.5, 1.0], [0.6, 0.6]]
RANDOM_U = [[0.6, 0.5], [0.6, 0.5]]
DPIAT_C = [[0.2, 0.4], [0.3, 0.6]]


def write_run(root: Path, pair: str, init: str, seed: int, curve: list[float], *, status="finished",
              source=None, target="t", data="fm", epochs=2, similarity=None, reason=None, init_top1=None,
              bn: list[float] | None = None, init_top1_bn=None) -> Path:
    """A run.json as the harness writes it (bench/running/record.py schema), with only what the table reads;
    ``bn``: the BatchNorm-recalibrated curve (val_top1_bn), absent in runs that did not record it."""
    path = root / pair / init / f"seed{seed}" / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    init_metrics = None if init_top1 is None else {"val_top1": init_top1, "val_loss": 2.3}
    if init_top1_bn is not None:
        init_metrics["val_top1_bn"] = init_top1_bn
    metrics = [{"epoch": e, "val_top1": v, "val_loss": 1.0} for e, v in enumerate(curve, 1)]
    for m, v in zip(metrics, bn or []):
        m["val_top1_bn"] = v
    run = {"schema_version": 1, "status": status, "failure_reason": reason, "experiment": root.name,
           "pair": pair, "init": init, "seed": seed, "source": source, "target": target, "data": data,
           "epochs": epochs, "similarity": similarity, "init_metrics": init_metrics, "metrics": metrics}
    path.write_text(json.dumps(run))
    return path


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "results" / "runs" / "exp"
    for seed, curve in enumerate(RANDOM_T):
        write_run(root, "a_to_t", "random", seed, curve, init_top1=0.1)
    for seed, curve in enumerate(DPIAT_A):
        write_run(root, "a_to_t", "dpiat", seed, curve, source="a", similarity=0.9, init_top1=0.3)
    for seed, curve in enumerate(RANDOM_U):
        write_run(root, "c_to_u", "random", seed, curve, target="u")
    for seed, curve in enumerate(DPIAT_C):
        write_run(root, "c_to_u", "dpiat", seed, curve, source="c", target="u", similarity=0.5)
    return root


def table(root: Path, **kw) -> dict:
    """(pair, init) -> row, tables only, written next to the runs."""
    return {(r["pair"], r["init"]): r for r in aggregate(root, root.parent / "out", plots=False, **kw)}


# ----------------------------------------------------------------------------- numbers

def test_means_stds_and_ratios_match_hand_computation(runs):
    t = table(runs)
    d = t["a_to_t", "dpiat"]
    assert d["n"] == 3 and d["n_ratio"] == 3 and d["epochs"] == 2
    assert d["best_top1_mean"] == pytest.approx(0.8) and d["best_top1_std"] == pytest.approx(0.2)
    assert d["final_top1_mean"] == pytest.approx(2.2 / 3)
    assert d["final_top1_std"] == pytest.approx(math.sqrt(0.16 / 3))  # deviations -.4/3, .8/3, -.4/3
    assert d["ratio_best_mean"] == pytest.approx(5 / 3) and d["ratio_final_mean"] == pytest.approx(5 / 3)
    assert d["ratio_best_paper"] == pytest.approx(11 / 7) and d["ratio_final_paper"] == pytest.approx(11 / 7)
    assert (d["source"], d["target"], d["data"], d["similarity"]) == ("a", "t", "fm", 0.9)

    c = t["c_to_u", "dpiat"]
    assert c["ratio_best_mean"] == pytest.approx(5 / 6) and c["ratio_final_mean"] == pytest.approx(1.0)
    assert c["ratio_best_paper"] == pytest.approx(5 / 6) and c["ratio_final_paper"] == pytest.approx(1.0)
    assert c["ratio_best_clipped"] == 1.0 and c["ratio_best_paper_clipped"] == 1.0

    r = t["a_to_t", "random"]  # the reference: 1 by construction, shown
    assert r["best_top1_mean"] == pytest.approx(0.5) and r["best_top1_std"] == pytest.approx(0.1)
    assert (r["ratio_best_mean"], r["ratio_best_ci_low"], r["ratio_best_ci_high"]) == (1.0, 1.0, 1.0)
    u = t["c_to_u", "random"]
    assert u["best_top1_std"] == 0.0 and u["final_top1_mean"] == pytest.approx(0.5)


def test_bootstrap_intervals():
    assert bootstrap_ci([1.5, 1.5, 1.5]) == (1.5, 1.5)  # all equal: degenerate interval
    assert bootstrap_ci([1.2]) == (None, None)  # one seed: no interval
    # two seeds: resampled means are a (1/4), (a+b)/2 (1/2), b (1/4), so the 2.5/97.5 percentiles are a, b
    assert bootstrap_ci([0.8, 1.2]) == pytest.approx((0.8, 1.2))
    # [2, 2, 1]: the mean is 1 with probability 1/27 > 2.5% and 2 with 8/27, so the interval is [1, 2]
    assert bootstrap_ci([2.0, 2.0, 1.0]) == pytest.approx((1.0, 2.0))
    assert bootstrap_ci([2.0, 2.0, 1.0]) == bootstrap_ci([2.0, 2.0, 1.0])  # fixed RNG seed
    assert mean_std([0.7]) == (0.7, None) and mean_std([]) == (None, None)


def test_ratio_intervals_in_the_table_are_student_t_below_five_seeds(runs):
    # A bootstrap over 3 seeds can resample only 10 distinct means (too narrow); below 5 seeds the table uses
    # mean +- t(0.975, n-1) * s / sqrt(n) and lists the per-seed ratios.
    t975 = {1: 12.706204736174707, 2: 4.302652729749464}
    t = table(runs)
    d = t["a_to_t", "dpiat"]
    half = t975[2] * math.sqrt(1 / 3) / math.sqrt(3)  # best ratios 2, 2, 1: s = sqrt(1/3)
    assert (d["ratio_best_ci_low"], d["ratio_best_ci_high"]) == pytest.approx((5 / 3 - half, 5 / 3 + half))
    half = t975[2] * math.sqrt(21 / 36) / math.sqrt(3)  # final ratios 1.5, 2.5, 1: s^2 = 21/36
    assert (d["ratio_final_ci_low"], d["ratio_final_ci_high"]) == pytest.approx((5 / 3 - half, 5 / 3 + half))
    assert d["interval"] == "t" and d["ratio_best_seeds"] == "2.00 2.00 1.00"
    c = t["c_to_u", "dpiat"]
    half = t975[1] * (1 / 3) / math.sqrt(2) / math.sqrt(2)  # 2/3 and 1: s = (1/3) / sqrt(2)
    assert (c["ratio_best_ci_low"], c["ratio_best_ci_high"]) == pytest.approx((5 / 6 - half, 5 / 6 + half))


def test_intervals_are_bootstrap_from_five_seeds(tmp_path):
    root = tmp_path / "results" / "runs" / "exp"
    ratios = [1.0, 1.2, 1.4, 1.6, 1.8]
    for seed, r in enumerate(ratios):
        write_run(root, "a_to_t", "random", seed, [0.25, 0.25])
        write_run(root, "a_to_t", "dpiat", seed, [0.25 * r, 0.25 * r], source="a")
    d = table(root)["a_to_t", "dpiat"]
    assert d["interval"] == "bootstrap"
    assert (d["ratio_best_ci_low"], d["ratio_best_ci_high"]) == pytest.approx(bootstrap_ci(ratios))


def test_all_rows_average_pairs_with_and_without_clipping(runs):
    a = table(runs)["ALL", "dpiat"]
    assert a["n"] == 2
    assert a["ratio_best_mean"] == pytest.approx((5 / 3 + 5 / 6) / 2)  # 1.25
    assert a["ratio_best_clipped"] == pytest.approx((5 / 3 + 1) / 2)  # c_to_u's 5/6 counts as 1
    assert a["ratio_final_mean"] == pytest.approx((5 / 3 + 1) / 2)
    assert a["ratio_final_clipped"] == pytest.approx((5 / 3 + 1) / 2)
    assert a["ratio_best_paper"] == pytest.approx((11 / 7 + 5 / 6) / 2)
    assert a["ratio_best_paper_clipped"] == pytest.approx((11 / 7 + 1) / 2)
    assert ("ALL", "random") not in table(runs)


def test_epochs_option_uses_the_first_n_epochs(runs):
    # a run still running after epoch 1 counts when N = 1, and the note says it is unfinished
    write_run(runs, "a_to_t", "dpiat", 3, [0.9], status="running", source="a")
    write_run(runs, "a_to_t", "random", 3, [0.3], status="running")
    d = table(runs, epochs=1)["a_to_t", "dpiat"]
    assert d["n"] == 4 and d["epochs"] == 1
    assert d["best_top1_mean"] == pytest.approx((0.8 + 0.5 + 0.6 + 0.9) / 4) == d["final_top1_mean"]
    assert d["ratio_best_mean"] == pytest.approx((4 + 1 + 2 + 3) / 4)  # .8/.2, .5/.5, .6/.3, .9/.3
    assert "not finished" in d["note"] and "seed3 running" in d["note"]
    too_many = table(runs, epochs=3)["a_to_t", "dpiat"]
    assert too_many["n"] == 0 and too_many["best_top1_mean"] is None and "exceeds" in too_many["note"]


# ----------------------------------------------------------------------------- robustness

@pytest.mark.parametrize("status", ["failed", "running", "finished"])
def test_partial_runs_are_counted_and_named_not_averaged(runs, status):
    reason = "loss became NaN at epoch 2, step 17" if status == "failed" else None
    write_run(runs, "a_to_t", "dpiat", 3, [0.05], status=status, source="a", reason=reason)
    write_run(runs, "a_to_t", "random", 3, [0.3, 0.5])
    t = table(runs)
    d = t["a_to_t", "dpiat"]
    assert (d["n"], d["n_runs"], d["n_partial"], d[f"n_{status}"]) == (3, 4, 1, 1 + 3 * (status == "finished"))
    assert "runs not averaged in: a_to_t (1)" in t["ALL", "dpiat"]["note"]  # the headline says it too
    assert d["best_top1_mean"] == pytest.approx(0.8) and d["ratio_best_mean"] == pytest.approx(5 / 3)
    assert f"seed3 {status} (1/2 epochs)" in d["note"]
    if reason:
        assert reason in d["note"]


def test_missing_random_seed_gives_no_ratio_for_that_seed(runs):
    shutil.rmtree(runs / "a_to_t" / "random" / "seed2")
    d = table(runs)["a_to_t", "dpiat"]
    assert d["n"] == 3 and d["n_ratio"] == 2
    assert d["ratio_best_mean"] == pytest.approx(2.0)  # seeds 0 and 1 only, not seed2 against anything
    assert (d["ratio_best_ci_low"], d["ratio_best_ci_high"]) == (2.0, 2.0)
    assert "no ratio for seed2" in d["note"]
    # the paper's definition averages each init over its own seeds: (2.2/3) / max(.35, .4)
    assert d["ratio_best_paper"] == pytest.approx(2.2 / 3 / 0.4)


def test_failed_random_seed_gives_no_ratio_for_that_seed(runs):
    write_run(runs, "a_to_t", "random", 2, [0.3], status="failed", reason="killed")
    d = table(runs)["a_to_t", "dpiat"]
    assert d["n_ratio"] == 2 and d["ratio_best_mean"] == pytest.approx(2.0)


def test_pair_without_random_has_no_ratios(runs):
    shutil.rmtree(runs / "c_to_u" / "random")
    t = table(runs)
    assert t["c_to_u", "random"]["n"] == 0 and "no random runs" in t["c_to_u", "random"]["note"]
    assert t["c_to_u", "dpiat"]["ratio_best_mean"] is None and t["c_to_u", "dpiat"]["n"] == 2
    a = t["ALL", "dpiat"]
    assert a["n"] == 1 and a["ratio_best_mean"] == pytest.approx(5 / 3) and "no ratio for c_to_u" in a["note"]


BAD_RUNS = {
    "not JSON": ("{truncated", "not valid JSON"),
    "not an object": ("[1, 2]", "expected a JSON object"),
    "missing keys": ('{"status": "finished"}', "missing keys"),
    "unknown status": (dict(status="done"), "status 'done'"),
    "accuracy as text": (dict(metrics=[{"epoch": 1, "val_top1": "0.8"}]), "metrics[0].val_top1"),
    "accuracy in percent": (dict(metrics=[{"epoch": 1, "val_top1": 81.0}]), "a percentage?"),
    "epoch as text": (dict(metrics=[{"epoch": "1", "val_top1": 0.8}]), "metrics[0].epoch"),
    "epochs zero": (dict(epochs=0), "'epochs' must be a positive integer"),
    "no target": (dict(target=None), "'target'"),
    "init_metrics a list": (dict(init_metrics=[0.1]), "'init_metrics'"),
    "wrong folder": (dict(seed=7), "lives in dpiat/seed3"),
}


@pytest.mark.parametrize("case", BAD_RUNS)
def test_malformed_run_json_is_reported_by_path_and_skipped(runs, case, capsys):
    content, message = BAD_RUNS[case]
    path = write_run(runs, "a_to_t", "dpiat", 3, [0.9, 0.9], source="a")
    if isinstance(content, dict):
        run = json.loads(path.read_text())
        run.update(content)
        content = json.dumps(run)
    path.write_text(content)
    d = table(runs)["a_to_t", "dpiat"]
    assert d["n"] == 3 and d["best_top1_mean"] == pytest.approx(0.8)  # the other seeds still count
    assert str(path) in d["note"] and message in d["note"]
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_seed_folder_without_run_json_is_reported(runs):
    (runs / "a_to_t" / "dpiat" / "seed3").mkdir()
    assert "seed3/run.json: missing" in table(runs)["a_to_t", "dpiat"]["note"]


def test_sources_folder_is_not_part_of_the_table(runs, capsys):
    bad = runs / "sources" / "a" / "seed0" / "run.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{half")
    assert not any(p == "sources" for p, _ in table(runs))
    assert "sources" not in capsys.readouterr().err


def test_runs_that_differ_in_data_are_not_mixed(runs):
    write_run(runs, "a_to_t", "dpiat", 3, [0.9, 0.9], source="a", data="cifar10")
    d = table(runs)["a_to_t", "dpiat"]
    assert d["n"] == 0 and d["best_top1_mean"] is None and "disagree" in d["note"] and "cifar10" in d["note"]


def test_source_free_baseline_shared_from_a_folder_named_after_the_target(tmp_path):
    root = tmp_path / "runs" / "exp"
    for seed, curve in enumerate(RANDOM_T):
        write_run(root, "t", "random", seed, curve)  # random once per target, not once per pair
    for seed, curve in enumerate(DPIAT_A):
        write_run(root, "a_to_t", "dpiat", seed, curve, source="a")
        write_run(root, "b_to_t", "dpiat", seed, curve, source="b")
    write_run(root, "u", "random", 0, [0.5, 0.5], target="u")  # another target: used by no pair
    t = table(root)
    assert {p for p, _ in t} == {"a_to_t", "b_to_t", "ALL"}  # the baseline folders are not pairs
    for pair in ("a_to_t", "b_to_t"):
        assert t[pair, "random"]["note"] == "shared with t" and t[pair, "random"]["runs_from"] == "t"
        assert t[pair, "random"]["n"] == 3
        assert t[pair, "dpiat"]["ratio_best_mean"] == pytest.approx(5 / 3)
    md = (root.parent / "out" / "table.md").read_text()
    assert "folder u holds runs that no pair uses" in md


def test_shared_baseline_only_from_runs_with_same_target_data_and_epochs(tmp_path):
    root = tmp_path / "runs" / "exp"
    for seed, curve in enumerate(RANDOM_T):
        write_run(root, "a_to_t", "random", seed, curve)
        write_run(root, "a_to_t", "dpiat", seed, DPIAT_A[seed], source="a")
        write_run(root, "b_to_t", "dpiat", seed, DPIAT_A[seed], source="b")
        write_run(root, "c_to_t", "dpiat", seed, DPIAT_A[seed] + [0.9], source="c", epochs=3)
        write_run(root, "d_to_t", "random", seed, curve)
    t = table(root)
    assert ("d_to_t", "dpiat") not in t  # a transfer from source a says nothing about source d
    assert t["b_to_t", "random"]["note"] == "shared with a_to_t"  # another pair with the same target
    assert t["b_to_t", "dpiat"]["ratio_best_mean"] == pytest.approx(5 / 3)
    assert t["c_to_t", "random"]["n_runs"] == 0 and "no random runs" in t["c_to_t", "random"]["note"]
    assert t["c_to_t", "dpiat"]["ratio_best_mean"] is None  # 3-epoch runs never meet 2-epoch baselines
    # the mean over pairs names every pair it leaves out, including one that has no dpiat runs at all
    assert t["ALL", "dpiat"]["note"] == "mean over 2 of 4 pairs; no ratio for c_to_t, d_to_t"


def test_random_runs_that_record_their_pairs_source_are_still_shared(tmp_path):
    # the harness writes the pair's source into every run of the pair, random ones included
    root = tmp_path / "runs" / "exp"
    for seed, curve in enumerate(RANDOM_T):
        write_run(root, "a_to_t", "random", seed, curve, source="tinynet_d", similarity=0.9)
        write_run(root, "a_to_t", "dpiat", seed, DPIAT_A[seed], source="tinynet_d", similarity=0.9)
        write_run(root, "b_to_t", "dpiat", seed, DPIAT_A[seed], source="mixnet_s", similarity=0.4)
    t = table(root)
    assert t["b_to_t", "random"]["note"] == "shared with a_to_t"
    assert t["b_to_t", "dpiat"]["ratio_best_mean"] == pytest.approx(5 / 3)
    assert t["a_to_t", "random"]["source"] is None and t["a_to_t", "random"]["similarity"] is None
    assert t["b_to_t", "dpiat"]["source"] == "mixnet_s" and t["b_to_t", "dpiat"]["similarity"] == pytest.approx(0.4)


def test_own_failed_baseline_is_not_replaced_by_a_shared_one(tmp_path):
    root = tmp_path / "runs" / "exp"
    for seed, curve in enumerate(RANDOM_T):
        write_run(root, "t", "random", seed, curve)
        write_run(root, "a_to_t", "dpiat", seed, DPIAT_A[seed], source="a")
    write_run(root, "a_to_t", "random", 0, [0.1], status="failed", reason="out of memory")
    t = table(root)
    assert t["a_to_t", "random"]["n_failed"] == 1 and "out of memory" in t["a_to_t", "random"]["note"]
    assert t["a_to_t", "dpiat"]["ratio_best_mean"] is None


def test_nothing_to_aggregate_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "runs" / "exp"
    empty.mkdir(parents=True)
    with pytest.raises(AggregateError, match="no readable run.json"):
        aggregate(empty, tmp_path / "out")
    assert main([str(tmp_path / "runs" / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no such folder" in err and "Traceback" not in err
    with pytest.raises(AggregateError, match="no readable run.json"):  # a folder above the experiment's
        aggregate(tmp_path / "runs")
    assert not (tmp_path / "runs" / "table").exists()  # nothing written when there is nothing to aggregate


def test_load_run_reads_the_curve(runs):
    run = load_run(runs / "a_to_t" / "dpiat" / "seed1" / "run.json")
    assert run.curve(2) == [0.5, 1.0] and run.curve(3) is None and run.init_top1 == 0.3


# ----------------------------------------------------------------------------- files

def test_csv_md_and_tex_show_the_same_numbers(runs):
    write_run(runs, "a_to_t", "dpiat", 3, [0.1], status="failed", source="a", reason="loss is NaN")
    write_run(runs, "x_to_t", "dpiat", 0, [0.7, 0.5], source="x")  # one seed: std '-', no interval
    rows = aggregate(runs)
    out = runs / "table"  # results/runs/exp -> results/runs/exp/table (never results/exp)
    with open(out / "table.csv") as f:
        csv_rows = {(r["pair"], r["init"]): r for r in csv.DictReader(f)}
    assert len(csv_rows) == len(rows)
    d = csv_rows["a_to_t", "dpiat"]
    assert float(d["best_top1_mean"]) == 0.8 and float(d["ratio_best_mean"]) == round(5 / 3, 6)
    assert (d["n"], d["n_runs"], d["n_failed"]) == ("3", "4", "1") and "loss is NaN" in d["note"]
    assert csv_rows["x_to_t", "dpiat"]["best_top1_std"] == ""

    md = (out / "table.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| a_to_t | dpiat |"))
    for text in ["3 of 4", "0.800 ± 0.200", "1.67 [0.23, 3.10]", "1.67 [-0.23, 3.56]"]:  # t intervals, n = 3
        assert text in line
    assert "| x_to_t | dpiat | 1 | - | 0.700 ± - | 0.500 ± - | 1.75 | 1.25 |" in md  # .7/.4, .5/.4; no init metrics
    all_line = next(ln for ln in md.splitlines() if ln.startswith("| dpiat | 3 |"))
    assert "| 1.42 | 1.47 |" in all_line  # (5/3 + 5/6 + 1.75)/3 and (5/3 + 1 + 1.75)/3

    tex = (out / "table.tex").read_text()
    # no BN curves in these runs: final top-1 instead of an empty BN column
    assert r"a\_to\_t & dpiat & 3 of 4 & 0.800 $\pm$ 0.200 & 0.733 $\pm$ 0.231 & 1.67 [0.23, 3.10]" in tex
    assert "3 of 4 | 0.300 | 0.800 ± 0.200" in line  # before training: protocol only (no BN recorded)
    assert r"dpiat & 3 & 1.42 & 1.47" in tex
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_paper_figure_is_shown_beside_ours(tmp_path):
    root = tmp_path / "results" / "runs" / "paper_imagenet"
    for seed, curve in enumerate(RANDOM_T):
        write_run(root, "a_to_t", "random", seed, curve)
        write_run(root, "a_to_t", "dpiat", seed, DPIAT_A[seed], source="a")
    a = {(r["pair"], r["init"]): r for r in aggregate(root, plots=False)}["ALL", "dpiat"]
    assert a["paper_figure"] == 1.6 and "not 50" in a["note"]  # ours is 2 epochs: said, not hidden
    md = (root / "table" / "table.md").read_text()  # your runs' table goes inside their folder
    assert "Paper: 1.6x" in md and "1.57 (paper definition)" in md


def test_plots_are_valid_pngs_and_stale_ones_go(tmp_path):
    from matplotlib.image import imread

    root = tmp_path / "runs" / "exp"
    for pair, sim, top1 in [("a_to_t", 0.1, 0.2), ("b_to_t", 0.2, 0.4), ("c_to_t", 0.3, 0.6)]:
        for seed in range(2):
            write_run(root, pair, "dpiat", seed, [top1, top1], source=pair[0], similarity=sim, init_top1=0.1)
    for seed in range(2):
        write_run(root, "t", "random", seed, [0.2, 0.2], init_top1=0.1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "curves_gone_pair.png").write_bytes(b"old")
    (out / "mine.png").write_bytes(b"a user's file")
    aggregate(root, out)
    names = {p.name for p in out.glob("*.png")}
    assert names == {"curves.png", "curves_a_to_t.png", "curves_b_to_t.png", "curves_c_to_t.png", "ratios.png",
                     "similarity_vs_ratio.png", "mine.png"}
    for name in names - {"mine.png"}:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert imread(out / name).shape[0] > 100
    # ratios 1, 2, 3 at similarity .1, .2, .3: Pearson r = 1
    assert "dpiat: Pearson r = 1.00, n = 3 pairs" in (out / "table.md").read_text()


def test_cli_writes_your_runs_table_inside_their_folder_never_over_results_exp(runs):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "aggregate.py"), str(runs), "--no-plots"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (runs / "table" / "table.csv").exists() and "table.md" in proc.stdout
    assert not (runs.parent.parent / "exp").exists()  # results/exp: where a committed table would be


# ----------------------------------------------------------------------------- both evaluations, vs dpiat

def test_recalibrated_columns_init_columns_and_paired_ratios_to_dpiat(tmp_path):
    # BatchNorm-recalibrated curves (bn) beside the protocol's; a variant compared seed by seed with dpiat.
    root = tmp_path / "results" / "runs" / "exp"
    for seed in (0, 1):
        write_run(root, "a_to_t", "random", seed, [0.2, 0.4], bn=[0.4, 0.5], init_top1=0.1, init_top1_bn=0.1)
        write_run(root, "a_to_t", "dpiat", seed, [0.1, 0.6], bn=[0.7, 0.75], source="a", init_top1=0.1,
                  init_top1_bn=0.6 + 0.1 * seed)
        write_run(root, "a_to_t", "dpiat_bn", seed, [0.3 + 0.3 * seed, 0.3], bn=[0.7, 0.9], source="a",
                  init_top1=0.2, init_top1_bn=0.7)
    t = table(root)
    d, v = t["a_to_t", "dpiat"], t["a_to_t", "dpiat_bn"]
    assert d["init_top1_mean"] == pytest.approx(0.1) and d["init_top1_bn_mean"] == pytest.approx(0.65)
    assert d["best_top1_bn_mean"] == pytest.approx(0.75) and d["final_top1_bn_mean"] == pytest.approx(0.75)
    assert d["ratio_best_mean"] == pytest.approx(1.5) and d["ratio_best_bn_mean"] == pytest.approx(1.5)
    assert d["ratio_best_bn_seeds"] == "1.50 1.50" and d["vs_dpiat_best_mean"] is None  # dpiat vs itself: none
    # dpiat_bn: best 0.3, 0.6 vs dpiat's 0.6 -> 0.5, 1.0; recalibrated 0.9 vs 0.75 -> 1.2 both seeds
    assert v["vs_dpiat_best_mean"] == pytest.approx(0.75) and v["vs_dpiat_best_bn_mean"] == pytest.approx(1.2)
    assert (v["vs_dpiat_best_bn_ci_low"], v["vs_dpiat_best_bn_ci_high"]) == pytest.approx((1.2, 1.2))
    assert v["ratio_best_bn_mean"] == pytest.approx(1.8)
    a = t["ALL", "dpiat_bn"]
    assert a["vs_dpiat_best_bn_mean"] == pytest.approx(1.2) and a["ratio_best_bn_mean"] == pytest.approx(1.8)
    assert t["a_to_t", "random"]["vs_dpiat_best_mean"] is None


def test_runs_without_the_recalibrated_evaluation_leave_its_columns_empty_and_say_so(tmp_path):
    root = tmp_path / "results" / "runs" / "exp"
    write_run(root, "a_to_t", "random", 0, [0.2, 0.4], bn=[0.4, 0.5])
    write_run(root, "a_to_t", "random", 1, [0.2, 0.4])  # an older run: no val_top1_bn
    r = table(root)["a_to_t", "random"]
    assert r["best_top1_bn_mean"] == pytest.approx(0.5) and r["best_top1_mean"] == pytest.approx(0.4)
    assert "recalibrated columns over 1 of 2 runs" in r["note"]


def test_a_table_without_any_batchnorm_evaluation_has_no_bn_columns(runs):
    # The fixture's runs never recorded val_top1_bn (networks without BatchNorm, eval.bn_batches=0): the
    # md and tex tables say so once and show final top-1 and the paired ratio to dpiat instead of empty BN columns.
    aggregate(runs, runs.parent / "out", plots=False)
    md = (runs.parent / "out" / "table.md").read_text()
    tex = (runs.parent / "out" / "table.tex").read_text()
    assert "no run here has a BatchNorm evaluation" in md and "two ways" not in md
    assert not [ln for ln in md.splitlines() if ln.startswith("|") and "BN" in ln] and "BN" not in tex
    header = next(line for line in md.splitlines() if line.startswith("| pair |"))
    assert "final top-1" in header and "vs dpiat, best" in header
    row = next(line for line in md.splitlines() if line.startswith("| a_to_t | dpiat |"))
    assert "0.800 ± 0.200" in row and "0.733 ± 0.231" in row  # best .8 1. .6, final .6 1. .6
    assert "no BatchNorm evaluation here" in tex and "Final top-1" in tex


# ----------------------------------------------------------------------------- several folders, one path rule

def test_committed_copy_results_exp_runs_aggregates_into_results_exp(runs):
    """results/<exp>/runs (the committed copy) -> results/<exp>, titled <exp>, without --out."""
    copy = runs.parent.parent / "exp" / "runs"
    shutil.copytree(runs, copy)
    assert main([str(copy), "--no-plots"]) == 0
    table_md = (copy.parent / "table.md").read_text()
    assert "exp" in table_md.splitlines()[0]
    assert main([str(copy), "--no-plots", "--epochs", "1", "--out", str(copy.parent / "epoch1")]) == 0
    assert (copy.parent / "epoch1" / "table.csv").exists()


def test_also_joins_another_experiments_runs_and_the_own_run_wins(runs, tmp_path):
    other = tmp_path / "results" / "runs" / "variants"
    write_run(other, "a_to_t", "dpiat_bn", 0, [0.5, 0.6], source="a")
    write_run(other, "a_to_t", "dpiat_bn", 1, [0.5, 0.7], source="a")
    write_run(other, "a_to_t", "random", 0, [0.9, 0.9])  # the same pair, init and seed as the proxy's: wins
    rows = {(r["pair"], r["init"]): r for r in
            aggregate(other, tmp_path / "out", plots=False, also=[runs], pairs=["a_to_t"])}
    assert {p for p, _ in rows} == {"a_to_t", "ALL"}  # c_to_u left out by pairs=
    assert rows["a_to_t", "random"]["n"] == len(RANDOM_T)  # seed 0 own, the others borrowed
    assert "runs from exp" in rows["a_to_t", "dpiat"]["note"]
    assert rows["a_to_t", "dpiat_bn"]["ratio_best_mean"] == pytest.approx(
        ((0.6 / 0.9) + (0.7 / max(RANDOM_T[1]))) / 2)
    only = aggregate(other, tmp_path / "out2", plots=False, also=[runs], inits=["random", "dpiat_bn"])
    assert {r["init"] for r in only} == {"random", "dpiat_bn"}

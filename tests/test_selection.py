"""bench/selection.py: gains from run folders, the leave-one-target-out combination, the authors' reference
and the written files, on hand-made runs (no training, no checkpoints: the predictors are given as a cache)."""

import json
from pathlib import Path

import pytest

from bench import selection as entry
from bench.results import selection
from tests.test_aggregate import write_run

# random t: seed0 BN curve 0.4 0.5, seed1 0.5 0.5
# a -> t: seed0 0.6 0.5 -> epoch 1: 0.6/0.4 = 1.5, last: best 0.6 / best 0.5 = 1.2
#         seed1 0.5 0.75 -> epoch 1: 0.5/0.5 = 1.0, last: 0.75/0.5 = 1.5      => gains 1.25 and 1.35
# b -> t: seed0 0.2 0.4 -> 0.5 and 0.8; seed1 0.5 0.5 -> 1.0 and 1.0           => gains 0.75 and 0.9
RANDOM_T = {0: [0.4, 0.5], 1: [0.5, 0.5]}
DPIAT = {("a", "t"): {0: [0.6, 0.5], 1: [0.5, 0.75]}, ("b", "t"): {0: [0.2, 0.4], 1: [0.5, 0.5]},
         ("a", "u"): {0: [0.5, 0.5], 1: [0.5, 0.5]}, ("c", "u"): {0: [0.3, 0.6], 1: [0.3, 0.6]}}
RANDOM_U = {0: [0.5, 0.5], 1: [0.5, 0.5]}


def make_grid(root: Path, failed: tuple | None = None) -> Path:
    for target, curves in (("t", RANDOM_T), ("u", RANDOM_U)):
        for seed, bn in curves.items():
            write_run(root, f"a_to_{target}", "random", seed, bn, target=target, bn=bn)
    for (s, t), seeds in DPIAT.items():
        for seed, bn in seeds.items():
            status = "failed" if failed == (s, t, seed) else "finished"
            write_run(root, f"{s}_to_{t}", "dpiat", seed, bn, source=s, target=t, bn=bn, status=status,
                      reason="diverged" if status == "failed" else None)
    preds = {f"{s}_to_{t}": {"source": s, "target": t, "similarity": sim, "overwritten": 0.5, "transfer_top1": 0.1,
                             "probe_top1": 0.5, "source_top1": 0.9, "seconds": {"similarity": 0.01}}
             for (s, t), sim in {("a", "t"): 0.9, ("b", "t"): 0.3, ("a", "u"): 0.2, ("c", "u"): 0.8}.items()}
    (root / selection.PREDICTORS_FILE).write_text(json.dumps({"pairs": preds}))
    return root


def test_gains_by_hand(tmp_path):
    root = make_grid(tmp_path / "runs" / "selection")
    records, notes, info = selection.measured_gains(root)
    got = {(r["source"], r["target"]): r for r in records}
    assert got["a", "t"]["gain_epoch1"] == pytest.approx(1.25) and got["a", "t"]["gain_last"] == pytest.approx(1.35)
    assert got["b", "t"]["gain_epoch1"] == pytest.approx(0.75) and got["b", "t"]["gain_last"] == pytest.approx(0.9)
    assert got["c", "u"]["gain_last"] == pytest.approx(1.2) and got["a", "u"]["gain_last"] == pytest.approx(1.0)
    assert info == {"epochs": 2, "seeds": [0, 1]} and not notes


def test_a_failed_seed_leaves_its_pair_out_and_says_so(tmp_path):
    root = make_grid(tmp_path / "runs" / "selection", failed=("b", "t", 1))
    records, notes, _ = selection.measured_gains(root)
    assert ("b", "t") not in {(r["source"], r["target"]) for r in records}
    assert any("b -> t left out" in n and "failed" in n for n in notes)


def test_run_writes_the_tables_and_the_summary_keys(tmp_path):
    root = make_grid(tmp_path / "runs" / "selection")
    out = tmp_path / "out"
    summary = selection.run(root, out, selection.REFERENCE, plots=False, log=lambda *_: None)
    ref = summary["reference"]
    assert ref["pairs"] == 67 and ref["targets"] == 9
    for key in ("pooled_spearman", "within_target_spearman_mean", "top1_hits", "mean_pick_over_best"):
        assert key in ref
    grid = summary["grid"]
    assert grid["pairs"] == 4 and grid["seeds"] == [0, 1] and grid["targets"] == ["t", "u"]
    sim = grid["predictors"]["similarity"]
    # within each target the higher similarity has the higher gain: rho 1 on both, 2 hits of 2
    assert sim["within_target_spearman_mean"] == pytest.approx(1.0) and sim["top1_hits"] == 2
    assert sim["mean_pick_over_best"] == 1
    # a constant predictor picks by an even split of the tie: t: (1.35 + 0.9)/2 / 1.35; u: (1.0 + 1.2)/2 / 1.2
    over = grid["predictors"]["overwritten"]
    assert over["within_target_spearman_mean"] is None and over["top1_hits"] == pytest.approx(1.0)
    assert over["mean_pick_over_best"] == pytest.approx(((2.25 / 2) / 1.35 + (2.2 / 2) / 1.2) / 2)
    assert "epoch1" in grid and summary["default_ranking"]["default"] == "similarity"
    for name in ("selection.md", "selection.csv", "pairs.csv", "summary.json"):
        assert (out / name).is_file()
    text = (out / "selection.md").read_text()
    assert "authors: CIFAR-100" in text and "ours: Fashion-MNIST" in text


def test_leave_one_target_out_never_sees_the_scored_target():
    # gain = 2 * similarity on every target: a fit on the others ranks each target perfectly
    recs = [{"pair": f"{s}_to_{t}", "target": t, "source": s, "similarity": x, "overwritten": (i * 7 % 5) / 5,
             "transfer_top1": 0.1 + i / 100, "probe_top1": 0.5, "source_top1": 0.9, "g": 2 * x}
            for t in "tuvw" for i, (s, x) in enumerate(zip("abcd", (0.2, 0.4, 0.6, 0.8)))]
    pred = selection.leave_one_target_out(recs, "g")
    for t in "tuvw":
        order = [p for p, _ in sorted(((r["source"], pred[r["pair"]]) for r in recs if r["target"] == t),
                                      key=lambda kv: kv[1])]
        assert order == list("abcd")
    # changing the gains of target t changes none of t's predictions
    changed = [dict(r, g=-r["g"] * 5) if r["target"] == "t" else r for r in recs]
    again = selection.leave_one_target_out(changed, "g")
    assert all(again[r["pair"]] == pytest.approx(pred[r["pair"]]) for r in recs if r["target"] == "t")
    assert any(again[r["pair"]] != pytest.approx(pred[r["pair"]]) for r in recs if r["target"] == "u")


def test_reference_file_is_the_authors_67_pairs():
    ref = selection.read_reference()
    assert len(ref) == 67 and len({r["target"] for r in ref}) == 9
    assert ref[0] == {"source": "efficientnet-b1", "target": "efficientnet-b0", "pair": "efficientnet-b1_to_efficientnet-b0",
                      "sim": 1.0, "acc_ratio": pytest.approx(3.7389473684210524)}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert entry.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
    empty = tmp_path / "runs" / "selection"
    empty.mkdir(parents=True)
    assert entry.main([str(empty), "--out", str(tmp_path / "o")]) == 1
    assert "no run.json" in capsys.readouterr().err


def test_grid_analyses_are_planned_and_run_after_the_table(tmp_path, capsys):
    from bench.planning.plan import plan_sweep
    from bench.sweep import run_analyses

    plan = plan_sweep(["experiment=selection", f"paths.runs={tmp_path}"])
    assert plan.analyses == [f"bench/selection.py {tmp_path}/selection"]
    script = tmp_path / "touch.py"
    script.write_text("import sys, pathlib; pathlib.Path(sys.argv[1]).write_text('ran')\n")
    assert run_analyses([f"{script} {tmp_path / 'flag'}"]) == 0
    assert (tmp_path / "flag").read_text() == "ran"
    assert run_analyses([f"{script}"]) == 1  # a failing analysis is reported, not ignored
    assert "the analysis exited with 1" in capsys.readouterr().err


def test_selection_grid_shape():
    """experiment=selection as the issue asks: >= 7 models, >= 5 families, >= 4 targets, each target with every
    other model as a source, both directions inside a family, similarities from low to above 0.9."""
    from bench.planning.plan import plan_sweep

    plan = plan_sweep(["experiment=selection", "paths.runs=/nonexistent/runs"])
    pairs = [p.split("_to_") for p in plan.axes["pair"]]
    sources, targets = {s for s, _ in pairs}, {t for _, t in pairs}
    assert len(sources | targets) >= 7 and len(targets) >= 4 and len(pairs) >= 24
    assert all({m for m in sources if m != t} == {s for s, tt in pairs if tt == t} for t in targets)
    assert ["tinynet_d", "tinynet_e"] in pairs and ["tinynet_e", "tinynet_d"] in pairs
    assert plan.axes["seed"] == ["0", "1", "2"] and set(plan.axes["init"]) == {"random", "dpiat"}

"""bench/measure/reuse_costs.py: the arms it measures (experiment=reuse's own expansion), the committed sources it
takes, its interleaved order, its refusals, and one real --smoke measurement whose costs.json the horizon tables
read."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "measure" / "reuse_costs.py"
sys.path.insert(0, str(SCRIPT.parent))

import reuse_costs  # noqa: E402

ARMS = {"paper/tinynet_d_to_e/random", "kd/tinynet_d_to_e/random", "paper/tinynet_d_to_e/dpiat",
        "finetune/tinynet_d_to_e/dpiat", "kd/tinynet_d_to_e/dpiat", "paper/tinynet_d_to_e/ghn",
        "paper/tinynet_d_to_e/weight_selection", "kd/resnet10t_to_tinynet_e/random",
        "paper/resnet10t_to_tinynet_e/dpiat", "kd/resnet10t_to_tinynet_e/dpiat"}


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return runs, reuse_costs.plan_arms(runs, seed=0, epochs=2)


def test_the_ten_arms_are_the_sweeps_own_command_lines(planned):
    runs, tasks = planned
    assert set(tasks) == ARMS  # random and ghn once: the pairs share them
    dpiat = tasks["finetune/tinynet_d_to_e/dpiat"].argv
    assert dpiat[0] == "bench/run.py" and "experiment=reuse" in dpiat and "recipe=finetune" in dpiat
    assert "epochs=2" in dpiat and "seed=0" in dpiat and f"paths.runs={runs}" in dpiat
    assert f"init.checkpoint={runs}/reuse/ghn/ghn.pt" in tasks["paper/tinynet_d_to_e/ghn"].argv
    assert not (runs / "reuse").exists()  # planning writes nothing


def test_the_committed_sources_and_ghn_are_taken_not_trained(planned):
    runs, tasks = planned
    reuse_costs.take_committed([tasks["kd/resnet10t_to_tinynet_e/dpiat"], tasks["paper/tinynet_d_to_e/ghn"]],
                               runs / "reuse")
    committed = REPO / "results" / "reuse" / "runs"
    for path in ("sources/resnet10t/seed0/weights.safetensors", "ghn/ghn.pt"):
        assert (runs / "reuse" / path).read_bytes() == (committed / path).read_bytes()
    assert not (runs / "reuse" / "sources" / "tinynet_d").exists()  # only what the measured arms need


def test_a_runs_costs_are_its_start_and_its_last_epoch():
    record = {"init_seconds": 1.5, "init_metrics": {"seconds_bn_recalibration": 0.5, "val_top1": 0.1},
              "target": "tinynet_e", "config": {"distill": {"kind": "logits"}},
              "hardware": {"torch_threads": 1, "cpu_model": "X", "cpu_capability": "AVX2"},
              "metrics": [{"epoch": 1, "wall_seconds": 30.0}, {"epoch": 2, "wall_seconds": 51.0},
                          {"epoch": 3, "wall_seconds": 70.0}]}
    got = reuse_costs.costs_of(record)
    assert (got["start_seconds"], got["epoch1_seconds"], got["epoch_seconds"]) == (2.0, 30.0, 19.0)
    assert (got["distill"], got["target"], got["torch_threads"], got["cpu_capability"]) == (
        "logits", "tinynet_e", 1, "AVX2")


def test_repeats_rotate_the_order():
    orders = reuse_costs.rotations(["a", "b", "c"], 3)
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert [o[0] for o in orders] == ["a", "b", "c"]  # no arm always first


@pytest.mark.parametrize("args, message", [
    (["--arms", "paper/tinynet_d_to_e/randm"], "error: unknown arm 'paper/tinynet_d_to_e/randm'; the arms of "
                                               "experiment=reuse are paper/tinynet_d_to_e/random, "),
    (["--epochs", "1"], "error: --repeats must be 1 or more and --epochs 2 or more"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "costs.json")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith(message) and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "costs.json").exists()


@pytest.mark.slow
def test_smoke_measures_an_arm_for_real_and_the_tables_read_it(tmp_path):
    out = tmp_path / "costs.json"
    arms = ["paper/tinynet_d_to_e/ghn"]  # one arm: a second would only add another start of the harness
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--arms", ",".join(arms), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    costs = json.loads(out.read_text())
    assert costs["smoke"] is True and costs["epochs"] == 2 and costs["repeats"] == 1
    assert {"cpu_model", "cpu_capability", "torch", "date", "git_commit", "command", "load_before_median",
            "load_before_max"} <= set(costs)
    assert costs["torch_threads"] == [1]  # the grid's one thread per run
    assert list(costs["arms"]) == arms and [r["arm"] for r in costs["order"]] == arms
    for name, arm in costs["arms"].items():
        recipe, pair, init = name.split("/")
        assert (arm["recipe"], arm["pair"], arm["init"], arm["distill"], arm["target"]) == (
            recipe, pair, init, "none", "tinynet_e")
        (rep,) = arm["per_repeat"]
        assert rep["start_seconds"] == pytest.approx(rep["init_seconds"] + rep["bn_recalibration_seconds"])
        assert arm["start_seconds"] == pytest.approx(rep["start_seconds"], abs=1e-3)
        assert 0 < arm["epoch_seconds"] == pytest.approx(rep["epoch_seconds"], abs=1e-3)
        assert arm["epoch1_seconds"] > 0 and rep["load_before"] >= 0 and rep["load_after"] >= 0
        assert "data.train_subset=128" in arm["command"] and "<tmp>" in arm["command"]
    assert costs["arms"]["paper/tinynet_d_to_e/ghn"]["command"].count("init.checkpoint=<tmp>/reuse/ghn/ghn.pt") == 1
    from bench.results.horizon import arm_costs

    # a source-free arm measured under one pair serves the other pair's rows too
    ghn = costs["arms"]["paper/tinynet_d_to_e/ghn"]
    assert arm_costs(costs, "resnet10t_to_tinynet_e", "ghn", "none", "paper", "tinynet_e") == (
        ghn["start_seconds"], ghn["epoch_seconds"])


def test_the_costs_quoted_in_the_reuse_readme_are_those_of_the_committed_costs_file():
    """results/reuse/README.md sums up runs/costs.json in ranges; every range is recomputed here from the file."""
    costs = json.loads((REPO / "results" / "reuse" / "runs" / "costs.json").read_text())
    text = " ".join((REPO / "results" / "reuse" / "README.md").read_text().split())
    arms = costs["arms"]
    reps = [r for a in arms.values() for r in a["per_repeat"]]

    def span(values, fmt="{:.1f}", unit=" s"):
        return f"{fmt.format(min(values))}-{fmt.format(max(values))}{unit}"

    def ms(init):
        return span([1000 * r["init_seconds"] for n, a in arms.items() if n.endswith("/" + init)
                     for r in a["per_repeat"]], "{:.0f}", " ms")

    plain = [n for n, a in arms.items() if a["distill"] == "none"]
    kd = {p: [n for n, a in arms.items() if a["distill"] != "none" and a["pair"] == p] for p in
          ("tinynet_d_to_e", "resnet10t_to_tinynet_e")}
    assert len(plain) == 6 and all(len(v) == 2 for v in kd.values())
    ghn = statistics.median(r["init_seconds"] for r in arms["paper/tinynet_d_to_e/ghn"]["per_repeat"])
    quoted = [
        f"load {span([r['load_before'] for r in costs['order']], unit='')} before each run",
        f"{len(costs['order'])} runs, {round(sum(r['run_seconds'] for r in costs['order']) / 60)} min",
        f"start {span([a['start_seconds'] for a in arms.values()])} for every arm",
        f"BatchNorm pass ({span([r['bn_recalibration_seconds'] for r in reps])};",
        f"DPIAT's copy takes {ms('dpiat')}", f"weight selection {ms('weight_selection')}",
        f"a GHN-2 prediction {ghn:.2f} s",
        f"epoch {span([arms[n]['epoch_seconds'] for n in plain])} for the six undistilled arms",
        f"{span([arms[n]['epoch_seconds'] for n in kd['tinynet_d_to_e']])} distilled from TinyNet-D",
        f"{span([arms[n]['epoch_seconds'] for n in kd['resnet10t_to_tinynet_e']])} distilled from ResNet10-T",
        f"single epochs {span([r['epoch_seconds'] for n in plain for r in arms[n]['per_repeat']])}",
    ]
    missing = [q for q in quoted if q not in text]
    assert not missing, f"results/reuse/README.md does not say (from runs/costs.json): {missing}"

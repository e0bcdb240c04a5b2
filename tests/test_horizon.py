"""The horizon tables (bench/results/horizon.py) on hand-made curves with hand-computed answers, the files and
pictures they write, and experiment=horizon's plan (recipe scope, seed-major order, resume from committed runs)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from bench.results.horizon import RATIO_COLUMNS, TIME_COLUMNS, best_so_far, epochs_to_reach, horizon_tables
from bench.running.record import RunRecord

N = 4
# seed -> val_top1_bn per epoch (the same curves serve val_top1, scaled, where a test needs both)
RANDOM = {0: [0.5, 0.6, 0.55, 0.7], 1: [0.4, 0.6, 0.8, 0.7]}  # best: [.5 .6 .6 .7], [.4 .6 .8 .8]; R = 0.75
DPIAT = {0: [0.75, 0.7, 0.8, 0.8], 1: [0.6, 0.8, 0.7, 0.9]}   # best: [.75 .75 .8 .8], [.6 .8 .8 .9]
GHN = {0: [0.1, 0.2, 0.3, 0.4], 1: [0.2, 0.3, 0.4, 0.76]}


def run(pair, init, seed, bn, *, recipe="paper", status="finished", plain=None, path=None, source="src", e0=0.1,
        distill="none"):
    """A run whose epoch 0 (its evaluation before training) is ``e0`` (BN; the protocol's: half of it)."""
    plain = plain or [x / 2 for x in bn]
    return RunRecord(path or Path(f"/nowhere/{recipe}/{pair}/{init}/seed{seed}/run.json"), pair, init, seed, status,
                     None, source, "tgt", "fm", N, 0.5, None if e0 is None else e0 / 2, dict(enumerate(plain, 1)), e0,
                     dict(enumerate(bn, 1)),
                     recipe=recipe, distill=distill)


def grid() -> list[RunRecord]:
    runs = [run("near", "random", s, c) for s, c in RANDOM.items()]
    runs += [run("near", "dpiat", s, c) for s, c in DPIAT.items()]
    runs += [run("near", "ghn", s, c) for s, c in GHN.items()]
    runs += [run("far", "dpiat", s, [x - 0.1 for x in c]) for s, c in DPIAT.items()]
    runs += [run("near", "dpiat", s, c, recipe="slow") for s, c in DPIAT.items()]
    return runs


def by(rows, **key):
    return [r for r in rows if all(r[k] == v for k, v in key.items())]


def test_best_so_far_and_epochs_to_reach():
    assert best_so_far([0.5, 0.7, 0.6, 0.8]) == [0.5, 0.7, 0.7, 0.8]
    assert epochs_to_reach([0.1, 0.75, 0.8, 0.8], 0.75) == 1  # reaching R exactly counts
    assert epochs_to_reach([0.9, 0.75, 0.8, 0.8], 0.75) == 0  # epoch 0 (before training) counts
    assert epochs_to_reach([0.5, 0.6, 0.6, 0.7], 0.75) is None


def test_ratios_are_paired_by_seed_over_the_best_so_far_with_a_t_interval():
    ratios, _, notes = horizon_tables(grid(), N)
    assert notes == []
    near = by(ratios, pair="near", init="dpiat", recipe="paper")
    assert [r["epoch"] for r in near] == [0, 1, 2, 3, 4] and all(r["n"] == 2 for r in near)
    assert near[0]["ratio_bn_mean"] == pytest.approx(1.0)  # epoch 0: both at 0.1 before training
    near = near[1:]  # epochs 1..4 below (index e - 1)
    assert near[0]["ratio_bn_mean"] == pytest.approx(1.5) and near[0]["ratio_bn_lo"] == pytest.approx(1.5)
    # epoch 2: 0.75 / 0.6 and 0.8 / 0.6 -> mean 1.291667, sd 0.058926, t(0.975, 1) = 12.7062 -> +- 0.52944
    assert near[1]["ratio_bn_mean"] == pytest.approx(1.291667, abs=1e-6)
    assert near[1]["ratio_bn_lo"] == pytest.approx(0.76223, abs=1e-4)
    assert near[1]["ratio_bn_hi"] == pytest.approx(1.82111, abs=1e-4)
    # epoch 3: best 0.8 / 0.6 and 0.8 / 0.8 (random seed 1's 0.8 at epoch 3) -> (1.3333 + 1) / 2
    assert near[2]["ratio_bn_mean"] == pytest.approx((0.8 / 0.6 + 1.0) / 2)
    # epoch 4: 0.8 / 0.7 and 0.9 / 0.8
    assert near[3]["ratio_bn_mean"] == pytest.approx((0.8 / 0.7 + 0.9 / 0.8) / 2)
    # the protocol's own evaluation beside it: here val_top1 = val_top1_bn / 2, so the same ratios
    assert near[3]["ratio_mean"] == pytest.approx(near[3]["ratio_bn_mean"])
    # the random init of the target serves every pair: 'far' is paired with the runs of 'near'
    far = by(ratios, pair="far", init="dpiat", recipe="paper")
    assert far[1]["ratio_bn_mean"] == pytest.approx((0.65 / 0.5 + 0.5 / 0.4) / 2)
    # a recipe's ratio is paired with random under the reference recipe (the paper's)
    assert by(ratios, pair="near", init="dpiat", recipe="slow")[4]["ratio_bn_mean"] == near[3]["ratio_bn_mean"]
    # ghn (source-free) is listed under each pair; random has no ratio row (1 by construction)
    assert len(by(ratios, pair="far", init="ghn")) == N + 1 and not by(ratios, init="random")


def test_time_to_accuracy_counts_epoch_0():
    _, times, _ = horizon_tables(grid(), N)
    dpiat = by(times, pair="near", init="dpiat", recipe="paper")[0]
    assert dpiat["R"] == pytest.approx(0.75)  # (0.7 + 0.8) / 2
    assert dpiat["epochs_to_reach_per_seed"] == "1 2" and dpiat["epochs_to_reach_mean"] == 1.5
    assert dpiat["final_best_bn_mean"] == pytest.approx(0.85) and dpiat["final_ratio_bn"] == pytest.approx(
        (0.8 / 0.7 + 0.9 / 0.8) / 2)
    # no start cost recorded (these runs have no run.json): no seconds, so no speedup
    assert dpiat["seconds_to_reach_per_seed"] == "- -" and dpiat["speedup_seconds"] is None
    rnd = by(times, pair="near", init="random")[0]
    assert rnd["epochs_to_reach_per_seed"] == "never 3" and rnd["epochs_to_reach_mean"] is None
    ghn = by(times, pair="near", init="ghn")[0]
    assert ghn["epochs_to_reach_per_seed"] == "never 4" and ghn["epochs_to_reach_mean"] is None
    far = by(times, pair="far", init="dpiat")[0]  # best [.65 .65 .7 .7], [.5 .7 .7 .8]
    assert far["epochs_to_reach_per_seed"] == "never 4"


def test_a_start_above_r_reaches_it_at_epoch_0_and_keeps_it_as_its_best():
    # a copy already at 0.9 before training (R = 0.75) that training then loses (0.6 after epoch 1)
    runs = grid() + [run("near", "copy", s, [0.6, 0.7, 0.7, 0.8], e0=0.9) for s in (0, 1)]
    ratios, times, _ = horizon_tables(runs, N)
    copy = by(times, pair="near", init="copy")[0]
    assert copy["epochs_to_reach_per_seed"] == "0 0" and copy["epochs_to_reach_mean"] == 0.0
    assert copy["final_best_bn_mean"] == pytest.approx(0.9)  # the start itself: training never beat it
    by_epoch = by(ratios, pair="near", init="copy")
    assert by_epoch[0]["ratio_bn_mean"] == pytest.approx(9.0)  # 0.9 / 0.1 before training
    assert by_epoch[4]["ratio_bn_mean"] == pytest.approx((0.9 / 0.7 + 0.9 / 0.8) / 2)


def test_distilled_random_init_is_its_own_arm_and_serves_only_its_pair():
    runs = grid() + [run("near", "random", s, [0.6, 0.7, 0.8, 0.8], recipe="kd", distill="logits") for s in (0, 1)]
    ratios, times, _ = horizon_tables(runs, N)
    kd = by(times, init="random", distill="logits")
    assert [r["pair"] for r in kd] == ["near"] and kd[0]["epochs_to_reach_per_seed"] == "3 3"
    assert by(times, pair="near", init="random", distill="none")[0]["epochs_to_reach_per_seed"] == "never 3"
    assert len(by(ratios, pair="near", init="random", distill="logits")) == N + 1


def test_unfinished_runs_are_named_and_never_averaged():
    runs = grid()
    runs.append(run("near", "dpiat", 2, [0.99, 0.99], status="interrupted"))  # 2 of 4 epochs
    runs.append(run("near", "random", 2, [0.1] * N, status="failed"))
    ratios, times, notes = horizon_tables(runs, N)
    assert by(ratios, pair="near", init="dpiat", recipe="paper")[0]["n"] == 2
    assert by(times, pair="near", init="dpiat", recipe="paper")[0]["seeds"] == "0 1"
    assert any("paper/near/dpiat/seed2: interrupted with 2/4 epochs" in n and "not averaged" in n for n in notes)
    runs.append(run("near", "dpiat", 3, [0.9] * N, e0=None))  # finished, but no evaluation before training
    _, times, notes = horizon_tables(runs, N)
    assert any("seed3: no evaluation before training" in n for n in notes)
    assert by(times, pair="near", init="dpiat", recipe="paper")[0]["seeds"] == "0 1"
    assert any("paper/near/random/seed2: failed" in n for n in notes)


def test_no_random_run_means_no_ratio_and_a_note():
    runs = [r for r in grid() if r.init != "random"]
    ratios, times, notes = horizon_tables(runs, N)
    assert ratios == [] and times == [] and any("no finished random run" in n for n in notes)


def _write(folder: Path, r: RunRecord, wall: float, start: float | None = None, capability: str = "AVX2") -> None:
    """A run.json of ``r``: epoch e ends at ``e * wall / N`` seconds; ``start``: its recorded start cost."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = [{"epoch": e, "val_top1": r.top1[e], "val_top1_bn": r.top1_bn[e], "wall_seconds": e * wall / N}
               for e in range(1, N + 1)]
    init = {"val_top1": r.init_top1, "val_top1_bn": r.init_top1_bn}
    record = {"schema_version": 1, "status": "finished", "failure_reason": None, "failure_kind": None,
              "experiment": "horizon", "pair": r.pair, "init": r.init, "seed": r.seed, "recipe": r.recipe,
              "source": r.source, "target": r.target, "data": "fm", "epochs": N,
              "config": {"pair": {"title": f"{r.pair} in words"}, "grid": {"recipes": {"paper": [], "slow": []}, "table": "horizon"},
                         "distill": {"kind": r.distill}},
              "similarity": 0.5, "init_metrics": init, "metrics": metrics, "wall_seconds": wall,
              "hardware": {"cpu_model": "Test CPU", "cpu_capability": capability, "cpu_count": 2, "torch_threads": 1},
              "versions": {"torch": "2.x"}}
    if start is not None:
        record["init_seconds"] = 0.5
        init["seconds_bn_recalibration"] = start - 0.5
    (folder / "run.json").write_text(json.dumps(record))


def test_files_and_pictures(tmp_path):
    runs = tmp_path / "runs"
    for r in grid() + [run("near", "copy", s, [0.6, 0.7, 0.7, 0.8], e0=0.9) for s in (0, 1)]:
        _write(runs / r.recipe / r.pair / r.init / f"seed{r.seed}", r, wall=40.0, start=2.0)
    from bench.results.table import aggregate

    aggregate(runs, tmp_path / "out")  # the runs recorded grid.table=horizon: the horizon tables
    rows = list(csv.DictReader((tmp_path / "out" / "ratios_by_epoch.csv").open()))
    assert list(rows[0]) == RATIO_COLUMNS and len(rows) == 6 * (N + 1)  # near: dpiat, slow, ghn, copy; far: dpiat, ghn
    times = list(csv.DictReader((tmp_path / "out" / "time_to_accuracy.csv").open()))
    assert list(times[0]) == TIME_COLUMNS
    near = [t for t in times if t["pair"] == "near" and t["init"] == "dpiat" and t["recipe"] == "paper"][0]
    # seed 0 reaches R at epoch 1 (2 s start + 10 s), seed 1 at epoch 2 (2 + 20); random: 2 + 40 s for all 4 epochs
    assert near["seconds_to_reach_per_seed"] == "12.0 22.0" and float(near["seconds_to_reach_mean"]) == 17.0
    assert float(near["speedup_seconds"]) == pytest.approx(42.0 / 17.0, rel=1e-5)
    copy = [t for t in times if t["init"] == "copy"][0]
    assert copy["seconds_to_reach_per_seed"] == "2.0 2.0" and float(copy["speedup_seconds"]) == pytest.approx(21.0)
    table = (tmp_path / "out" / "table.md").read_text()
    assert "Test CPU (AVX2), 2 cores" in table and "| near | DPIAT | 2 | 1.00 [1.00, 1.00] (1.00 [1.00, 1.00]) | 1.50 [1.50, 1.50]" in table
    assert "bench/aggregate.py" in table and not (tmp_path / "out" / "table.csv").exists()  # not the paper's table
    for png in ("accuracy_by_epoch.png", "ratio_by_epoch.png", "accuracy_by_seconds.png", "seconds_to_reach.png"):
        assert (tmp_path / "out" / png).stat().st_size > 10_000
    assert near["machine_per_seed"] == "Test CPU (AVX2) | Test CPU (AVX2)"


def test_seconds_of_two_kinds_of_cpu_are_never_averaged_or_drawn_together(tmp_path):
    """Seed 1 of every arm ran on a faster machine (half the seconds): its seconds stay, per seed, but no mean, no
    speedup and no seconds picture mixes the two machines; epochs and accuracies are as before."""
    runs = tmp_path / "runs"
    out = tmp_path / "out"
    out.mkdir()
    (out / "seconds_to_reach.png").write_bytes(b"stale")  # a picture of an earlier aggregation
    for r in grid():
        fast = r.seed == 1
        _write(runs / r.recipe / r.pair / r.init / f"seed{r.seed}", r, wall=20.0 if fast else 40.0, start=2.0,
               capability="AVX512" if fast else "AVX2")
    from bench.results.table import aggregate

    aggregate(runs, out)
    times = list(csv.DictReader((out / "time_to_accuracy.csv").open()))
    near = [t for t in times if t["pair"] == "near" and t["init"] == "dpiat" and t["recipe"] == "paper"][0]
    # seed 0 (AVX2) reaches R at epoch 1: 2 + 10 s; seed 1 (AVX-512) at epoch 2: 2 + 10 s
    assert near["seconds_to_reach_per_seed"] == "12.0 12.0" and near["epochs_to_reach_per_seed"] == "1 2"
    assert near["seconds_to_reach_mean"] == "" and near["speedup_seconds"] == ""
    assert near["machine_per_seed"] == "Test CPU (AVX2) | Test CPU (AVX512)"
    table = (out / "table.md").read_text()
    assert "near, DPIAT: seconds from more than one kind of CPU (Test CPU (AVX2): seed 0; Test CPU (AVX512): seed 1" in table
    assert "are not drawn until they are one kind's" in table
    assert not (out / "seconds_to_reach.png").exists() and not (out / "accuracy_by_seconds.png").exists()
    assert (out / "accuracy_by_epoch.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------------------
# Costed seconds: start cost + epochs to R x epoch cost, from a costs file measured on one machine
# ---------------------------------------------------------------------------------------------------------

COSTED = [c for c in TIME_COLUMNS if c.startswith("costed_")]


def costs(**arms) -> dict:
    """A costs file (bench/measure/reuse_costs.py) with arms ``<init>=(start, epoch)`` of pair 'near', recipe
    paper, undistilled (a tuple of three: its recipe last)."""
    out = {}
    for init, value in arms.items():
        start, epoch, recipe = (*value, "paper")[:3]
        out[f"{recipe}/near/{init}"] = {"pair": "near", "init": init, "distill": "none", "recipe": recipe,
                                        "target": "tgt", "start_seconds": start, "epoch_seconds": epoch}
    return {"cpu_model": "Cost CPU", "cpu_capability": "AVX512", "load_before_median": 0.3, "load_before_max": 1.1,
            "date": "2026-12-09T10:00:00Z", "repeats": 3, "arms": out}


def test_costed_seconds_are_start_plus_epochs_to_reach_times_epoch_cost():
    runs = grid() + [run("near", "copy", s, [0.6, 0.7, 0.7, 0.8], e0=0.9) for s in (0, 1)]
    given = costs(random=(0.5, 10.0), dpiat=(3.0, 12.0), ghn=(1.0, 10.0), copy=(4.0, 10.0))
    _, times, notes = horizon_tables(runs, N, costs=given)
    random_total = 0.5 + N * 10.0  # random init's costed time for all N epochs
    dpiat = by(times, pair="near", init="dpiat", recipe="paper")[0]  # reaches R at epochs 1 and 2
    assert (dpiat["costed_start_seconds"], dpiat["costed_epoch_seconds"]) == (3.0, 12.0)
    assert dpiat["costed_seconds_to_reach_per_seed"] == "15.0 27.0" and dpiat["costed_seconds_to_reach_mean"] == 21.0
    assert dpiat["costed_speedup"] == pytest.approx(random_total / 21.0)
    # a start above R before training: the start cost alone, and the speedup that gives
    copy = by(times, pair="near", init="copy")[0]
    assert copy["epochs_to_reach_per_seed"] == "0 0" and copy["costed_seconds_to_reach_per_seed"] == "4.0 4.0"
    assert copy["costed_seconds_to_reach_mean"] == 4.0 and copy["costed_speedup"] == pytest.approx(random_total / 4)
    # a seed that never reaches R: 'never' per seed, no mean and no speedup
    ghn = by(times, pair="near", init="ghn")[0]
    assert ghn["costed_seconds_to_reach_per_seed"] == "never 41.0"
    assert ghn["costed_seconds_to_reach_mean"] is None and ghn["costed_speedup"] is None
    rnd = by(times, pair="near", init="random")[0]
    assert rnd["costed_seconds_to_reach_per_seed"] == "never 30.5" and rnd["costed_speedup"] is None
    # source-free arms are the same runs under every pair: found under 'near' in the file, served to 'far'
    far_ghn = by(times, pair="far", init="ghn")[0]
    assert far_ghn["costed_start_seconds"] == 1.0 and far_ghn["costed_seconds_to_reach_per_seed"] == "never 41.0"
    # an arm the file lacks (far's DPIAT; the 'slow' recipe of near's): empty, and named in the notes
    far = by(times, pair="far", init="dpiat")[0]
    slow = by(times, pair="near", init="dpiat", recipe="slow")[0]
    assert all(far[c] is None and slow[c] is None for c in COSTED)
    assert "far, DPIAT: not in the costs file (costs.json), so no costed seconds" in notes
    assert "near, DPIAT, slow: not in the costs file (costs.json), so no costed seconds" in notes


def test_costs_add_columns_and_change_nothing_measured():
    plain_ratios, plain, plain_notes = horizon_tables(grid(), N)
    ratios, costed, notes = horizon_tables(grid(), N, costs=costs(random=(0.5, 10.0), dpiat=(3.0, 12.0)))
    assert ratios == plain_ratios and len(costed) == len(plain)
    for a, b in zip(plain, costed):
        assert {k: v for k, v in b.items() if k not in COSTED} == {k: v for k, v in a.items() if k not in COSTED}
        assert all(a[c] is None for c in COSTED)  # no costs file: the columns exist, empty
    assert plain_notes == [] and notes  # the arms the file lacks are named only when there is a file


def test_without_random_in_the_costs_there_is_no_costed_speedup():
    _, times, notes = horizon_tables(grid(), N, costs=costs(dpiat=(3.0, 12.0)))
    dpiat = by(times, pair="near", init="dpiat", recipe="paper")[0]
    assert dpiat["costed_seconds_to_reach_mean"] == 21.0 and dpiat["costed_speedup"] is None
    assert any("near: random init (paper) is not in the costs file" in n for n in notes)


def test_a_costs_file_makes_costed_tables_and_pictures_even_across_two_kinds_of_cpu(tmp_path):
    """The runs' seconds come from two CPU kinds (no measured mean, no measured pictures), but a costs file that
    covers every arm gives costed seconds, a costed table and both pictures against costed time."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    for r in grid():
        fast = r.seed == 1
        _write(runs / r.recipe / r.pair / r.init / f"seed{r.seed}", r, wall=20.0 if fast else 40.0, start=2.0,
               capability="AVX512" if fast else "AVX2")
    every = costs(random=(0.5, 10.0), dpiat=(3.0, 12.0), ghn=(1.0, 10.0), slow_dpiat=(3.0, 12.0))
    every["arms"]["slow/near/dpiat"] = {**every["arms"].pop("paper/near/slow_dpiat"), "init": "dpiat",
                                        "recipe": "slow"}
    every["arms"]["paper/far/dpiat"] = {**every["arms"]["paper/near/dpiat"], "pair": "far", "start_seconds": 5.0}
    (runs / "costs.json").write_text(json.dumps(every))
    from bench.results.table import aggregate

    aggregate(runs, out)
    times = list(csv.DictReader((out / "time_to_accuracy.csv").open()))
    assert list(times[0]) == TIME_COLUMNS
    near = [t for t in times if t["pair"] == "near" and t["init"] == "dpiat" and t["recipe"] == "paper"][0]
    assert near["seconds_to_reach_mean"] == "" and near["speedup_seconds"] == ""  # measured: two machines
    assert near["costed_seconds_to_reach_per_seed"] == "15.0 27.0" and float(near["costed_speedup"]) == \
        pytest.approx(40.5 / 21)
    far = [t for t in times if t["pair"] == "far" and t["init"] == "dpiat"][0]
    assert far["costed_start_seconds"] == "5" and far["costed_seconds_to_reach_per_seed"] == "never 53.0"
    table = (out / "table.md").read_text()
    assert "Cost CPU (AVX512), 1-minute load before the runs 0.3 (max 1.1), 2026-12-09T10:00:00Z" in table
    assert "| near | DPIAT | 3.00 | 12.00 | 15.0 27.0 | 21.0 | 1.9x |" in table
    assert "are drawn with the costed seconds" in table and "not drawn until" not in table
    for png in ("accuracy_by_seconds.png", "seconds_to_reach.png"):
        assert (out / png).stat().st_size > 10_000
    # one arm fewer in the file: its row is empty, and the pictures fall back to the measured rule (two CPUs: none)
    del every["arms"]["paper/far/dpiat"]
    (runs / "costs.json").write_text(json.dumps(every))
    aggregate(runs, out)
    far = [t for t in csv.DictReader((out / "time_to_accuracy.csv").open()) if t["pair"] == "far"
           and t["init"] == "dpiat"][0]
    assert far["costed_start_seconds"] == "" and far["costed_seconds_to_reach_per_seed"] == ""
    table = (out / "table.md").read_text()
    assert "far, DPIAT: not in the costs file (costs.json), so no costed seconds" in table
    assert "| far | DPIAT | - | - | - | - | - |" in table
    assert not (out / "accuracy_by_seconds.png").exists() and not (out / "seconds_to_reach.png").exists()


def test_a_broken_costs_file_is_refused_in_one_line(tmp_path):
    from bench.errors import AggregateError
    from bench.results.horizon import load_costs

    assert load_costs(tmp_path) is None
    (tmp_path / "costs.json").write_text("{not json")
    with pytest.raises(AggregateError, match="costs.json: not a readable costs file"):
        load_costs(tmp_path)
    (tmp_path / "costs.json").write_text("[]")
    with pytest.raises(AggregateError, match="no 'arms' mapping"):
        load_costs(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# experiment=horizon's plan
# ---------------------------------------------------------------------------------------------------------


def test_horizon_plan_is_seed_major_with_the_recipe_only_where_scoped(tmp_path):
    from bench.planning.plan import plan_sweep

    plan = plan_sweep(["experiment=horizon", f"paths.runs={tmp_path}", "grid.resume_committed=false"])
    lines = [t.line for t in plan.runs]
    assert len(lines) == 15
    assert [int(l.split("seed=")[1].split()[0]) for l in lines] == [0] * 5 + [1] * 5 + [2] * 5
    slow = [l for l in lines if "recipe=adam_lr1e-3" in l]
    assert len(slow) == 3 and all("pair=tinynet_d_to_e" in l and "init=dpiat" in l for l in slow)
    # random runs need nothing from stage 1; ghn runs need the GHN-2; dpiat runs their source
    for t in plan.runs:
        kinds = sorted(n.kind for n in t.needs)
        assert kinds == {"random": [], "ghn": ["prerequisite"], "dpiat": ["source"]}[t.line.split("init=")[1].split()[0]]


def test_a_recipe_outside_its_scope_is_ad_hoc():
    from bench.layout import run_path

    grid = {"pairs": ["a_to_b"], "inits": ["random", "dpiat"], "recipes": {"paper": [], "slow": ["optim.lr=0.001"]},
            "recipe_scope": {"slow": {"inits": ["dpiat"]}}}
    assert str(run_path("r", "x", grid, "a_to_b", "random", 0, "slow")) == "r/x/adhoc/slow/a_to_b/random/seed0"
    assert str(run_path("r", "x", grid, "a_to_b", "dpiat", 0, "slow")) == "r/x/slow/a_to_b/dpiat/seed0"


def test_a_scope_naming_no_recipe_is_refused():
    from bench.config import check_recipes
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="grid.recipe_scope: 'slw' is not a recipe of grid.recipes; did you mean slow"):
        check_recipes({"recipes": {"slow": []}, "recipe_scope": {"slw": {"inits": ["dpiat"]}}})


def test_finished_committed_runs_are_taken_and_finished_runs_are_published(tmp_path):
    from bench.planning.committed import adopt_run, publish_run

    runs, committed = tmp_path / "runs" / "horizon", tmp_path / "results" / "horizon" / "runs"
    done, partial = committed / "paper/p/random/seed0", committed / "paper/p/random/seed1"
    for folder, status in ((done, "finished"), (partial, "running")):
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"status": status}))
        (folder / "run.log").write_text("log\n")
    assert adopt_run(runs / "paper/p/random/seed0", runs, committed)
    assert json.loads((runs / "paper/p/random/seed0/run.json").read_text())["status"] == "finished"
    assert (runs / "paper/p/random/seed0/run.log").read_text() == "log\n"
    assert not adopt_run(runs / "paper/p/random/seed1", runs, committed)  # unfinished: started again here
    assert not adopt_run(runs / "paper/p/random/seed0", runs, committed)  # never over a record that is here
    here = runs / "paper/p/dpiat/seed0"
    here.mkdir(parents=True)
    (here / "run.json").write_text(json.dumps({"status": "finished", "x": 1}))
    log = runs / "local_logs" / "paper_p_dpiat_seed0.log"
    log.parent.mkdir()
    log.write_text("sweep log\n")
    assert publish_run(here, runs, committed, log)
    assert json.loads((committed / "paper/p/dpiat/seed0/run.json").read_text())["x"] == 1
    assert (committed / "local_logs" / log.name).read_text() == "sweep log\n"


@pytest.mark.slow
def test_a_stopped_sweep_resumes_in_a_fresh_clone_from_the_committed_runs(tmp_path):
    """Stop a small resume_committed sweep midway (one of its two runs finished and copied to the committed
    folder), then plan in a fresh copy of the checkout with no runs folder: only the missing run is planned."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    for path in ("bench", "conf", "dpiat"):  # this working tree's code, committed or not
        shutil.rmtree(clone / path)
        shutil.copytree(repo / path, clone / path, ignore=shutil.ignore_patterns("__pycache__"))
    args = ["experiment=smoke", "grid.inits=[random]", "grid.seeds=[0,1]", "grid.resume_committed=true",
            "experiment_name=resume_test", "paths.runs=results/runs", "epochs=1", "data.train_subset=64"]
    env = {"PYTHONPATH": str(clone), "PATH": "/usr/bin:/bin"}
    # first machine: run seed 0 only (as if the sweep was stopped after it), then "commit" what it copied
    first = subprocess.run([sys.executable, "bench/sweep.py", *args, "seed=0", "--local"], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    kept = clone / "results" / "resume_test" / "runs"
    assert (kept / "test_resnet_to_effnet" / "random" / "seed0" / "run.json").exists()
    fresh = tmp_path / "fresh"
    shutil.copytree(clone, fresh, ignore=shutil.ignore_patterns("runs"))  # results/runs/ is not committed ...
    shutil.copytree(kept, fresh / "results" / "resume_test" / "runs")  # ... results/<experiment>/runs is
    plan = subprocess.run([sys.executable, "bench/sweep.py", *args], cwd=fresh, env={**env, "PYTHONPATH": str(fresh)},
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "2 runs, 1 finished, 1 to run" in plan.stdout and "1 of the finished runs are in the committed" in plan.stdout
    assert not (fresh / "results" / "runs").exists()  # a plan writes nothing: the committed run is not copied
    assert "seed=1" in plan.stdout and "init=random seed=0" not in plan.stdout

"""Runs outside their experiment's grid are ad hoc: they go to <experiment>/adhoc/ and never change the
experiment's table. One rule (bench/layout.py) for RunFolder, Hydra's output folder and the sweep plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.aggregate import main as aggregate_cli
from bench.errors import AggregateError
from bench.layout import ADHOC, hydra_dir, outside_grid, target_folders
from bench.planning.plan import plan_sweep
from bench.results.table import aggregate
from bench.running.folder import RunFolder
from bench.running.record import read_run


@pytest.mark.parametrize("overrides, adhoc", [
    (["init=dpiat"], False),  # the default experiment's own point
    (["pair=resnet_to_effnet", "init=dpiat"], True),  # the headline command: pair off the grid
    (["init=dpiat", "seed=1"], True),  # seed off the grid
    (["init=dpiat_bn"], True),  # init off the grid
    (["experiment=smoke", "pair=resnet_to_effnet", "seed=4"], False),  # smoke has no grid: no outside
    (["experiment=paper_cifar100_grid", "pair=custom", "pair.source=mixnet_m", "pair.target=tf_efficientnet_b0"],
     False),  # an ordered pair of grid.models
    (["experiment=paper_cifar100_grid", "pair=b2_to_b0"], True),  # same networks, but not the grid's pair folder
])
def test_run_folder_and_hydra_dir_put_off_grid_runs_in_adhoc(compose_config, tmp_path, overrides, adhoc):
    cfg = compose_config(*overrides, f"paths.runs={tmp_path}")
    experiment = tmp_path / cfg.experiment_name
    expected = (experiment / ADHOC if adhoc else experiment) / cfg.pair.name / cfg.init.name / f"seed{cfg.seed}"
    assert RunFolder.target(cfg).path == hydra_dir("target", cfg) == expected
    with_hydra = compose_config(*overrides, f"paths.runs={tmp_path}", hydra=True)
    assert Path(with_hydra.hydra.run.dir) == expected
    assert Path(with_hydra.hydra.sweep.dir) / with_hydra.hydra.sweep.subdir == expected  # `-m` sweeps land there too
    assert bool(outside_grid(cfg.grid, cfg.pair.name, cfg.init.name, cfg.seed)) == adhoc


def test_sweep_plan_folders_agree_with_the_runs(compose_config, tmp_path):
    plan = plan_sweep(["experiment=default", "pair=resnet_to_effnet,tinynet_d_to_e", "init=random,dpiat",
                       f"paths.runs={tmp_path}"])
    folders = {t.folder for t in plan.runs}
    for pair in ("resnet_to_effnet", "tinynet_d_to_e"):
        for init in ("random", "dpiat"):
            cfg = compose_config("experiment=default", f"pair={pair}", f"init={init}", f"paths.runs={tmp_path}")
            assert RunFolder.target(cfg).path in folders
    assert {t.folder for t in plan.adhoc} == {tmp_path / "default" / ADHOC / "resnet_to_effnet" / i / "seed0"
                                             for i in ("random", "dpiat")}
    # the grid's random run is the grid's own, not one borrowed from an ad hoc pair (and vice versa)
    assert tmp_path / "default" / "tinynet_d_to_e" / "random" / "seed0" in folders
    assert "2 of the runs are outside the experiment's grid" in plan.summary()
    assert plan_sweep(["experiment=default", f"paths.runs={tmp_path}"]).adhoc == []


def test_the_experiments_table_never_reads_adhoc_runs(tmp_path):
    experiment = tmp_path / "results" / "runs" / "default"
    for folder in (experiment / "tinynet_d_to_e" / "dpiat" / "seed0", experiment / ADHOC / "r_to_e" / "dpiat" / "seed0",
                   experiment / "sources" / "tinynet_d" / "seed0"):
        folder.mkdir(parents=True)
    assert list(target_folders(experiment)) == [experiment / "tinynet_d_to_e" / "dpiat" / "seed0"]
    assert list(target_folders(experiment / ADHOC)) == [experiment / ADHOC / "r_to_e" / "dpiat" / "seed0"]


def _tiny_runs(tmp_path: Path) -> list[str]:
    # experiment=smoke with a grid of dpiat only: init=random is off it. One epoch of 128 digits.
    return ["experiment=smoke", "grid.inits=[dpiat]", "init=random", "epochs=1", "data.train_subset=128",
            "trainer.log_every_n_steps=50", f"paths.runs={tmp_path / 'results' / 'runs'}"]


@pytest.mark.slow
def test_a_real_off_grid_run_says_so_lands_in_adhoc_and_has_its_own_table(run_cli, tmp_path, capsys):
    proc = run_cli(*_tiny_runs(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    experiment = tmp_path / "results" / "runs" / "smoke"
    folder = experiment / ADHOC / "test_resnet_to_effnet" / "random" / "seed0"
    assert read_run(folder)["status"] == "finished"
    first = proc.stdout.splitlines()[0]
    assert first.startswith("ad hoc run: init random is not in the grid's inits (dpiat) of experiment smoke")
    assert str(folder) in first and f"python bench/aggregate.py {experiment / ADHOC} --out" in first

    # Noise: none of Lightning's known-harmless lines (bench/running/quiet.py), whatever the machine has
    out = proc.stdout + proc.stderr
    for noise in ("GPU available:", "TPU available:", "`srun` command", "smaller than the logging interval",
                  "`Trainer.fit` stopped", "LeafSpec", "Traceback"):
        assert noise not in out, noise

    # the experiment's table does not see it; the adhoc folder's table does, by default in its table/
    with pytest.raises(AggregateError):
        aggregate(experiment, tmp_path / "table")
    assert aggregate_cli([str(experiment / ADHOC), "--no-plots"]) == 0
    table = experiment / ADHOC / "table" / "table.csv"
    assert "test_resnet_to_effnet" in table.read_text()
    capsys.readouterr()


def test_an_adhoc_folder_anywhere_aggregates_into_its_table_folder_or_out(tmp_path, capsys):
    adhoc = tmp_path / "scratch" / "smoke" / ADHOC
    run = adhoc / "p" / "random" / "seed0" / "run.json"
    run.parent.mkdir(parents=True)
    run.write_text(json.dumps({"schema_version": 1, "status": "finished", "experiment": "smoke", "pair": "p",
                               "init": "random", "seed": 0, "source": None, "target": "t", "data": "d",
                               "epochs": 1, "metrics": [{"epoch": 1, "val_top1": 0.5, "val_loss": 1.0}]}))
    assert aggregate_cli([str(adhoc), "--no-plots"]) == 0
    assert (adhoc / "table" / "table.md").exists()
    assert aggregate_cli([str(adhoc), "--no-plots", "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "table.md").exists()

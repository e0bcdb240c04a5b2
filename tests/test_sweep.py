"""bench/sweep.py and bench/planning/ without a cluster: grid expansion on the real experiment configs,
finished and failed runs left out, bad input refused before anything runs, the manifest's shell quoting as
slurm/array.sbatch reads it, the sbatch options from a site file, and a whole sweep run here with --local.
The same code against a real SLURM cluster: tests/test_slurm.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sweep as sweep_cli
from bench.errors import SweepError
from bench.files import atomic_write_json
from bench.planning.manifests import read_manifest, write_manifests
from bench.planning.plan import SOURCE_SCRIPT, plan_sweep
from bench.planning.slurm import read_site, sbatch_args
from bench.running.record import read_run

REPO = Path(__file__).resolve().parents[1]
SMOKE_GRID = ["experiment=smoke", "grid.inits=[random,dpiat]", "grid.seeds=[0,1]"]
# one tiny run: timm's test models on 256 digits, one epoch
TINY = ["experiment=smoke", "init=random", "seed=0", "data.train_subset=256", "epochs=1"]


def cli(*args: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = sweep_cli.main(list(args))
    return rc, buf.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Planning on the real configs
# ---------------------------------------------------------------------------------------------------------


def test_grid_expands_to_one_run_per_point_and_one_training_per_source(tmp_path):
    plan = plan_sweep([*SMOKE_GRID, f"paths.runs={tmp_path}"])
    common = f"bench/run.py experiment=smoke paths.runs={tmp_path} pair=test_resnet_to_effnet"
    assert [t.line for t in plan.runs] == [f"{common} init={i} seed={s}" for i in ("random", "dpiat") for s in (0, 1)]
    assert [t.folder for t in plan.runs] == [tmp_path / "smoke" / "test_resnet_to_effnet" / i / f"seed{s}"
                                             for i in ("random", "dpiat") for s in (0, 1)]
    # dpiat needs the trained test_resnet: one stage-1 task for all of its runs
    assert [t.line for t in plan.prerequisites] == \
        [f"{SOURCE_SCRIPT} experiment=smoke paths.runs={tmp_path} pair=test_resnet_to_effnet"]
    assert plan.prerequisites[0].folder == tmp_path / "smoke" / "sources" / "test_resnet" / "seed0"
    assert plan.trainer == {"accelerator": "cpu", "devices": 1, "num_nodes": 1}
    assert not tmp_path.joinpath("smoke").exists()  # planning writes nothing


def test_models_grid_is_every_ordered_pair_with_each_source_trained_once(tmp_path):
    plan = plan_sweep(["experiment=paper_cifar100_grid", f"paths.runs={tmp_path}"])
    models = ["tf_efficientnet_b0", "tf_efficientnet_b1", "tf_efficientnet_b2", "mixnet_m", "mixnet_l",
              "rexnet_100", "rexnet_150", "mnasnet_100", "semnasnet_100"]
    # dpiat for every ordered pair; random once per target and seed, shared by the 8 pairs of that target
    assert len(plan.runs) == 72 * 3 + 9 * 3 and len(plan.shared) == 9 * 7 * 3
    assert plan.axes["init"] == ["random", "dpiat"]
    assert sorted({t.folder.parts[-3].split("_to_")[1] for t in plan.runs if t.argv[-2] == "init=random"}) == sorted(models)
    assert len(plan.axes["pair"]) == 72 and "mixnet_m_to_rexnet_100" in plan.axes["pair"]
    assert sorted(t.folder.parent.name for t in plan.prerequisites) == sorted(models)
    assert (f"bench/run.py experiment=paper_cifar100_grid paths.runs={tmp_path} pair=custom pair.source=mixnet_m "
            "pair.target=tf_efficientnet_b0 init=dpiat seed=2") in [t.line for t in plan.runs]
    assert all(t.folder.parts[-3] == f"{t.argv[-4].split('=')[1]}_to_{t.argv[-3].split('=')[1]}"
               for t in plan.runs)  # pair folder = <source>_to_<target>


def test_axis_overrides_fix_the_grid_and_init_options_go_only_to_inits_that_take_them(tmp_path):
    plan = plan_sweep(["experiment=paper_imagenet", "data.root=/data/imagenet", "init.checkpoint=/ckpt/ghn2.pt",
                       "pair=b2_to_b0,resnet_to_effnet", "seed=1", f"paths.runs={tmp_path}"])
    assert plan.axes == {"pair": ["b2_to_b0", "resnet_to_effnet"], "init": ["random", "dpiat", "ghn"], "seed": ["1"]}
    assert len(plan.runs) == 6
    assert all(("init.checkpoint=/ckpt/ghn2.pt" in t.argv) == ("init=ghn" in t.argv) for t in plan.runs)
    assert plan.prerequisites == []  # the paper's ImageNet sources are timm's pretrained weights: nothing to train
    assert plan.trainer["accelerator"] == "gpu"
    # three of the four pairs share the target tf_efficientnet_b0: one random run per seed serves them
    plan = plan_sweep(["experiment=paper_imagenet", "data.root=/d", "init=random", "seed=0,1,2", f"paths.runs={tmp_path}"])
    assert [t.folder.parts[-3:] for t in plan.runs] == [(p, "random", f"seed{s}") for p in ("b2_to_b0", "resnet_to_effnet")
                                                        for s in range(3)]
    assert len(plan.shared) == 2 * 3 and "6 of them served by a source-free run of another pair" in plan.summary()


def test_grid_prerequisites_are_stage_one_tasks(tmp_path):
    plan = plan_sweep(["experiment=smoke", "init=random", f"paths.runs={tmp_path}",
                       "grid.prerequisites=['bench/train_ghn.py data=digits epochs=1']"])
    assert [(t.kind, t.argv) for t in plan.prerequisites] == \
        [("prerequisite", ["bench/train_ghn.py", "data=digits", "epochs=1"])]
    with pytest.raises(SweepError, match="not a python script"):
        plan_sweep(["experiment=smoke", f"paths.runs={tmp_path}", "grid.prerequisites=['echo hi']"])


def test_an_init_registered_without_a_yaml_file_is_planned_with_the_options_of_its_composed_config(
        tmp_path, monkeypatch):
    from dpiat import inits

    monkeypatch.setitem(inits._REGISTRY, "halved_test",
                        inits.InitMethod("halved_test", lambda target, source=None: {}, False, "test only"))
    plan = plan_sweep(["experiment=smoke", "init=ghn,halved_test", "init.checkpoint=/ckpt/ghn.pt", "seed=0",
                       f"paths.runs={tmp_path}"])
    assert [t.folder.parts[-2] for t in plan.runs] == ["ghn", "halved_test"]
    # the option goes where the composed init config has that key: ghn's yaml has it, the registered one not
    assert [("init.checkpoint=/ckpt/ghn.pt" in t.argv) for t in plan.runs] == [True, False]
    assert plan.prerequisites == []  # source-free: no source to train
    with pytest.raises(SweepError, match="no init in this sweep \\(halved_test\\) has an option 'checkpoint'"):
        plan_sweep(["experiment=smoke", "init=halved_test", "init.checkpoint=/x", f"paths.runs={tmp_path}"])


@pytest.mark.parametrize("overrides, message", [
    (["experiment=paper_imagenet", "init=random"], "data.root"),  # a value the config leaves missing
    (["experiment=paper_imagenet", "data.root=/d", "init=random", "init.checkpoint=/x"],
     "no init in this sweep \\(random\\) has an option 'checkpoint'"),
    (["experiment=smoke", "epochs=1,2"], "only pair, init, seed and recipe take comma lists"),
    (["experiment=smoke", "hydra/launcher=slurm"], "bench/run.py -m hydra/launcher=slurm"),
    (["experiment=smoke", "pair=nope"], "pair"),
    (["experiment=smoke", "init=nope"], "unknown init 'nope'"),
    (["experiment=smoke", "trainer.devics=2"], "trainer.devics"),
    (["experiment=smoke", "pair.source=resnet18"], "both pair.source=S and pair.target=T"),
    (["experiment=smoke", "pair=custom", "pair.source=resnet18", "pair.target=not_a_model"], "not_a_model"),
])
def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, overrides, message):
    with pytest.raises(SweepError, match=message):
        plan_sweep([*overrides, f"paths.runs={tmp_path}"])


def test_cli_reports_bad_input_in_one_line_with_exit_status_2(tmp_path):
    rc, out = cli("experiment=smoke", "epochs=1,2", f"paths.runs={tmp_path}", "--local")
    assert rc == 2 and out.startswith("error: epochs=1,2: only pair, init, seed and recipe") and "Traceback" not in out


def test_submit_without_sbatch_says_how_to_run_here(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    rc, out = cli(*TINY, f"paths.runs={tmp_path}", "--submit")
    assert rc == 2 and "sbatch not found" in out and "--local" in out
    assert not (tmp_path / "smoke").exists()


# ---------------------------------------------------------------------------------------------------------
# Manifests and the job script
# ---------------------------------------------------------------------------------------------------------


def bash_argv(line: str) -> list[str]:
    """What slurm/array.sbatch makes of a manifest line (eval "set -- $LINE")."""
    out = subprocess.run(["bash", "-c", 'eval "set -- $1"; printf "%s\\0" "$@"', "_", line],
                         capture_output=True, text=True, check=True).stdout
    return out.split("\0")[:-1]


def test_manifest_lines_come_back_as_the_same_arguments_and_stamps_never_collide(tmp_path):
    tricky = "logger.wandb_project='a b; $HOME \"q\"'"
    plan = plan_sweep([*SMOKE_GRID, f"paths.runs={tmp_path}", tricky])
    first = write_manifests(plan, mode="local", command=["x"])
    second = write_manifests(plan, mode="local", command=["x"])
    assert first["path"] != second["path"]  # a queued task's manifest is never rewritten
    stages = {s["stage"]: Path(s["manifest"]) for s in first["stages"]}
    assert set(stages) == {"prereq", "runs"}
    assert read_manifest(stages["runs"]) == [t.argv for t in plan.runs]
    for task, line in zip(plan.runs, stages["runs"].read_text().splitlines()):
        assert bash_argv(line) == task.argv and tricky in task.argv
    record = json.loads(Path(first["path"]).read_text())
    assert record["n_points"] == 4 and [s["n_tasks"] for s in record["stages"]] == [1, 4]


def test_array_sbatch_runs_its_line_under_srun_with_the_site_setup(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"  # records what the job script would launch
    srun.write_text('#!/bin/sh\nprintf "%s\\n" "$OMP_NUM_THREADS" "$SITE_SETUP_RAN" "$@" > "$SRUN_OUT"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    manifest = tmp_path / "m.txt"
    manifest.write_text("bench/run.py seed=0\nbench/run.py 'logger.wandb_project=a b' seed=1\n")
    site = tmp_path / "site.env"
    site.write_text('PARTITION=gpu   # ignored by the job\nSETUP="export SITE_SETUP_RAN=yes"\nPYTHON=/opt/py\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SRUN_OUT": str(tmp_path / "srun.txt"),
           "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_JOB_ID": "7", "SLURM_JOB_ID": "8", "SLURM_CPUS_PER_TASK": "3"}
    script = str(REPO / "slurm" / "array.sbatch")
    proc = subprocess.run(["bash", script, str(manifest), str(site)], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "srun.txt").read_text().splitlines() == \
        ["3", "yes", "--cpus-per-task=3", "--kill-on-bad-exit=1", "/opt/py", "bench/run.py",
         "logger.wandb_project=a b", "seed=1"]
    assert "job 7_1 (id 8, restart 0)" in proc.stdout
    env["SLURM_ARRAY_TASK_ID"] = "2"
    proc = subprocess.run(["bash", script, str(manifest)], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "has no line 2" in proc.stderr


# ---------------------------------------------------------------------------------------------------------
# Site files and sbatch options
# ---------------------------------------------------------------------------------------------------------


def test_site_file_is_read_by_bash_and_misspelt_keys_are_refused(tmp_path):
    site = tmp_path / "site.env"
    site.write_text("# comment\nPARTITION=gpu  # trailing comment\nACCOUNT=\nTIME=2-00:00:00\n"
                    'SBATCH_EXTRA="--exclude=n1 --mail-type=FAIL"\nSETUP="module load x; source $HOME/venv"\n')
    values = read_site(site)
    assert values["PARTITION"] == "gpu" and values["TIME"] == "2-00:00:00" and "ACCOUNT" not in values
    assert values["SBATCH_EXTRA"] == "--exclude=n1 --mail-type=FAIL"
    site.write_text("PARTITON=gpu\n")
    with pytest.raises(SweepError, match="unknown keys PARTITON"):
        read_site(site)
    site.write_text('PARTITION="gpu\n')
    with pytest.raises(SweepError, match="not valid bash"):
        read_site(site)
    with pytest.raises(SweepError, match="site.example.env"):
        read_site(tmp_path / "missing.env")
    assert read_site(REPO / "slurm" / "site.example.env")["TIME"] == "1-00:00:00"


def test_sbatch_options_follow_the_trainer_and_the_site(tmp_path):
    plan = plan_sweep(["experiment=paper_imagenet", "data.root=/d", "init=random", "trainer=ddp",
                       "trainer.devices=4", f"paths.runs={tmp_path}"])
    site = {"PARTITION": "gpu", "CPUS_PER_TASK": "9", "PARALLEL": "8", "SBATCH_EXTRA": "--exclude=n1 --qos=high"}
    manifest = tmp_path / "m-runs.txt"
    args = sbatch_args(plan, site, tmp_path / "site.env", stage="runs", manifest=manifest, n_tasks=12,
                                 parallel=None, dependency="41")
    assert args[:2] == ["sbatch", "--parsable"]
    for option in ("--array=0-11%8", "--nodes=1", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu",
                   "--cpus-per-task=9", "--dependency=afterok:41", "--kill-on-invalid-dep=yes", "--exclude=n1",
                   "--qos=high", f"--chdir={REPO}", "--job-name=dpiat-paper_imagenet-runs"):
        assert option in args
    assert args[-3:] == [str(REPO / "slurm" / "array.sbatch"), str(manifest), str((tmp_path / "site.env").resolve())]
    cpu = plan_sweep([*TINY, f"paths.runs={tmp_path}"])
    args = sbatch_args(cpu, {}, None, stage="runs", manifest=manifest, n_tasks=1, parallel=2, dependency=None)
    assert "--array=0-0%2" in args and not any(a.startswith(("--gpus", "--dependency")) for a in args)


# ---------------------------------------------------------------------------------------------------------
# A whole sweep, here
# ---------------------------------------------------------------------------------------------------------


def test_local_sweep_stops_before_the_runs_when_a_prerequisite_fails(tmp_path):
    rc, out = cli(*TINY, f"paths.runs={tmp_path}", "grid.prerequisites=['bench/no_such_script.py']", "--local")
    assert rc == 1 and "[1/2] exit 2" in out and "stage 1 failed, so the runs were not started" in out
    assert not (tmp_path / "smoke" / "test_resnet_to_effnet").exists()


@pytest.mark.slow
def test_local_sweep_runs_aggregates_then_skips_what_is_finished(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "bench/sweep.py", *TINY, f"paths.runs={runs}", "--local"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = runs / "smoke" / "test_resnet_to_effnet" / "random" / "seed0"
    assert read_run(folder)["status"] == "finished"
    assert "[1/1] exit 0" in proc.stdout and "aggregated" in proc.stdout
    assert (runs / "smoke" / "table" / "table.md").exists()  # the table, inside the runs (never results/smoke)
    assert len(list((runs / "smoke" / "manifests").glob("*-runs.txt"))) == 1

    rc, out = cli(*TINY, f"paths.runs={runs}", "--local")
    assert rc == 0 and "1 finished, 0 to run" in out and "nothing to run" in out

    # paths.runs not named runs/ (e.g. a scratch folder): the same rule, the table inside the experiment's runs
    scratch = tmp_path / "scratch"
    shutil.copytree(runs / "smoke", scratch / "smoke")
    rc, out = cli(*TINY, f"paths.runs={scratch}", "--local")
    assert rc == 0 and (scratch / "smoke" / "table" / "table.md").exists(), out
    assert len(list((runs / "smoke" / "manifests").glob("*-runs.txt"))) == 1

    plan = plan_sweep([*TINY[:2], "init=random,dpiat", *TINY[3:], f"paths.runs={runs}"])
    assert [t.folder.parent.name for t in plan.finished] == ["random"]
    assert [t.folder.parent.name for t in plan.runs] == ["dpiat"] and len(plan.prerequisites) == 1

    # a second pair with the same target: its random run is the finished one above, not a new one
    plan = plan_sweep([*TINY[:1], "pair=custom,test_resnet_to_effnet", "pair.source=resnet10t",
                       "pair.target=test_efficientnet", "init=random,dpiat", *TINY[3:], f"paths.runs={runs}"])
    assert [t.folder for t in plan.finished] == [folder]
    assert [t.folder.parts[-3] for t in plan.shared] == ["resnet10t_to_test_efficientnet"]
    assert sorted(t.folder.parts[-3] for t in plan.runs) == ["resnet10t_to_test_efficientnet", "test_resnet_to_effnet"]

    with pytest.raises(SweepError, match="holds a run with another configuration .*optim.lr"):
        plan_sweep([*TINY, "optim.lr=0.1", f"paths.runs={runs}"])

    record = read_run(folder)
    record.update(status="failed", failure_kind="diverged", failure_reason="loss became nan")
    atomic_write_json(folder / "run.json", record)
    plan = plan_sweep([*TINY, f"paths.runs={runs}"])
    assert (len(plan.runs), len(plan.failed)) == (0, 1) and "diverged before" in plan.summary()

    # failed for another reason (a missing data folder, a crash): tried again, and the plan says so with why
    record.update(failure_kind="error", failure_reason="imagenet folder /d does not exist")
    atomic_write_json(folder / "run.json", record)
    plan = plan_sweep([*TINY, f"paths.runs={runs}"])
    assert (len(plan.runs), len(plan.failed), len(plan.retried)) == (1, 0, 1)
    assert "(1 of them failed before, tried again)" in plan.summary()
    assert f"failed before, tried again: {folder}  (failed before: imagenet folder /d does not exist)" in plan.summary()


def test_gpu_hour_estimate_counts_what_the_sweep_would_submit():
    from bench.planning.gpu_hours import estimate

    table = estimate(["experiment=paper_imagenet", "data.root=/d", "init.checkpoint=/g.pt"], measured=None)
    # 4 pairs x 3 seeds of dpiat, random and ghn once per target (tf_efficientnet_b0, efficientnet_b0) and seed
    assert table.startswith("paper_imagenet (imagenet, 50 epochs): 24 runs\n")
    assert "| tf_efficientnet_b0 (224 px) | target | 15 | 10.10 | 151.5 |" in table
    assert "| efficientnet_b0 (224 px) | target | 9 | 10.25 | 92.2 |" in table and "**244**" in table
    with pytest.raises(SweepError, match="no image counts for data=digits"):
        estimate(["experiment=smoke"])


def test_gpu_hour_estimate_uses_measured_throughput_when_there_is_a_file(tmp_path, capsys):
    """results/gpu/gpu_check.json (here a tmp file) replaces timm's figures: b0 measured at twice the
    published 1779 images/s halves its hours; the unmeasured networks are scaled by the same factor."""
    from bench.planning.gpu_hours import estimate

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slurm"))
    import estimate_gpu_hours

    paper = ["experiment=paper_imagenet", "data.root=/d", "init.checkpoint=/g.pt"]
    check = tmp_path / "gpu_check.json"
    check.write_text(json.dumps({"device": "NVIDIA H200", "date": "2026-01-01", "throughput": [
        {"model": "tf_efficientnet_b0", "resolution": 224, "batch": 128, "precision": "bf16-mixed",
         "harness_img_s": 2 * 1779.02, "bare_img_s": 3700.0}], "loader_img_s_per_worker": {"pil": 250.0}}))
    measured = estimate(paper, measured=check)
    assert "| tf_efficientnet_b0 (224 px) | target | 15 | 5.05 | 75.8 |" in measured
    assert "| efficientnet_b0 (224 px) | target | 9 | 5.12 | 46.1 |" in measured
    assert measured.splitlines()[-1].startswith(f"throughput measured: {check} (NVIDIA H200, 2026-01-01)")
    published = estimate(paper, measured=tmp_path / "absent.json")
    assert "| tf_efficientnet_b0 (224 px) | target | 15 | 10.10 | 151.5 |" in published
    assert published.splitlines()[-1].startswith("throughput published: huggingface/pytorch-image-models")
    assert estimate_gpu_hours.main(["--measured", str(check), *paper]) == 0
    assert "Estimated GPU-hours from the throughput measured:" in capsys.readouterr().out
    assert estimate_gpu_hours.main(["--measured", str(tmp_path / "absent.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    check.write_text("{}")
    with pytest.raises(SweepError, match="is not a bench/measure/gpu_check.py result"):
        estimate(paper, measured=check)


def test_a_slice_without_the_init_that_reads_a_prerequisite_does_not_plan_it(tmp_path):
    """A reviewer's slice of the proxy without ghn plans no GHN-2 meta-training (36 min that no run needs); with
    ghn it does, and only the ghn runs wait for it."""
    slice_ = ["experiment=proxy", f"paths.runs={tmp_path}", "grid.pairs=[lite0_imagenet_to_tinynet_e]", "grid.seeds=[0]"]
    plan = plan_sweep([*slice_, "grid.inits=[random,dpiat]"])
    assert not any("train_ghn.py" in t.line for t in plan.prerequisites) and len(plan.runs) == 2
    plan = plan_sweep([*slice_, "grid.inits=[random,ghn]"])
    ghn = [t for t in plan.prerequisites if "train_ghn.py" in t.line]
    assert len(ghn) == 1
    needs = {t.line.split("init=")[1].split()[0]: t.needs for t in plan.runs}
    assert needs == {"random": [], "ghn": ghn}

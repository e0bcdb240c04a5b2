"""The SLURM path end to end, on a real one-node cluster (slurmctld + slurmd + munge + slurmdbd, Debian packages).

The cluster is started by slurm/local-cluster/up.sh for the session (tests/slurm_cluster.py) and stopped
after it; the tests skip, saying why, only where SLURM cannot be installed. Everything runs the real code:
bench/sweep.py submits slurm/array.sbatch, whose tasks run bench/run.py under srun, on timm's test-sized
models and sklearn digits. About 5 min on a 2-core machine.

    pytest -m slurm tests/test_slurm.py
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.running.record import read_run
from bench.sweep import main as sweep_main
from tests.slurm_cluster import job_tasks, slurm_cluster, submitted_jobs, wait_for_jobs  # noqa: F401 (fixture)

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
PAIR = "test_resnet_to_effnet"


def sweep(*args: str) -> tuple[int, str]:
    """bench/sweep.py in this process (its imports are paid once); returns (exit status, stdout + stderr)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = sweep_main(list(args))
    return rc, buf.getvalue()


def logs(runs: Path) -> str:
    return "".join(p.read_text() for p in sorted((runs / "smoke" / "manifests" / "logs").glob("*.out")))


def curve(record: dict) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "wall_seconds"} for m in record["metrics"]]


@pytest.fixture(scope="module")
def finished_sweep(slurm_cluster, tmp_path_factory):  # noqa: F811
    """A 2 inits x 2 seeds smoke sweep, submitted and finished: (runs dir, sweep output, job ids)."""
    runs = tmp_path_factory.mktemp("array") / "runs"
    rc, out = sweep("experiment=smoke", f"paths.runs={runs}", "grid.inits=[random,dpiat]", "grid.seeds=[0,1]",
                    "--submit", "--parallel", "2")
    assert rc == 0, out
    jobs = submitted_jobs(out)
    assert set(jobs) == {"prereq", "runs"}, out
    states = wait_for_jobs(jobs["prereq"], jobs["runs"], timeout=420, logs=runs / "smoke" / "manifests" / "logs")
    return runs, out, jobs, states


def test_array_of_four_smoke_runs_completes_with_the_source_trained_first(finished_sweep):
    runs, out, jobs, states = finished_sweep
    assert set(states.values()) == {"COMPLETED"}, states
    assert sorted(k for k in states if k.startswith(jobs["runs"] + "_")) == [f"{jobs['runs']}_{i}" for i in range(4)]
    folders = sorted((runs / "smoke" / PAIR).glob("*/seed*"))
    assert [f.relative_to(runs / "smoke" / PAIR).as_posix() for f in folders] == \
        ["dpiat/seed0", "dpiat/seed1", "random/seed0", "random/seed1"]
    records = [read_run(f) for f in folders]
    assert all(r["status"] == "finished" and len(r["metrics"]) == 2 for r in records)
    # each run is one task of the stage-2 array, started once
    assert sorted(int(r["slurm"]["array_task_id"]) for r in records) == [0, 1, 2, 3]
    assert {r["slurm"]["array_job_id"] for r in records} == {jobs["runs"]}
    assert all(r["segments"] == 1 for r in records)
    # the source was trained once, by the stage-1 task, before the runs that use it
    source = read_run(runs / "smoke" / "sources" / "test_resnet" / "seed0")
    assert source["status"] == "finished" and source["segments"] == 1
    assert source["slurm"]["array_job_id"] == jobs["prereq"]
    assert "source test_resnet seed 0: already finished" in logs(runs)


def test_resubmitting_the_finished_experiment_runs_nothing(finished_sweep):
    runs, first_out, jobs, _ = finished_sweep
    folders = sorted((runs / "smoke" / PAIR).glob("*/seed*"))
    before = {f: (f / "run.json").read_text() for f in folders}
    rc, out = sweep("experiment=smoke", f"paths.runs={runs}", "grid.inits=[random,dpiat]", "grid.seeds=[0,1]",
                    "--submit")
    assert rc == 0, out
    assert "4 finished, 0 to run" in out and "nothing to submit" in out and "submitted" not in out
    assert len(list((runs / "smoke" / "manifests").glob("*.json"))) == 1  # no new submission recorded

    # A task of the old manifest that starts anyway (e.g. resubmitted by hand) exits at once, changing nothing.
    manifest = next((runs / "smoke" / "manifests").glob("*-runs.txt"))
    job = subprocess.run(["sbatch", "--parsable", "--array=0", f"--chdir={REPO}",
                          f"--output={runs}/smoke/manifests/logs/again-%A_%a.out", str(REPO / "slurm" / "array.sbatch"),
                          str(manifest)], capture_output=True, text=True, check=True).stdout.strip()
    assert wait_for_jobs(job, timeout=180) == {f"{job}_0": "COMPLETED"}
    log = next((runs / "smoke" / "manifests" / "logs").glob(f"again-{job}_0.out")).read_text()
    assert "already finished" in log, log
    assert {f: (f / "run.json").read_text() for f in folders} == before


def test_requeued_task_resumes_from_its_checkpoint_with_the_metrics_of_an_uninterrupted_run(slurm_cluster,  # noqa: F811
                                                                                             tmp_path):
    # 4 epochs of 90 steps: time to preempt the run after its first epoch and before its end
    point = ["experiment=smoke", "init=random", "seed=0", "data.batch_size=16", "epochs=4"]
    a, b = tmp_path / "a" / "runs", tmp_path / "b" / "runs"
    rc, out = sweep(*point, f"paths.runs={a}", "--submit")
    assert rc == 0, out
    job_a = submitted_jobs(out)["runs"]
    rc, out = sweep(*point, f"paths.runs={b}", "--submit")  # the reference, uninterrupted
    assert rc == 0, out
    job_b = submitted_jobs(out)["runs"]

    # while its job is queued, the same experiment is not submitted twice
    rc, out = sweep(*point, f"paths.runs={a}", "--submit")
    assert rc == 2 and f"still queued or running ({job_a};" in out, out

    run_a = a / "smoke" / PAIR / "random" / "seed0"
    t0 = time.monotonic()
    while not ((run_a / "checkpoints" / "last.ckpt").exists() and read_run(run_a)["metrics"]):
        assert time.monotonic() - t0 < 240, f"no epoch finished in 240 s: {job_tasks(job_a)}\n{logs(a)}"
        time.sleep(0.2)
    assert job_tasks(job_a)[f"{job_a}_0"]["JobState"] == "RUNNING"
    # What SLURM does 120 s before a time limit (--signal=USR1@120): Lightning checkpoints and requeues the task.
    subprocess.run(["scancel", "--signal=USR1", f"{job_a}_0"], check=True, timeout=60)

    states = wait_for_jobs(job_a, job_b, timeout=300, logs=a / "smoke" / "manifests" / "logs")
    assert set(states.values()) == {"COMPLETED"}, states
    log = logs(a)
    assert "Requeued SLURM job" in log and "restart 1)" in log, log
    assert f"from {run_a / 'checkpoints' / 'last.ckpt'}" in log, log
    assert list(run_a.glob("hpc_ckpt_*.ckpt")), "Lightning wrote no checkpoint on SIGUSR1"
    ra, rb = read_run(run_a), read_run(b / "smoke" / PAIR / "random" / "seed0")
    assert (ra["segments"], ra["slurm"]["restart_count"], rb["segments"]) == (2, 1, 1)
    assert ra["status"] == rb["status"] == "finished"
    assert curve(ra) == curve(rb)  # bit-identical epochs, resumed or not


def test_two_task_srun_ddp_run_completes(slurm_cluster, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    rc, out = sweep("experiment=smoke", "init=random", "seed=0", "trainer.devices=2", "trainer.strategy=ddp",
                    f"paths.runs={runs}", "--submit")
    assert rc == 0, out
    job = submitted_jobs(out)["runs"]
    task = job_tasks(job)[f"{job}_0"]
    assert task["NumTasks"] == "2", task  # --ntasks-per-node = trainer.devices
    assert wait_for_jobs(job, timeout=300, logs=runs / "smoke" / "manifests" / "logs") == {f"{job}_0": "COMPLETED"}
    log = logs(runs)
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log and "distributed_backend=gloo" in log, log
    record = read_run(runs / "smoke" / PAIR / "random" / "seed0")
    assert record["status"] == "finished" and record["hardware"]["n_devices"] == 2
    assert record["slurm"]["array_job_id"] == job


def test_hydra_submitit_launcher_sweep_runs_each_point_as_a_slurm_job(slurm_cluster, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "-m", "experiment=smoke", "hydra/launcher=slurm",
         "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
         f"paths.runs={runs}", "init=random", "seed=0,1"],
        cwd=REPO, capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [read_run(runs / "smoke" / PAIR / "random" / f"seed{s}") for s in (0, 1)]
    assert all(r["status"] == "finished" for r in records)
    jobs = {r["slurm"]["array_job_id"] for r in records}
    assert len(jobs) == 1 and None not in jobs  # one array, each point a task of it
    assert list((runs / "smoke" / "manifests" / "submitit").glob("*/*_log.out"))

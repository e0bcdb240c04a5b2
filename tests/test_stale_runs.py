"""Runs killed outright: a run.json left at ``status: running`` is told from a live run by its owner and heartbeat.

On the owner's host the process is checked (pid and its start time); from another host the heartbeat's age.
A dead owner makes the run interrupted: resumable for the folder decision and the sweep plan, named and never
averaged in by the aggregation. A live owner on this host makes the harness refuse a second trainer.
"""

from __future__ import annotations

import socket
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.errors import Interrupted, RunFolderError
from bench.files import atomic_write_json
from bench.planning.plan import plan_sweep
from bench.results.cells import build_cells, summarize_cell
from bench.results.runs import find_runs
from bench.running import heartbeat
from bench.running import record as schema
from bench.running.folder import RunFolder
from bench.running.harness import execute
from bench.running.record import boot_id, epoch_entry, liveness, owner_now, process_start, read_run

TINY = ["experiment=smoke", "init=random", "seed=0", "data.train_subset=256", "epochs=1"]


def stamp(ago: timedelta = timedelta(0)) -> str:
    return (datetime.now(timezone.utc) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def owner_of(proc: subprocess.Popen) -> dict:
    return {"host": socket.gethostname(), "pid": proc.pid, "pid_start": process_start(proc.pid), "boot_id": boot_id()}


@pytest.fixture
def dead_owner() -> dict:
    """The owner record of a process that ran and was killed (SIGKILL), as a training killed outright."""
    proc = subprocess.Popen(["sleep", "60"])
    owner = owner_of(proc)
    proc.kill()
    proc.wait()
    return owner


@pytest.fixture
def live_owner():
    """The owner record of another process of this host that is alive throughout the test."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield owner_of(proc)
    finally:
        proc.kill()
        proc.wait()


def epoch(e: int, top1: float) -> dict:
    return epoch_entry(epoch=e, val_top1=top1, val_top5=0.9, val_loss=1.0, train_loss=1.0, images_seen=100 * e,
                       val_samples=50, wall_seconds=float(e))


def write_run(experiment: Path, seed: int, **changes) -> Path:
    """A two-epoch dpiat run of pair a_to_t with both epochs done, status running unless ``changes`` say else."""
    folder = experiment / "a_to_t" / "dpiat" / f"seed{seed}"
    run = {"schema_version": 1, "status": "running", "failure_reason": None, "failure_kind": None,
           "experiment": experiment.name, "pair": "a_to_t", "init": "dpiat", "seed": seed, "source": "a",
           "target": "t", "data": "digits", "epochs": 2, "config": {"lr": 0.1}, "similarity": 0.5,
           "init_metrics": None, "metrics": [epoch(1, 0.5), epoch(2, 0.6)], "updated": stamp(), "owner": owner_now()}
    run.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "run.json", run)
    (folder / "checkpoints").mkdir(exist_ok=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    return folder


def folder_of(path: Path) -> RunFolder:
    return RunFolder("target", path, {"lr": 0.1}, 2, int(path.name[4:]), "t", path.parents[2].name, "a_to_t",
                     "dpiat", "a")


def cell_notes(experiment: Path):
    runs, problems = find_runs(experiment)
    (cell,) = build_cells(runs, problems)[0]
    summarize_cell(cell, None)
    return runs, cell


# ---------------------------------------------------------------------------------------------------------
# Liveness, the decision, the aggregation
# ---------------------------------------------------------------------------------------------------------


def test_a_killed_owner_on_this_host_makes_the_run_interrupted_resumable_and_not_averaged(tmp_path, dead_owner):
    path = write_run(tmp_path / "exp", 0, owner=dead_owner)
    live = liveness(read_run(path))
    assert live.state == "interrupted" and f"process {dead_owner['pid']}" in live.why and "gone" in live.why
    decision = folder_of(path).decide()
    assert decision.action == "resume" and "gone" in decision.interrupted

    runs, cell = cell_notes(tmp_path / "exp")
    assert runs[0].status == "interrupted" and cell.used == [] and cell.n_partial == 1
    assert "seed0 interrupted (resumable) (2/2 epochs): its process" in "; ".join(cell.notes)


def test_a_live_owner_on_this_host_is_running_and_a_second_trainer_is_refused(tmp_path, live_owner):
    path = write_run(tmp_path / "exp", 0, owner=live_owner, updated=stamp(timedelta(days=2)))  # pid beats age
    live = liveness(read_run(path))
    assert (live.state, live.here) == ("running", True)
    decision = folder_of(path).decide()
    assert decision.action == "running" and decision.here and str(live_owner["pid"]) in decision.reason

    runs, cell = cell_notes(tmp_path / "exp")
    assert runs[0].status == "running" and len(cell.used) == 1  # a live run's epochs so far count, as before
    assert "averaged in over epochs 1..2 although not finished: seed0 running" in "; ".join(cell.notes)

    with pytest.raises(RunFolderError, match=rf"being trained by another process \(process {live_owner['pid']} "
                                             r"on this host .*\); two must not train one folder"):
        execute(folder_of(path), None, lambda: pytest.fail("must not initialise"))


def test_a_reused_pid_is_not_taken_for_the_owner(tmp_path, live_owner):
    reused = {**live_owner, "pid_start": live_owner["pid_start"] - 1}  # the same pid, started at another time
    assert liveness(read_run(write_run(tmp_path / "exp", 0, owner=reused))).state == "interrupted"
    rebooted = {**live_owner, "boot_id": "another-boot"}
    assert liveness(read_run(write_run(tmp_path / "exp", 1, owner=rebooted))).state == "interrupted"


def test_another_host_is_judged_by_its_heartbeat(tmp_path):
    elsewhere = {"host": "node-elsewhere", "pid": 4242, "pid_start": 1, "boot_id": "x"}
    old = write_run(tmp_path / "exp", 0, owner=elsewhere,
                    updated=stamp(timedelta(seconds=schema.STALE_AFTER_SECONDS + 60)))
    fresh = write_run(tmp_path / "exp", 1, owner=elsewhere, updated=stamp(timedelta(minutes=2)))
    assert liveness(read_run(old)).state == "interrupted"
    assert "no heartbeat for 31 min" in liveness(read_run(old)).why
    live = liveness(read_run(fresh))
    assert (live.state, live.here) == ("running", False) and "node-elsewhere, heartbeat 2 min ago" in live.why
    assert folder_of(old).decide().action == "resume"
    assert folder_of(fresh).decide().action == "running" and not folder_of(fresh).decide().here

    runs, cell = cell_notes(tmp_path / "exp")
    assert [r.status for r in sorted(runs, key=lambda r: r.seed)] == ["interrupted", "running"]
    assert [r.seed for r in cell.used] == [1]
    assert "not averaged in (1 interrupted, to be resumed): seed0 interrupted (resumable)" in "; ".join(cell.notes)


def test_runs_written_before_owner_existed_and_runs_stopped_gracefully(tmp_path):
    legacy = write_run(tmp_path / "exp", 0, updated=stamp(timedelta(hours=3)))
    raw = read_run(legacy)
    del raw["owner"]
    atomic_write_json(legacy / "run.json", raw)
    assert liveness(read_run(legacy)).state == "interrupted"  # an old file: the heartbeat alone
    raw.update(updated=stamp())
    atomic_write_json(legacy / "run.json", raw)
    assert liveness(read_run(legacy)).state == "running"
    stopped = write_run(tmp_path / "exp", 1, owner=None)  # the harness let go of it (Ctrl-C, SIGTERM)
    assert liveness(read_run(stopped)) == schema.Liveness("interrupted", "stopped before finishing")
    # this very process is not training a run it is asking about: it was interrupted earlier in this process
    mine = write_run(tmp_path / "exp", 2)
    assert liveness(read_run(mine)).state == "interrupted"
    assert liveness({"status": "finished"}).state == "finished"
    assert liveness({"status": "running"}).state == "running"  # not the harness's file: nothing to judge by


# ---------------------------------------------------------------------------------------------------------
# The heartbeat
# ---------------------------------------------------------------------------------------------------------


class _Folder:
    def __init__(self, path: Path):
        self.record_path, self.writes = path, 0

    def write(self, run: dict) -> None:
        self.writes += 1


def test_the_heartbeat_rewrites_every_held_record_at_most_once_a_period():
    target, source = _Folder(Path("/t/run.json")), _Folder(Path("/s/run.json"))
    heartbeat.hold(target, {})
    heartbeat.hold(source, {})  # a target waiting for its source, in the same process: both beat
    heartbeat.hold(_Folder(Path("/other/run.json")), {}, write=False)  # not the writing rank: never held
    try:
        start = heartbeat._last
        assert not heartbeat.beat(start + schema.HEARTBEAT_SECONDS - 1)
        assert heartbeat.beat(start + schema.HEARTBEAT_SECONDS)
        assert not heartbeat.beat(start + schema.HEARTBEAT_SECONDS + 1)
        assert (target.writes, source.writes) == (1, 1)
        heartbeat.release(source)
        assert heartbeat.beat(start + 3 * schema.HEARTBEAT_SECONDS)
        assert (target.writes, source.writes) == (2, 1)
    finally:
        heartbeat.release(target)
        heartbeat.release(source)
    assert not heartbeat._held and not heartbeat.beat(start + 10 * schema.HEARTBEAT_SECONDS)


def test_a_real_run_records_its_owner_and_beats_at_batch_ends(compose_config, tmp_path, monkeypatch):
    from bench.running.target import run

    beats = []
    real_beat = heartbeat.beat
    monkeypatch.setattr(heartbeat, "HEARTBEAT_SECONDS", 0)
    monkeypatch.setattr(heartbeat, "beat", lambda: beats.append(real_beat()) or beats[-1])
    done = run(compose_config(*TINY, f"paths.runs={tmp_path}"))
    assert done["status"] == "finished" and done["owner"] == owner_now()
    assert beats and all(beats)  # at every training and validation batch end, the period being 0
    assert not heartbeat._held  # released when the run ended


def test_a_run_stopped_by_the_user_is_let_go_and_resumable(compose_config, tmp_path):
    cfg = compose_config(*TINY, f"paths.runs={tmp_path}")
    folder = RunFolder.target(cfg)

    def interrupt():
        raise KeyboardInterrupt

    # Ctrl-C becomes one line: which epoch it stopped after and how to resume (bench/errors.py Interrupted)
    with pytest.raises(Interrupted, match="interrupted after epoch 0 of .*rerun the same command to resume"):
        execute(folder, cfg, interrupt)
    stopped = read_run(folder.path)
    assert stopped["status"] == "running" and stopped["owner"] is None and not heartbeat._held
    decision = folder.decide()
    assert decision.action == "start" and decision.interrupted == "stopped before finishing"


# ---------------------------------------------------------------------------------------------------------
# The sweep plan
# ---------------------------------------------------------------------------------------------------------


def test_the_plan_leaves_out_a_live_run_and_resumes_an_interrupted_one(tmp_path, live_owner, dead_owner):
    (task,) = plan_sweep([*TINY, f"paths.runs={tmp_path}"]).runs
    started = {"schema_version": 1, "status": "running", "experiment": "smoke", "pair": task.folder.parts[-3],
               "init": "random", "seed": 0, "metrics": [], "updated": stamp()}
    task.folder.mkdir(parents=True)
    atomic_write_json(task.folder / "run.json", {**started, "owner": live_owner})
    plan = plan_sweep([*TINY, f"paths.runs={tmp_path}"])
    assert (plan.runs, [t.folder for t in plan.running]) == ([], [task.folder])
    summary = plan.summary()
    assert "1 running now (left out)" in summary
    assert f"left out, running now: {task.folder}  (process {live_owner['pid']} on this host" in summary

    atomic_write_json(task.folder / "run.json", {**started, "owner": dead_owner})
    plan = plan_sweep([*TINY, f"paths.runs={tmp_path}"])
    assert [t.folder for t in plan.runs] == [task.folder] == [t.folder for t in plan.interrupted]
    summary = plan.summary()
    assert "1 to run (1 of them interrupted, resumable)" in summary
    assert f"interrupted (resumable): {task.folder}  (its process {dead_owner['pid']} on" in summary
    assert "starts again: no checkpoint yet" in summary

"""bench/sweep.py --local --jobs J: J tasks of a stage at once, stage 1 before stage 2, output in log files
with the progress lines echoed, failures named (bench/planning/local.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.planning.local import LOG_DIR, run_local
from bench.planning.plan import Plan, Task


REPO = Path(__file__).resolve().parents[1]


def task(kind: str, code: str) -> Task:
    return Task(kind, ["-c", code])


def test_jobs_run_a_stage_at_once_after_stage_one_and_echo_progress(tmp_path, capsys):
    stamp = tmp_path / "stamps"
    stamp.mkdir()
    sleeper = ("import time, pathlib; p = pathlib.Path(r'{d}'); (p / '{n}.start').write_text(str(time.time())); "
               "print('x {n}: epoch 1/1: val_top1 0.5', flush=True); time.sleep(1.5); "
               "(p / '{n}.end').write_text(str(time.time()))")
    plan = Plan(experiment="t", runs_dir=tmp_path / "runs", overrides=[], axes={"pair": [], "init": [], "seed": []},
                prerequisites=[task("source", sleeper.format(d=stamp, n="src"))],
                runs=[task("run", sleeper.format(d=stamp, n=f"run{k}")) for k in range(2)]
                + [task("run", "import sys; print('error: it broke'); sys.exit(3)")])
    t0 = time.time()
    failed = run_local(plan, jobs=2)
    assert [t.argv[-1] for t in failed] == ["import sys; print('error: it broke'); sys.exit(3)"]
    read = {p.name: float(p.read_text()) for p in stamp.iterdir()}
    assert read["run0.start"] >= read["src.end"] and read["run1.start"] >= read["src.end"]  # stage 1 first
    assert abs(read["run0.start"] - read["run1.start"]) < 1.0  # the two runs at once
    assert time.time() - t0 < 3 * 1.5 + 2
    out, err = capsys.readouterr()
    assert "x run0: epoch 1/1: val_top1 0.5" in out and "x src: epoch 1/1" in out  # progress echoed
    assert "error: it broke" in err and "1 of 4 tasks failed" in err
    logs = sorted(p.name for p in (tmp_path / "runs" / LOG_DIR).iterdir())
    assert len(logs) == 4


def test_a_failed_stage_one_starts_no_run(tmp_path, capsys):
    plan = Plan(experiment="t", runs_dir=tmp_path / "runs", overrides=[], axes={"pair": [], "init": [], "seed": []},
                prerequisites=[task("source", "import sys; sys.exit(1)")],
                runs=[task("run", f"open(r'{tmp_path / 'ran'}', 'w')")])
    assert len(run_local(plan, jobs=2)) == 1
    assert not (tmp_path / "ran").exists()
    assert "stage 1 failed" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Stopping a sweep: SIGINT / SIGTERM reach its tasks; logs are appended to, never truncated
# ---------------------------------------------------------------------------------------------------------

# A task that records its pid, then waits; on SIGINT it writes what a run would save and exits (like bench/run.py).
POLITE = ("import os, pathlib, signal, sys, time; d = pathlib.Path(r'{d}'); "
          "signal.signal(signal.SIGINT, lambda *a: ((d / '{n}.sigint').write_text('saved'), sys.exit(130))); "
          "(d / '{n}.pid').write_text(str(os.getpid())); print('{n}: epoch 1/3: val_top1 0.5', flush=True); "
          "time.sleep(120)")
# One that ignores SIGINT: the sweep must end it all the same (SIGTERM after the grace period).
STUBBORN = ("import os, pathlib, signal, time; d = pathlib.Path(r'{d}'); signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "(d / '{n}.pid').write_text(str(os.getpid())); time.sleep(120)")
DRIVER = """
import sys
from pathlib import Path
import bench.planning.local as local
from bench.planning.plan import Plan, Task
local.STOP_GRACE_SECONDS = 2.0
tasks = [Task("run", ["-c", code], folder=Path(sys.argv[1]) / "exp" / f"p{{k}}" / "dpiat" / "seed0")
         for k, code in enumerate({codes!r})]
plan = Plan(experiment="exp", runs_dir=Path(sys.argv[1]) / "exp", overrides=[], axes={{"pair": [], "init": [], "seed": []}},
            runs=tasks)
try:
    local.run_local(plan, jobs={jobs})
except local.Stopped as e:
    sys.exit(128 + e.signum)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")  # a zombie is gone


def _start_driver(tmp_path: Path, codes: list[str], jobs: int) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", DRIVER.format(codes=codes, jobs=jobs), str(tmp_path / "runs")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own group: nothing here signals anyone else's
    deadline = time.time() + 120
    pids: list[int] = []
    while time.time() < deadline and len(pids) < min(jobs, len(codes)):
        pids = [int(p.read_text()) for p in sorted(tmp_path.glob("*.pid")) if p.read_text()]
        time.sleep(0.2)
    assert len(pids) == min(jobs, len(codes)), "the tasks did not start"
    return proc, pids


@pytest.mark.parametrize("sig, jobs", [(signal.SIGTERM, 2), (signal.SIGINT, 1)])
def test_a_signal_to_the_sweep_stops_its_tasks_and_says_so(tmp_path, sig, jobs):
    codes = [POLITE.format(d=tmp_path, n="a"), STUBBORN.format(d=tmp_path, n="b")]
    proc, pids = _start_driver(tmp_path, codes, jobs)
    time.sleep(1.0)
    proc.send_signal(sig)  # this test's own driver process, by pid
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    # the driver's 2-second grace for the task that ignores SIGINT, read when the sweep stops (not the 30 s default)
    assert time.monotonic() - sent < 20
    assert proc.returncode == 128 + sig, (out, err)
    assert not any(_alive(pid) for pid in pids)  # no task outlives the sweep
    assert (tmp_path / "a.sigint").read_text() == "saved"  # the task was asked first, and could save itself
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    stopped = "2 tasks ([1/2] p0/dpiat/seed0, [2/2] p1/dpiat/seed0)" if jobs == 2 else "1 task ([1/2] p0/dpiat/seed0)"
    assert lines[0] == (f"{signal.Signals(sig).name}: stopped {stopped}; run the same command again to resume "
                        "(finished runs are skipped, started ones resume)")


def test_a_task_dies_with_a_sweep_killed_outright(tmp_path):
    proc, pids = _start_driver(tmp_path, [POLITE.format(d=tmp_path, n="a")], jobs=2)
    proc.kill()  # SIGKILL: the sweep cannot clean up; the kernel sends its tasks SIGTERM (PR_SET_PDEATHSIG)
    proc.communicate(timeout=30)
    deadline = time.time() + 20
    while _alive(pids[0]) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(pids[0])


def test_logs_are_appended_to_with_a_header_per_attempt(tmp_path, capsys):
    folder = tmp_path / "runs" / "exp" / "p" / "dpiat" / "seed0"
    plan = Plan(experiment="t", runs_dir=tmp_path / "runs", overrides=[], axes={"pair": [], "init": [], "seed": []},
                runs=[Task("run", ["-c", "print('x: epoch 1/1: val_top1 0.5')"], folder=folder)])
    log = tmp_path / "runs" / LOG_DIR / "p_dpiat_seed0.log"
    log.parent.mkdir(parents=True)
    log.write_text("an earlier attempt, maybe still written by its process\n")
    assert run_local(plan, jobs=2) == [] and run_local(plan, jobs=2) == []
    text = log.read_text()
    assert text.startswith("an earlier attempt, maybe still written by its process\n") and "\0" not in text
    outputs = [line for line in text.splitlines() if line == "x: epoch 1/1: val_top1 0.5"]
    assert text.count("=====") == 4 and len(outputs) == 2  # two headers (they name the command), two outputs
    assert sorted(p.name for p in log.parent.iterdir()) == ["p_dpiat_seed0.log"]
    assert capsys.readouterr().out.count("[1] x: epoch 1/1: val_top1 0.5") == 2  # this attempt's lines, echoed once


def test_a_run_that_needs_no_prerequisite_starts_beside_stage_one(tmp_path, capsys):
    """--local: a run whose ``needs`` are done (none: a random init) starts while a slow prerequisite still runs;
    a run needing that prerequisite waits for it; the prerequisites never wait for each other."""
    stamp = tmp_path / "stamps"
    stamp.mkdir()
    code = ("import time, pathlib; p = pathlib.Path(r'{d}'); (p / '{n}.start').write_text(str(time.time())); "
            "time.sleep({s}); (p / '{n}.end').write_text(str(time.time()))")
    ghn = task("prerequisite", code.format(d=stamp, n="ghn", s=2.0))
    src = task("source", code.format(d=stamp, n="src", s=0.2))
    free = Task("run", ["-c", code.format(d=stamp, n="free", s=0.2)], needs=[])
    reads = Task("run", ["-c", code.format(d=stamp, n="reads", s=0.2)], needs=[ghn])
    plan = Plan(experiment="t", runs_dir=tmp_path / "runs", overrides=[], axes={"pair": [], "init": [], "seed": []},
                prerequisites=[src, ghn], runs=[reads, free])
    assert run_local(plan, jobs=2) == []
    read = {p.name: float(p.read_text()) for p in stamp.iterdir()}
    assert read["free.start"] < read["ghn.end"]  # started beside the GHN
    assert read["reads.start"] >= read["ghn.end"]  # waited for what it reads
    assert read["ghn.start"] < read["src.end"] + 0.5  # the two prerequisites at once, neither waiting


def test_a_run_whose_prerequisite_failed_is_not_started_but_others_are(tmp_path, capsys):
    bad = task("prerequisite", "import sys; sys.exit(1)")
    reads = Task("run", ["-c", f"open(r'{tmp_path / 'reads'}', 'w')"], needs=[bad])
    free = Task("run", ["-c", f"open(r'{tmp_path / 'free'}', 'w')"], needs=[])
    plan = Plan(experiment="t", runs_dir=tmp_path / "runs", overrides=[], axes={"pair": [], "init": [], "seed": []},
                prerequisites=[bad], runs=[reads, free])
    assert run_local(plan, jobs=2) == [bad]
    assert (tmp_path / "free").exists() and not (tmp_path / "reads").exists()
    assert "stage 1 failed, so the run that needs it was not started" in capsys.readouterr().err

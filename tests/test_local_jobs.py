"""bench/sweep.py --local --jobs J: J tasks of a stage at once, stage 1 before stage 2, output in log files
with the progress lines echoed, failures named (bench/planning/local.py)."""

from __future__ import annotations

import time

from bench.planning.local import LOG_DIR, run_local
from bench.planning.plan import Plan, Task


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

"""Running a plan here with this Python: the same task lines SLURM would get.

Stage 1 first; a failed prerequisite stops the runs that need it (on SLURM, ``afterok`` cancels them).
``jobs`` > 1 runs that many tasks of a stage at once, each writing its output to ``<runs>/local_logs/``
(pin ``trainer.threads`` so that they do not fight over the cores: two one-thread tasks on two cores train
small nets faster than one two-thread task, and the result does not depend on ``jobs``).

    from bench.planning.local import run_local
    failed = run_local(plan, jobs=2)   # the tasks that exited non-zero (their run.json says why)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.planning.manifests import write_manifests
from bench.planning.plan import Plan, Task
from bench.planning.slurm import REPO_ROOT, refuse_if_queued

LOG_DIR = "local_logs"


def run_local(plan: Plan, jobs: int = 1) -> list[Task]:
    """Run stage 1, then stage 2 (unless stage 1 failed), ``jobs`` tasks at once; return the tasks that failed."""
    failed: list[Task] = []
    if not plan.runs:
        print("nothing to run: every run of this grid is finished" + (" or failed before" if plan.failed else ""))
        return failed
    if shutil.which("squeue"):
        refuse_if_queued(plan)
    record = write_manifests(plan, mode="local", command=sys.argv)
    print(f"manifests: {', '.join(s['manifest'] for s in record['stages'])}")
    tasks = plan.prerequisites + plan.runs
    numbered = list(enumerate(tasks, 1))
    stage1 = [(i, t) for i, t in numbered if t.kind != "run"]
    stage2 = [(i, t) for i, t in numbered if t.kind == "run"]
    failed += _run_stage(stage1, len(tasks), jobs, Path(plan.runs_dir) / LOG_DIR)
    if failed:  # a failed prerequisite: the runs that need it would fail too (on SLURM, afterok cancels them)
        print("\nstage 1 failed, so the runs were not started; fix it and run this command again "
              "(finished work is skipped)", file=sys.stderr)
    else:
        failed += _run_stage(stage2, len(tasks), jobs, Path(plan.runs_dir) / LOG_DIR)
    if failed:
        print(f"\n{len(failed)} of {len(tasks)} tasks failed (their run.json says why):", file=sys.stderr)
        for t in failed:
            print(f"  python {t.line}", file=sys.stderr)
    return failed


def _log_name(i: int, task: Task) -> str:
    label = task.folder.relative_to(task.folder.parents[2]) if task.folder and len(task.folder.parents) > 2 else task.kind
    return f"{i:03d}-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label)) + ".log"


def _run_stage(tasks: list[tuple[int, Task]], total: int, jobs: int, log_dir: Path) -> list[Task]:
    """Run ``tasks``, at most ``jobs`` at once; one at a time they print to this terminal, else to log files."""
    failed: list[Task] = []
    if jobs <= 1:
        for i, task in tasks:
            print(f"\n[{i}/{total}] python {task.line}", flush=True)
            t0 = time.monotonic()
            rc = subprocess.call([sys.executable, *task.argv], cwd=REPO_ROOT)
            print(f"[{i}/{total}] exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
            if rc != 0:
                failed.append(task)
        return failed
    log_dir.mkdir(parents=True, exist_ok=True)
    waiting, running = list(tasks), []
    seen: dict[int, int] = {}  # how much of each task's log was already looked through for progress lines
    while waiting or running:
        while waiting and len(running) < jobs:
            i, task = waiting.pop(0)
            log = log_dir / _log_name(i, task)
            print(f"[{i}/{total}] python {task.line}   (output: {log})", flush=True)
            handle = log.open("w")
            proc = subprocess.Popen([sys.executable, *task.argv], cwd=REPO_ROOT, stdout=handle,
                                    stderr=subprocess.STDOUT)
            running.append((i, task, proc, handle, log, time.monotonic()))
        time.sleep(0.5)
        for entry in list(running):
            i, task, proc, handle, log, t0 = entry
            _echo_progress(i, log, seen)
            rc = proc.poll()
            if rc is None:
                continue
            running.remove(entry)
            handle.close()
            _echo_progress(i, log, seen)
            print(f"[{i}/{total}] exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
            if rc != 0:
                failed.append(task)
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                print("\n".join("    " + line for line in tail), file=sys.stderr)
    return failed


# The lines of a task's log worth showing on the terminal while it runs (one per epoch, and how it ended).
PROGRESS = re.compile(r": (epoch \d+/\d+|after init|finished|held-out)|^epoch \d+/\d+|^error")


def _echo_progress(i: int, log: Path, seen: dict[int, int]) -> None:
    """Print the progress lines ``log`` gained since last time, prefixed with the task number."""
    try:
        with log.open("rb") as f:
            f.seek(seen.get(i, 0))
            chunk = f.read()
    except OSError:
        return
    end = chunk.rfind(b"\n") + 1  # only whole lines; the rest next time
    seen[i] = seen.get(i, 0) + end
    for line in chunk[:end].decode(errors="replace").splitlines():
        if PROGRESS.search(line):
            print(f"  [{i}] {line.strip()}", flush=True)

"""Running a plan here, one task after another, with this Python: the same task lines SLURM would get.

Stage 1 first; a failed prerequisite stops the runs that need it (on SLURM, ``afterok`` cancels them).

    from bench.planning.local import run_local
    failed = run_local(plan)           # the tasks that exited non-zero (their run.json says why)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from bench.planning.manifests import write_manifests
from bench.planning.plan import Plan, Task
from bench.planning.slurm import REPO_ROOT, refuse_if_queued


def run_local(plan: Plan) -> list[Task]:
    """Run stage 1, then stage 2 (unless stage 1 failed); return the tasks that failed."""
    failed: list[Task] = []
    if not plan.runs:
        print("nothing to run: every run of this grid is finished" + (" or failed before" if plan.failed else ""))
    else:
        if shutil.which("squeue"):
            refuse_if_queued(plan)
        record = write_manifests(plan, mode="local", command=sys.argv)
        print(f"manifests: {', '.join(s['manifest'] for s in record['stages'])}")
        tasks = plan.prerequisites + plan.runs
        for i, task in enumerate(tasks, 1):
            if task.kind == "run" and any(t.kind != "run" for t in failed):
                # a failed prerequisite: the runs that need it would fail too (on SLURM, afterok cancels them)
                print("\nstage 1 failed, so the runs were not started; fix it and run this command again "
                      "(finished work is skipped)", file=sys.stderr)
                break
            print(f"\n[{i}/{len(tasks)}] python {task.line}", flush=True)
            t0 = time.monotonic()
            rc = subprocess.call([sys.executable, *task.argv], cwd=REPO_ROOT)
            print(f"[{i}/{len(tasks)}] exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
            if rc != 0:
                failed.append(task)
        if failed:
            print(f"\n{len(failed)} of {len(tasks)} tasks failed (their run.json says why):", file=sys.stderr)
            for t in failed:
                print(f"  python {t.line}", file=sys.stderr)
    return failed

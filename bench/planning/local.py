"""Running a plan here with this Python: the same task lines SLURM would get.

Stage 1 first; a failed prerequisite stops the runs that need it (on SLURM, ``afterok`` cancels them).
``jobs`` > 1 runs that many tasks of a stage at once, each appending its output to ``<runs>/local_logs/<run>.log``
(pin ``trainer.threads`` so that they do not fight over the cores: two one-thread tasks on two cores train
small nets faster than one two-thread task, and the result does not depend on ``jobs``).

Each task runs in its own process group. SIGINT (Ctrl-C) or SIGTERM to the sweep reaches the sweep alone; it
passes SIGINT on to the groups of the tasks it runs (a run saves itself as interrupted and exits), then SIGTERM
and SIGKILL to any still there after :data:`STOP_GRACE_SECONDS`, names the tasks it stopped in one line and
raises :class:`Stopped`: the same command again resumes them. On Linux a task also gets SIGTERM when the sweep
dies outright (SIGKILL), so no task outlives it. A task's log is named after its run and only ever appended to
(a header line per attempt), so a later sweep never truncates a log that an earlier attempt still writes.

    from bench.planning.local import run_local
    failed = run_local(plan, jobs=2)   # the tasks that exited non-zero (their run.json says why)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.planning.committed import GHN_FILES, SOURCE_FILES, publish_folder, publish_run
from bench.planning.manifests import write_manifests
from bench.planning.plan import Plan, Task
from bench.planning.slurm import REPO_ROOT, refuse_if_queued

LOG_DIR = "local_logs"
STOP_GRACE_SECONDS = 30.0  # how long a stopped task may take to save itself before it is terminated


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
    _publish_made(plan)  # a source or GHN finished by an earlier sweep but not yet in the committed copy
    tasks = plan.prerequisites + plan.runs
    blocked: list[Task] = []
    failed += _run_stage(list(enumerate(tasks, 1)), len(tasks), jobs, Path(plan.runs_dir) / LOG_DIR,
                         stage1=plan.prerequisites, blocked=blocked, on_done=lambda t, log: _published(plan, t, log))
    if blocked:  # a failed prerequisite: the runs that need it would fail too (on SLURM, afterok cancels them)
        which = ("the runs were" if len(blocked) == len(plan.runs) else "the run that needs it was" if len(blocked) == 1
                 else f"the {len(blocked)} runs that need it were")
        print(f"\nstage 1 failed, so {which} not started; fix it and run this command again "
              "(finished work is skipped)", file=sys.stderr)
    if failed:
        print(f"\n{len(failed)} of {len(tasks)} tasks failed (their run.json says why):", file=sys.stderr)
        for t in failed:
            print(f"  python {t.line}", file=sys.stderr)
    return failed


def _log_name(task: Task) -> str:
    """The task's log file: named after what it trains (not its place in this plan, which changes from one
    sweep to the next), so that every attempt at one task appends to one file."""
    if task.folder and len(task.folder.parents) > 2:
        label = str(task.folder.relative_to(task.folder.parents[2]))
        recipe = next((a.split("=", 1)[1] for a in task.argv if a.startswith("recipe=")), None)
        if recipe and task.folder.parents[2].name == recipe:  # <recipe>/<pair>/<init>/seed<k>: one log per recipe
            label = f"{recipe}/{label}"
    else:  # a prerequisite: its kind and its command line, which stays the same from one sweep to the next
        label = f"{task.kind}-{hashlib.sha1(task.line.encode()).hexdigest()[:8]}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label) + ".log"


class Stopped(BaseException):
    """SIGINT or SIGTERM reached the sweep: its tasks are stopped, the command can be run again to resume."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)


def _child_setup() -> None:
    """In each task's process, before it runs: its own process group (so that the sweep alone decides what
    reaches it), and on Linux a SIGTERM when the sweep dies (even by SIGKILL), so that no task outlives it."""
    os.setpgid(0, 0)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start(task: Task, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *task.argv], cwd=REPO_ROOT, stdout=out,
                            stderr=subprocess.STDOUT if out is not None else None, stdin=subprocess.DEVNULL,
                            preexec_fn=_child_setup)


def stop_tasks(procs: list[subprocess.Popen], grace: float | None = None) -> None:
    """Stop the tasks' process groups as Ctrl-C would: SIGINT (the run saves itself as interrupted and exits),
    then SIGTERM and SIGKILL to those still there after ``grace`` seconds each (default: the module's
    :data:`STOP_GRACE_SECONDS` when called, so that a caller may change it)."""
    grace = STOP_GRACE_SECONDS if grace is None else grace
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
            time.sleep(0.1)
    for p in procs:  # the leader is gone; its group's other members (data loader workers) too
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _publish_made(plan: Plan) -> None:
    """Copy into the committed copy every finished source and the GHN-2 this runs folder holds and it lacks."""
    if plan.committed_dir is None:
        return
    runs = Path(plan.runs_dir)
    for folder in sorted(runs.glob("sources/*/seed*")):
        publish_folder(folder, runs, plan.committed_dir, SOURCE_FILES)
    if (runs / "ghn").is_dir():
        publish_folder(runs / "ghn", runs, plan.committed_dir, GHN_FILES)


def _published(plan: Plan, task: Task, log: Path | None) -> None:
    """A finished run of a grid that keeps its runs in the repository (``grid.resume_committed``): copied there."""
    if plan.committed_dir is None:
        return
    if task.kind == "run" and task.folder is not None:
        publish_run(task.folder, plan.runs_dir, plan.committed_dir, log)
    elif task.kind == "source" and task.folder is not None:  # what the runs transfer from (a few MB)
        publish_folder(task.folder, plan.runs_dir, plan.committed_dir, SOURCE_FILES)
    elif task.kind == "prerequisite" and (plan.runs_dir / "ghn").is_dir():  # the grid's own GHN-2
        publish_folder(plan.runs_dir / "ghn", plan.runs_dir, plan.committed_dir, GHN_FILES)


def _run_stage(tasks: list[tuple[int, Task]], total: int, jobs: int, log_dir: Path, stage1: list[Task] = (),
               blocked: list[Task] | None = None, on_done=None) -> list[Task]:
    """Run ``tasks`` in their order, at most ``jobs`` at once, each once what it needs is done; one at a time
    they print to this terminal, else to log files.

    A run waits for the tasks of ``stage1`` its ``needs`` names (all of them when ``needs`` is None), so that a
    run needing nothing still to be made (a random init) starts while a source trains; one whose prerequisite
    failed is not started: it goes to ``blocked`` (not to the failed tasks returned). ``on_done(task, log)`` is called for
    each task that exits 0. SIGINT (Ctrl-C) or SIGTERM to the sweep stops the tasks it started
    (:func:`stop_tasks`), says which, and raises :class:`Stopped`; running the same command again resumes them.
    """
    failed: list[Task] = []
    done: set[int] = set()  # ids of the tasks that exited 0
    stage1_ids = {id(t) for t in stage1}
    to_log = jobs > 1
    if to_log:
        log_dir.mkdir(parents=True, exist_ok=True)
    waiting, running = list(tasks), []

    def needs(task: Task) -> list[Task]:
        if id(task) in stage1_ids:  # stage 1 itself waits for nothing
            return []
        return [t for t in (stage1 if task.needs is None else task.needs) if id(t) in stage1_ids]

    def next_ready() -> tuple[int, Task] | None:
        for entry in list(waiting):
            wanted = needs(entry[1])
            if any(t in failed for t in wanted):  # its prerequisite failed: it would fail too
                waiting.remove(entry)
                if blocked is not None:
                    blocked.append(entry[1])
                continue
            if all(id(t) in done for t in wanted):
                waiting.remove(entry)
                return entry
        return None

    seen: dict[int, int] = {}  # how much of each task's log was already looked through for progress lines
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                ready = next_ready()
                if ready is None:
                    break
                i, task = ready
                handle, log = None, None
                if to_log:
                    log = log_dir / _log_name(task)
                    print(f"[{i}/{total}] python {task.line}   (output: {log})", flush=True)
                    handle = log.open("a")  # never truncated: an earlier attempt's process may still write to it
                    handle.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')}: [{i}/{total}] python {task.line} "
                                 f"(sweep process {os.getpid()}) =====\n")
                    handle.flush()
                    seen[i] = log.stat().st_size
                else:
                    print(f"\n[{i}/{total}] python {task.line}", flush=True)
                running.append((i, task, _start(task, handle), handle, log, time.monotonic()))
            if not running and waiting:  # nothing can start: what they wait for will never be done
                if blocked is not None:
                    blocked += [t for _, t in waiting]
                waiting.clear()
                break
            time.sleep(0.5 if to_log else 0.2)
            for entry in list(running):
                i, task, proc, handle, log, t0 = entry
                if log:
                    _echo_progress(i, log, seen)
                rc = proc.poll()
                if rc is None:
                    continue
                running.remove(entry)
                if handle:
                    handle.close()
                    _echo_progress(i, log, seen)
                print(f"[{i}/{total}] exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
                if rc == 0:
                    done.add(id(task))
                    if on_done is not None:
                        on_done(task, log)
                else:
                    failed.append(task)
                    if log:
                        with log.open("rb") as f:  # this attempt's last lines
                            f.seek(max(seen.get(i, 0) - 4096, 0))
                            tail = f.read().decode(errors="replace").strip().splitlines()[-3:]
                        print("\n".join("    " + line for line in tail), file=sys.stderr)
    except Stopped as stop:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stop_tasks([proc for _, _, proc, _, _, _ in running])
        names = ", ".join(f"[{i}/{total}] {_label(task)}" for i, task, *_ in running)
        print(f"\n{stop}: stopped {len(running)} task{'s' * (len(running) != 1)}"
              f"{' (' + names + ')' if names else ''}; run the same command again to resume (finished runs are "
              "skipped, started ones resume)", file=sys.stderr, flush=True)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for _, _, _, handle, _, _ in running:
            if handle:
                handle.close()
    return failed


def _label(task: Task) -> str:
    """pair/init/seedK for a run (as its folder says), the log name's stem for a prerequisite."""
    if task.folder and len(task.folder.parents) > 2:
        return str(task.folder.relative_to(task.folder.parents[2]))
    return _log_name(task)[:-len(".log")]


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

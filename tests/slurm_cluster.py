"""A real one-node SLURM cluster for the tests: started by slurm/local-cluster/up.sh, stopped by down.sh.

``slurm_cluster`` (session-scoped) installs what is missing (Debian packages, as root), starts munge, MariaDB,
slurmdbd, slurmctld and slurmd, and stops them after the session (only if it started them). It skips, with
the reason, where SLURM cannot be installed or run here: not root, apt failed, or the machine has a SLURM
configuration of its own. Any other failure to start fails the tests. Concurrent test sessions on one
machine take turns through a lock file, since one would otherwise stop the cluster under the other.

    pytest -m slurm tests/test_slurm.py
"""

from __future__ import annotations

import fcntl
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UP = REPO / "slurm" / "local-cluster" / "up.sh"
DOWN = REPO / "slurm" / "local-cluster" / "down.sh"
LOCK = Path("/tmp/dpiat-bench-slurm-tests.lock")
LOCK_WAIT_S = 20 * 60
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
            "DEADLINE", "PREEMPTED"}
SKIP_CODES = {3: "SLURM cannot be installed or run here", 4: "this machine has a SLURM configuration of its own"}


def _controller_running() -> bool:
    pid = Path("/run/slurmctld.pid")
    try:
        Path(f"/proc/{int(pid.read_text())}").stat()
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """Yields once the node is idle; the daemons are stopped afterwards if this session started them."""
    LOCK.touch(exist_ok=True)
    with LOCK.open("w") as lock:
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - t0 > LOCK_WAIT_S:
                    pytest.skip(f"another test session has held the local SLURM cluster ({LOCK}) for "
                                f"{LOCK_WAIT_S // 60} min")
                time.sleep(2)
        started_here = not _controller_running()
        try:
            up = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            subprocess.run(["bash", str(DOWN)], capture_output=True, timeout=120)
            pytest.fail("slurm/local-cluster/up.sh did not finish within 15 min")
        if up.returncode in SKIP_CODES:
            pytest.skip(f"{SKIP_CODES[up.returncode]}: {(up.stderr or up.stdout).strip()}")
        if up.returncode != 0:
            subprocess.run(["bash", str(DOWN)], capture_output=True, timeout=120)
            pytest.fail(f"slurm/local-cluster/up.sh failed (exit {up.returncode}):\n{up.stdout}\n{up.stderr}")
        try:
            yield
        finally:
            if started_here:
                subprocess.run(["bash", str(DOWN)], capture_output=True, timeout=120)


# ---------------------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------------------


def job_tasks(job_id: str) -> dict[str, dict[str, str]]:
    """{"<job>_<task>": fields of `scontrol show job -o`} for every task of an array job (or the job itself).

    scontrol (not sacct) so that it works with accounting off too; SLURM keeps ended jobs for MinJobAge=300 s.
    """
    out = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"scontrol show job {job_id} failed: {out.stderr.strip()}")
    tasks = {}
    for line in out.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields:
            key = f"{fields.get('ArrayJobId', job_id)}_{fields['ArrayTaskId']}" if "ArrayTaskId" in fields else job_id
            tasks[key] = fields
    return tasks


def wait_for_jobs(*job_ids: str, timeout: float = 300, logs: Path | None = None) -> dict[str, str]:
    """Wait until every task of these jobs has ended; return {task: state}. Fails with the logs on a timeout."""
    t0 = time.monotonic()
    while True:
        states = {k: v["JobState"] for j in job_ids for k, v in job_tasks(j).items()}
        if states and all(s in TERMINAL for s in states.values()):
            return states
        if time.monotonic() - t0 > timeout:
            tails = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.out"))) if logs else ""
            subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60)
            raise AssertionError(f"jobs {job_ids} not done after {timeout:.0f} s: {states}{tails}")
        time.sleep(1)


def submitted_jobs(stdout: str) -> dict[str, str]:
    """{"prereq" | "runs": job id} from bench/sweep.py --submit's output."""
    jobs = {}
    for stage, job in re.findall(r"submitted stage \d \((\w+)\): job (\d+)", stdout):
        jobs["prereq" if stage == "prerequisites" else "runs"] = job
    return jobs

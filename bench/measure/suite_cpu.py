"""Where the test suite's CPU goes: a pytest plugin that records, for every test, the CPU seconds of the worker
process running it and of the commands it started and waited for, then sums them by file.

    .venv/bin/python -m pytest -p bench.measure.suite_cpu                 # one line per test, then the summary
    .venv/bin/python bench/measure/suite_cpu.py results/first_contact/suite_cpu.json   # the summary again

Per test: ``self`` = the worker's user + system CPU over the test (setup, call, teardown), ``children`` = the CPU of
the child processes the worker reaped meanwhile (``RUSAGE_CHILDREN``: the commands a test ran to the end; a SLURM
job's CPU is the cluster daemon's, not counted), ``wall``. The lines go to ``$SUITE_CPU_LOG``
(default ``results/runs/suite_cpu.jsonl``, not committed), one per test, appended by every xdist worker; the summary
(the files by CPU, the 25 tests with the most) to ``$SUITE_CPU_OUT`` (default ``results/runs/suite_cpu.json``) when
the session ends. Another load on the machine inflates every number: record it beside them.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOG = Path(os.environ.get("SUITE_CPU_LOG", REPO / "results" / "runs" / "suite_cpu.jsonl"))
OUT = Path(os.environ.get("SUITE_CPU_OUT", REPO / "results" / "runs" / "suite_cpu.json"))


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or -n 0): start a fresh log
        LOG.parent.mkdir(parents=True, exist_ok=True)
        LOG.write_text("")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    self0, child0, t0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.time()
    yield
    line = {"test": item.nodeid, "wall": round(time.time() - t0, 3),
            "self": round(_cpu(resource.RUSAGE_SELF) - self0, 3),
            "children": round(_cpu(resource.RUSAGE_CHILDREN) - child0, 3)}
    with open(LOG, "a") as f:
        f.write(json.dumps(line) + "\n")


def summary(lines: list[dict]) -> dict:
    files: dict[str, dict] = defaultdict(lambda: {"self": 0.0, "children": 0.0, "wall": 0.0, "tests": 0})
    for t in lines:
        f = files[t["test"].split("::")[0]]
        f["tests"] += 1
        for k in ("self", "children", "wall"):
            f[k] = round(f[k] + t[k], 3)
    by_cpu = sorted(files.items(), key=lambda kv: -(kv[1]["self"] + kv[1]["children"]))
    return {"tests": len(lines), "self": round(sum(t["self"] for t in lines), 1),
            "children": round(sum(t["children"] for t in lines), 1),
            "files": dict(by_cpu),
            "tests_by_cpu": sorted(lines, key=lambda t: -(t["self"] + t["children"]))[:25]}


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput") or not LOG.exists():
        return
    lines = [json.loads(x) for x in LOG.read_text().splitlines() if x.strip()]
    OUT.write_text(json.dumps(summary(lines), indent=1) + "\n")


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else OUT)
    data = json.loads(path.read_text())
    print(f"{data['tests']} tests: {data['self']:.0f} s CPU in the workers, {data['children']:.0f} s in the "
          "commands they ran")
    for name, f in data["files"].items():
        print(f"{f['self']:7.1f} {f['children']:7.1f} {f['wall']:7.1f}  {name}")

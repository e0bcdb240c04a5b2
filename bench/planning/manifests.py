"""The sweep's manifests: the task lines a job array reads, and a record of each submission.

``<paths.runs>/<experiment>/manifests/<stamp>-prereq.txt`` and ``<stamp>-runs.txt`` hold one task per line
(the words after ``python``, shell-quoted: ``slurm/array.sbatch`` runs line ``$SLURM_ARRAY_TASK_ID``);
``<stamp>.json`` records the command, the plan, and the job ids once submitted.

    from bench.planning.manifests import read_manifest
    read_manifest("results/proxy/runs/manifests/20261126T011745Z-runs.txt")[0][:2]
    # ['bench/run.py', 'experiment=proxy']
"""

from __future__ import annotations

import itertools
import json
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.files import atomic_write_json, atomic_write_text
from bench.layout import MANIFESTS
from bench.planning.plan import Plan
from bench.running.provenance import git_state


def write_manifests(plan: Plan, *, mode: str, command: list[str]) -> dict[str, Any]:
    """Write ``<stamp>-prereq.txt`` / ``<stamp>-runs.txt`` (one task per line) and ``<stamp>.json`` (the record).

    A new stamp every time: queued array tasks read their manifest when they start, so an earlier one must
    never change under them. Returns the record (``record["path"]`` is where it is).
    """
    folder = plan.runs_dir.resolve() / MANIFESTS  # absolute: jobs may start in another directory
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for i in itertools.count():
        name = stamp if i == 0 else f"{stamp}-{i}"
        if not any(folder.glob(f"{name}[.-]*")):
            break
    commit, dirty = git_state()
    record: dict[str, Any] = {
        "experiment": plan.experiment, "created": name, "mode": mode, "command": command,
        "overrides": plan.overrides, "git_commit": commit, "git_dirty": dirty, "axes": plan.axes,
        "n_points": plan.n_points, "finished_before": [str(t.folder) for t in plan.finished],
        "failed_before": [str(t.folder) for t in plan.failed], "shared": [str(t.folder) for t in plan.shared],
        "stages": []}
    for stage, tasks in (("prereq", plan.prerequisites), ("runs", plan.runs)):
        if not tasks:
            continue
        path = folder / f"{name}-{stage}.txt"
        atomic_write_text(path, "".join(t.line + "\n" for t in tasks))
        record["stages"].append({"stage": stage, "manifest": str(path), "n_tasks": len(tasks), "job_id": None,
                                 "tasks": [{"line": t.line, "folder": str(t.folder) if t.folder else None}
                                           for t in tasks]})
    record["path"] = str(folder / f"{name}.json")
    save_record(record)
    return record


def save_record(record: dict[str, Any]) -> None:
    atomic_write_json(record["path"], record)


def read_manifest(path: str | Path) -> list[list[str]]:
    """The tasks of a manifest, each as the argv that follows ``python``."""
    return [shlex.split(line) for line in Path(path).read_text().splitlines() if line.strip()]


def submitted_job_ids(runs_dir: Path) -> dict[str, str]:
    """Job ids recorded by earlier submissions of this experiment: {job id: record path}."""
    ids = {}
    for path in sorted((runs_dir / MANIFESTS).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for stage in record.get("stages") or []:
            if stage.get("job_id"):
                ids[str(stage["job_id"])] = str(path)
    return ids

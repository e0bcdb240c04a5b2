"""A grid whose finished runs are kept in the repository, so that a sweep stopped on one machine resumes on another.

An experiment with ``grid.resume_committed: true`` (conf/experiment/horizon.yaml: 15 runs of 50 epochs, hours on
two cores) treats its committed copy ``results/<experiment>/runs`` as the durable store of its finished runs:

* planning: a run whose folder under ``<paths.runs>/<experiment>`` holds no run.json, while the committed copy of
  the same folder holds a *finished* one, counts as finished, and ``--local`` or ``--submit`` takes that record
  (run.json and run.log, copied) before it starts anything; so a sweep in a fresh clone plans only what is
  missing, and a plan alone (no ``--local``, no ``--submit``) writes nothing. An unfinished committed record is
  never taken (its checkpoint is not committed: the run starts again);
* ``--local``: each run that finishes is copied into the committed copy at once (run.json, run.log and its log
  from ``local_logs/``), ready to be committed while the rest of the grid trains;
* what the runs are made from travels the same way: a trained source (``sources/<model>/seed<k>/``: its weights,
  a few MB) and the grid's GHN-2 (``ghn/``) are copied into the committed copy when they finish and taken from it
  before the plan would train them again. So a grid resumed on another machine (another CPU kind trains another
  source) transfers from the very networks its first runs did.

Nothing is ever overwritten in the runs folder; the copies are atomic.

    >>> from pathlib import Path
    >>> str(committed_runs_dir("horizon"))[-len("results/horizon/runs"):]
    'results/horizon/runs'
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.files import atomic_write_text
from dpiat.atomic import atomic_open

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout (as bench/planning/slurm.py; not imported: a circle)
RECORD, RUN_LOG, LOG_DIR = "run.json", "run.log", "local_logs"
# a folder the runs are made from: its files (all copied) and the record that says it is finished
SOURCE_FILES = ("weights.safetensors", "weights.json", RECORD, RUN_LOG)
GHN_FILES = ("ghn.pt", "train_log.json")


def committed_runs_dir(experiment: str) -> Path:
    """``results/<experiment>/runs`` of this checkout: where the experiment's finished runs are committed."""
    return REPO_ROOT / "results" / experiment / "runs"


def _finished(record: Path) -> bool:
    try:
        return json.loads(Path(record).read_text()).get("status") == "finished"
    except (OSError, ValueError):
        return False


def committed_copy(folder: Path, runs_dir: Path, committed: Path) -> Path | None:
    """The committed folder whose finished run :func:`adopt_run` would copy into ``folder`` (which has no
    run.json), or None; reads only, so that a plan can count the run as finished without writing anything."""
    folder, runs_dir, committed = Path(folder), Path(runs_dir), Path(committed)
    if (folder / RECORD).exists() or committed.resolve() == runs_dir.resolve():
        return None
    kept = committed / folder.relative_to(runs_dir)
    return kept if _finished(kept / RECORD) else None


def adopt_run(folder: Path, runs_dir: Path, committed: Path) -> bool:
    """Copy the committed finished run of ``folder`` into it when ``folder`` has no run.json; True when copied."""
    kept = committed_copy(folder, runs_dir, committed)
    if kept is None:
        return False
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (kept / RUN_LOG).exists():
        atomic_write_text(folder / RUN_LOG, (kept / RUN_LOG).read_text())
    atomic_write_text(folder / RECORD, (kept / RECORD).read_text())  # last: the record says the run is there
    return True


def publish_run(folder: Path, runs_dir: Path, committed: Path, log: Path | None = None) -> bool:
    """Copy a finished run (run.json, run.log, and its sweep log ``log``) into the committed copy; True when copied."""
    folder, runs_dir, committed = Path(folder), Path(runs_dir), Path(committed)
    if committed.resolve() == runs_dir.resolve() or not _finished(folder / RECORD):
        return False
    kept = committed / folder.relative_to(runs_dir)
    kept.mkdir(parents=True, exist_ok=True)
    if (folder / RUN_LOG).exists():
        atomic_write_text(kept / RUN_LOG, (folder / RUN_LOG).read_text())
    atomic_write_text(kept / RECORD, (folder / RECORD).read_text())
    if log is not None and Path(log).exists():
        (committed / LOG_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_text(committed / LOG_DIR / Path(log).name, Path(log).read_text(errors="replace"))
    return True


def _complete(folder: Path, files: tuple[str, ...]) -> bool:
    """Every file there and the record (run.json, or a GHN's train_log.json) says finished."""
    record = folder / (RECORD if RECORD in files else files[-1])
    return all((folder / f).exists() for f in files if f != RUN_LOG) and _finished(record)


def _copy_folder(src: Path, dst: Path, files: tuple[str, ...]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    record = RECORD if RECORD in files else files[-1]
    for name in [f for f in files if f != record] + [record]:  # the record last: it says the folder is whole
        if (src / name).exists():
            with atomic_open(dst / name, "wb") as f:
                f.write((src / name).read_bytes())


def committed_folder(folder: Path, runs_dir: Path, committed: Path, files: tuple[str, ...]) -> Path | None:
    """The committed finished source or GHN (``files``) that :func:`adopt_folder` would copy into ``folder``, or
    None; reads only (a plan counts it without writing anything)."""
    folder, runs_dir, committed = Path(folder), Path(runs_dir), Path(committed)
    if committed.resolve() == runs_dir.resolve() or _complete(folder, files):
        return None
    kept = committed / folder.relative_to(runs_dir)
    if not _complete(kept, files) or any((folder / f).exists() for f in files):  # never over a started one
        return None
    return kept


def adopt_folder(folder: Path, runs_dir: Path, committed: Path, files: tuple[str, ...]) -> bool:
    """Copy a committed finished source or GHN (``files``) into ``folder`` when ``folder`` has no finished one."""
    kept = committed_folder(folder, runs_dir, committed, files)
    if kept is None:
        return False
    _copy_folder(kept, Path(folder), files)
    return True


def publish_folder(folder: Path, runs_dir: Path, committed: Path, files: tuple[str, ...]) -> bool:
    """Copy a finished source or GHN into the committed copy (once: a committed one is never replaced)."""
    folder, runs_dir, committed = Path(folder), Path(runs_dir), Path(committed)
    if committed.resolve() == runs_dir.resolve() or not _complete(folder, files):
        return False
    kept = committed / folder.relative_to(runs_dir)
    if _complete(kept, files):
        return False
    _copy_folder(folder, kept, files)
    return True

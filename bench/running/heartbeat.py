"""The heartbeat: while this process trains a run, its run.json's ``updated`` is rewritten at least every
:data:`~bench.running.record.HEARTBEAT_SECONDS`, so that a reader on another host can tell a live run from one
killed outright (:func:`bench.running.record.liveness`; on the owner's host its pid tells).

Every epoch writes run.json anyway, but an epoch can last hours (ImageNet), and a target waits while its
source trains (in the same process, through the same harness). So the harness holds each run it trains
(:func:`hold` ... :func:`release`), and the epoch recorder calls :func:`beat` at every batch end, training and
validation, as does a target waiting for another process to train its source (bench/running/sources.py): at
most once a period, it rewrites the record of every run held, the waiting target's too. Only the writing
process (rank 0) holds runs; a beat between periods costs one clock read. The gaps left (start-up, an init's
transfer, a checkpoint save) last minutes at most, well inside ``STALE_AFTER_SECONDS``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.running.record import HEARTBEAT_SECONDS

if TYPE_CHECKING:
    from bench.running.folder import RunFolder

_held: dict[Path, tuple[RunFolder, dict]] = {}  # record path -> the folder and the record it writes
_last = 0.0  # time.monotonic() of the last beat


def hold(folder: RunFolder, run: dict, *, write: bool = True) -> None:
    """Keep ``run`` (the dict the harness updates and writes) beating into ``folder`` until :func:`release`."""
    global _last
    if write:
        _held[folder.record_path] = (folder, run)
        _last = time.monotonic()  # the harness has just written it


def release(folder: RunFolder) -> None:
    _held.pop(folder.record_path, None)


def beat(now: float | None = None) -> bool:
    """Rewrite every held record if a period has passed since the last beat; whether it did.

    A failed write (a shared file system's hiccup) is reported and retried a period later, not raised: a
    run is not stopped for its heartbeat.
    """
    global _last
    now = time.monotonic() if now is None else now
    if not _held or now - _last < HEARTBEAT_SECONDS:
        return False
    _last = now
    for folder, run in list(_held.values()):
        try:
            folder.write(run)
        except OSError as e:
            print(f"warning: heartbeat not written to {folder.record_path}: {e}", file=sys.stderr, flush=True)
    return True

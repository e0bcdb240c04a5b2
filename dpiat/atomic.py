"""Atomic file writes: readers see the old file or the new one, never a half-written mix.

    >>> from dpiat.atomic import atomic_open
    >>> with atomic_open("/tmp/example.txt", "w") as f:
    ...     _ = f.write("complete or absent")

A temporary file in the same folder is written, flushed to disk, then renamed over the target (rename is
atomic within a file system). On any error, including KeyboardInterrupt, the temporary file is removed
and the old file is left as it was. Used for run files, tables, plots, weights and checkpoints.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file to write ``path`` atomically (``mode`` "w" or "wb")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary shared files
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Atomic text and JSON writes for run files, manifests, tables and logs (:mod:`dpiat.atomic` underneath).

A reader (a resuming run, a sweep, the aggregation) sees the old file or the new one, never half of one::

    from bench.files import atomic_write_json
    atomic_write_json("/tmp/example.json", {"status": "running"})
"""

from __future__ import annotations

import json
import os
from typing import Any

from dpiat.atomic import atomic_open


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the new file, never a mix."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON, keys in their order (run.json's order is its schema's)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

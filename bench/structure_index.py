"""Make the indexes of shape structures that dpiat ships: every pretrained timm architecture, built on the meta
device and standardized as each kind of structure does (``dpiat/shapes.py``), for the installed timm.

    .venv/bin/python bench/structure_index.py                  # both: dpiat/data/structures_{dpiat,dpiat_struct}.json.gz
    .venv/bin/python bench/structure_index.py --method dpiat_struct         # one of them

``dpiat.recommend`` reads them instead of building a structure it has not cached yet, but only when the
installed timm, the structure format and the standardization code are exactly the ones an index was made with
(its ``version`` field); tests/test_dpiat_recommend.py checks that the committed files are current and that
their entries equal fresh builds. Run this again after changing dpiat/structure.py, dpiat/layers.py or
dpiat/struct.py (the ``dpiat_struct`` index), or after moving the timm pin: 43 s per index on 2 idle cores,
about 2.5 min with both busy. The output is byte-identical for the same inputs (sorted keys, gzip without a
timestamp).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ["DPIAT_SHIPPED_INDEX"] = "0"  # build every entry, never read the index being replaced

from dpiat.recommender import SHIPPED_INDEXES, pretrained_tags, structure_version  # noqa: E402
from dpiat.shapes import build_entry  # noqa: E402


def _entry(arch: str, method: str) -> tuple[str, dict]:
    return arch, build_entry(arch, method)


def write_index(method: str, out: Path, workers: int) -> str:
    """Build ``method``'s index into ``out`` (atomically); one line saying what was written."""
    t0 = time.perf_counter()
    version, kind = structure_version(method)
    archs = sorted(pretrained_tags())
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        entries = dict(pool.imap_unordered(partial(_entry, method=method), archs, chunksize=4))
    data = {"version": version, "kind": kind, "entries": {a: entries[a] for a in archs}}
    text = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(text)
    tmp.replace(out)
    skipped = sum("skipped" in e for e in entries.values())
    return (f"{out}: {len(archs)} architectures ({skipped} skipped), {version}/{kind}, "
            f"{len(text) / 2**20:.1f} MiB of JSON, {out.stat().st_size / 2**10:.0f} KiB gzipped, "
            f"{time.perf_counter() - t0:.0f} s with {workers} processes")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=sorted(SHIPPED_INDEXES), nargs="+", default=sorted(SHIPPED_INDEXES),
                   help="which indexes (default: all)")
    p.add_argument("--out", help="where to write it (one --method only; default dpiat/data/structures_<kind>.json.gz)")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="build processes")
    args = p.parse_args()
    if args.out and len(args.method) != 1:
        p.error("--out needs exactly one --method")
    for method in args.method:
        print(write_index(method, Path(args.out) if args.out else SHIPPED_INDEXES[method], args.workers), flush=True)


if __name__ == "__main__":
    main()

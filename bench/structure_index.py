"""Make the index of shape structures that dpiat ships: every pretrained timm architecture, built on the meta
device and standardized as faithful DPIAT does (``dpiat/shapes.py``), for the installed timm.

    .venv/bin/python bench/structure_index.py                  # writes dpiat/data/structures_dpiat.json.gz

``dpiat.recommend`` reads it instead of building a structure it has not cached yet, but only when the
installed timm, the structure format and the standardization code are exactly the ones it was made with
(its ``version`` field); tests/test_dpiat_recommend.py checks that the committed file is current and that
its entries equal fresh builds. Run this again after changing dpiat/structure.py or dpiat/layers.py, or
after moving the timm pin. The output is byte-identical for the same inputs (sorted keys, gzip without a
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ["DPIAT_SHIPPED_INDEX"] = "0"  # build every entry, never read the index being replaced

from dpiat.recommender import SHIPPED_INDEX, pretrained_tags  # noqa: E402
from dpiat.shapes import build_entry, structure_version  # noqa: E402


def _entry(arch: str) -> tuple[str, dict]:
    entry = build_entry(arch, "dpiat")
    entry.pop("format", None)
    return arch, entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(SHIPPED_INDEX), help=f"where to write it (default {SHIPPED_INDEX})")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="build processes")
    args = p.parse_args()
    t0 = time.perf_counter()
    version, kind = structure_version("dpiat")
    archs = sorted(pretrained_tags())
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        entries = dict(pool.imap_unordered(_entry, archs, chunksize=4))
    data = {"version": version, "kind": kind, "entries": {a: entries[a] for a in archs}}
    text = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(text)
    tmp.replace(out)
    skipped = sum("skipped" in e for e in entries.values())
    print(f"{out}: {len(archs)} architectures ({skipped} skipped), {version}/{kind}, "
          f"{len(text) / 2**20:.1f} MiB of JSON, {out.stat().st_size / 2**10:.0f} KiB gzipped, "
          f"{time.perf_counter() - t0:.0f} s with {args.workers} processes")


if __name__ == "__main__":
    main()

"""Time ``dpiat.recommend`` over every pretrained timm architecture: cold cache, warm, peak memory, side by side.

    .venv/bin/python bench/measure/recommend_speed.py                       # idle, then both cores kept busy
    .venv/bin/python bench/measure/recommend_speed.py --busy 0 --out results/speed/recommend.json

Per condition (``--busy N``: N extra processes spinning one core each), in a fresh process and a fresh cache
folder: ``import dpiat`` (timed on its own), then ``recommend(target)`` three times: **cold** (nothing cached:
every candidate built on the meta device and standardized, using the usable CPUs), **warm, same target** (the
command run again), **warm, new target** (structures cached, a target not asked before: every pair scored
again). Meanwhile this script samples the process tree (the driver and its worker processes) every 50 ms and
keeps the peak of the summed RSS (shared pages count once per process, an upper bound) and of the summed PSS
(shared pages split between the processes: the memory actually used). It prints one table row per condition
with the CPU model and the 1-minute load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.measure.speed import Busy  # noqa: E402

DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
import dpiat
t_import = time.perf_counter() - t0
out = {"import_s": t_import}
for label, target in (("cold", sys.argv[1]), ("warm_same", sys.argv[1]), ("warm_new", sys.argv[2])):
    t = time.perf_counter()
    r = dpiat.recommend(target, workers=int(sys.argv[3]) if sys.argv[3] != "auto" else None)
    out[label] = {"s": time.perf_counter() - t, "ranked": r.n_ranked, "skipped": len(r.skipped), "built": r.built,
                  "top3": [[c.name, round(c.score, 4)] for c in r.candidates[:3]]}
print(json.dumps(out))
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc/*/stat)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parent.items() if pp in frontier]
        out += frontier
    return out


def _memory(pids: list[int]) -> tuple[int, int]:
    """Summed (RSS, PSS) in KiB."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


def measure(target: str, new_target: str, workers: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="dpiat-cache-") as cache:
        env = {**os.environ, "DPIAT_CACHE_DIR": cache}
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, target, new_target, workers], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = [0, 0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                rss, pss = _memory(_tree(proc.pid))
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = proc.communicate()
        done.set()
        sampler.join()
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"the driver failed (exit {proc.returncode}):\n{err[-3000:]}")
        result = json.loads(out.strip().splitlines()[-1])
        files = sum(1 for _ in Path(cache).rglob("*.json"))
        cache_mb = sum(p.stat().st_size for p in Path(cache).rglob("*.json")) / 2**20
    return {**result, "process_wall_s": wall, "peak_rss_mib": peak[0] / 1024, "peak_pss_mib": peak[1] / 1024,
            "load_before": load_before, "load_after": os.getloadavg()[0], "cache_files": files,
            "cache_mib": cache_mb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="tf_efficientnet_b0")
    p.add_argument("--new-target", default="resnet50", help="the second target (structures cached, pairs not)")
    p.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="extra spinning processes per condition")
    p.add_argument("--workers", default="auto", help="recommend(workers=...) (default: the usable CPUs)")
    p.add_argument("--out", help="also write the raw results as JSON here")
    args = p.parse_args()
    import timm
    import torch

    header = {"cpu": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__, "timm": timm.__version__,
              "python": platform.python_version(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    print(json.dumps(header))
    print("| busy | load before / after | import | cold | warm, same target | warm, new target | ranked / skipped "
          "| peak RSS (sum) | peak PSS (sum) | cache |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in args.busy:
        with Busy(n):
            r = measure(args.target, args.new_target, args.workers)
        r["busy"] = n
        rows.append(r)
        print(f"| {n} | {r['load_before']:.2f} / {r['load_after']:.2f} | {r['import_s']:.1f} s | "
              f"{r['cold']['s']:.1f} s | {r['warm_same']['s']:.2f} s | {r['warm_new']['s']:.2f} s | "
              f"{r['cold']['ranked']} / {r['cold']['skipped']} | {r['peak_rss_mib']:.0f} MiB | "
              f"{r['peak_pss_mib']:.0f} MiB | {r['cache_files']} files, {r['cache_mib']:.1f} MiB |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({**header, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Time ``dpiat recommend`` over every pretrained timm architecture, as a user runs it: cold, warm, from
nothing, peak memory, idle and with both cores busy, side by side in one run.

    .venv/bin/python bench/measure/recommend_speed.py                       # idle, then both cores kept busy
    .venv/bin/python bench/measure/recommend_speed.py --busy 0 --out results/speed/recommend.json
    .venv/bin/python bench/measure/recommend_speed.py --target vit_tiny_patch16_224 --new-target convnext_atto

Per condition (``--busy N``: N extra processes spinning one core each), each a fresh ``dpiat recommend TARGET
--json`` process timed from start to exit (interpreter, imports and all), in a fresh cache folder:
**cold** (an empty cache: the structures come from the index shipped with dpiat, then every pair is scored
with the usable CPUs), **warm, same target** (the same command again: the cached results, no torch),
**warm, new target** (another target: structures cached, every pair scored again), and **from nothing** (an
empty cache with the shipped index switched off, ``DPIAT_SHIPPED_INDEX=0``: every architecture built on the
meta device, what a timm version without a shipped index costs). Meanwhile the process tree (the command and
its worker processes) is sampled every 50 ms for the peak of the summed RSS (shared pages counted once per
process: an upper bound) and of the summed PSS (shared pages split between processes). The rankings of cold,
warm and from nothing must be identical (checked). One table row per condition, with the CPU model, the
1-minute load before and after, and the matching measured (``--method auto``, the default: ``dpiat_struct`` for
a ViT target, the faithful ``dpiat`` for a CNN without LayerNorm).
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
from bench.running.host import cpu_model  # noqa: E402

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


def _command() -> list[str]:
    script = Path(sys.executable).with_name("dpiat")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dpiat"]


def timed(argv: list[str], env: dict) -> dict:
    """Run ``dpiat <argv>``; wall seconds from start to exit, peak summed RSS / PSS of its process tree, the
    JSON it printed and the first line of its standard error."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([*_command(), *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"dpiat {' '.join(argv)} failed (exit {proc.returncode}):\n{err[-3000:]}")
    ranking = json.loads(out)
    return {"s": wall, "peak_rss_mib": peak[0] / 1024, "peak_pss_mib": peak[1] / 1024, "ranked": len(ranking),
            "methods": sorted({c["method"] for c in ranking}),
            "top3": [[c["name"], round(c["score"], 4)] for c in ranking[:3]],
            "ranking": [[c["name"], c["score"], c["overwritten"]] for c in ranking]}


def measure(target: str, new_target: str, from_nothing: bool) -> dict:
    out = {"load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="dpiat-cache-") as cache:
        env = {**os.environ, "DPIAT_CACHE_DIR": cache, "DPIAT_SHIPPED_INDEX": "1"}
        out["cold"] = timed(["recommend", target, "--json"], env)
        out["warm_same"] = timed(["recommend", target, "--json"], env)
        out["warm_new"] = timed(["recommend", new_target, "--json"], env)
        out["cache_files"] = sum(1 for _ in Path(cache).rglob("*.json"))
        out["cache_mib"] = sum(p.stat().st_size for p in Path(cache).rglob("*.json")) / 2**20
    if from_nothing:
        with tempfile.TemporaryDirectory(prefix="dpiat-cache-") as cache:
            env = {**os.environ, "DPIAT_CACHE_DIR": cache, "DPIAT_SHIPPED_INDEX": "0"}
            out["from_nothing"] = timed(["recommend", target, "--json"], env)
    out["load_after"] = os.getloadavg()[0]
    same = [out[k]["ranking"] for k in ("cold", "warm_same", "from_nothing") if k in out]
    if any(r != same[0] for r in same):
        raise SystemExit("the rankings differ between cold, warm and from nothing: a cache bug")
    for k in ("cold", "warm_same", "warm_new", "from_nothing"):
        if k in out:
            del out[k]["ranking"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="tf_efficientnet_b0")
    p.add_argument("--new-target", default="resnet50", help="the second target (structures cached, pairs not)")
    p.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="extra spinning processes per condition")
    p.add_argument("--skip-from-nothing", action="store_true", help="skip the slow build with no shipped index")
    p.add_argument("--out", help="also write the raw results as JSON here")
    args = p.parse_args()
    import timm
    import torch

    header = {"cpu": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__, "timm": timm.__version__,
              "python": platform.python_version(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "target": args.target, "new_target": args.new_target}
    print(json.dumps(header))
    print("| busy | load before / after | method | cold | warm, same target | warm, new target | from nothing | ranked "
          "| peak RSS / PSS (sum): cold | from nothing | cache |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in args.busy:
        with Busy(n):
            r = measure(args.target, args.new_target, not args.skip_from_nothing)
        r["busy"] = n
        rows.append(r)
        fn = r.get("from_nothing")
        fn_s = f"{fn['s']:.0f} s" if fn else "-"
        fn_mem = f"{fn['peak_rss_mib']:.0f} / {fn['peak_pss_mib']:.0f} MiB" if fn else "-"
        print(f"| {n} | {r['load_before']:.2f} / {r['load_after']:.2f} | {', '.join(r['cold']['methods'])} | "
              f"{r['cold']['s']:.1f} s | "
              f"{r['warm_same']['s']:.2f} s | {r['warm_new']['s']:.1f} s | "
              f"{fn_s} | {r['cold']['ranked']} | "
              f"{r['cold']['peak_rss_mib']:.0f} / {r['cold']['peak_pss_mib']:.0f} MiB | "
              f"{fn_mem} | "
              f"{r['cache_files']} files, {r['cache_mib']:.1f} MiB |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({**header, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

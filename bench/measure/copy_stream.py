"""How the C copy of a transfer writes its bytes: streaming-store settings side by side, on the real copies.

    .venv/bin/python bench/measure/copy_stream.py                 # transfer_speed.py's five pairs (~1 min, 2 cores)
    .venv/bin/python bench/measure/copy_stream.py --pairs 2 --busy 0

A transfer's copies (the centre clips of every matched layer) go to ``dpiat._dpcore.clip_copy`` as one list of
raw-address copies. Large copies can be written with non-temporal (streaming) stores, which skip reading
the target's cache lines before overwriting them. This script records that list for each pair (by running
the faithful transfer once) and times ``clip_copy`` on it under several settings, each a
``(stream_bytes, stream_run, line)`` triple: a copy is streamed when it writes at least ``stream_bytes`` and
each of its contiguous runs has at least ``stream_run`` bytes; the partial ``line``-byte blocks at the two
ends of a run get ordinary stores. Every setting must leave the target tensors bit-identical to the
ordinary-store copy (checked first), so only time differs.

Each figure is the median CPU time of the calling thread over ``--repeats`` calls, the settings
interleaved call by call so that a change of machine load hits them alike, in two cache states: *warm*
(the same copy repeated) and *cold* (64 MB of other memory written before each call, as when a transfer
follows model construction or training). ``--busy`` processes spinning on a core each (started and
stopped by this script, as in bench/measure/transfer_speed.py) run during a second, loaded round. The 1-minute
load average is printed with each round.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import dpiat
import dpiat.clip as clip
from dpiat.matching import match
from dpiat.pipeline import copy_matched

from bench.measure.speed import PAIRS, Busy
from bench.running.host import load

NEVER = 1 << 62
SETTINGS = {  # name -> (stream_bytes, stream_run, line)
    "ordinary stores": (NEVER, NEVER, 64),
    "stream >= 1 MiB (before)": (1 << 20, 0, 16),
    "stream all, 16 B head": (0, 0, 16),
    "stream >= 64 KiB, runs >= 256 B, whole lines": (1 << 16, 256, 64),
    "stream runs >= 256 B, whole lines (default)": (0, 256, 64),
}
DEFAULT = "stream runs >= 256 B, whole lines (default)"


def recorded_spec(source, target) -> list:
    """The raw-address copy list the faithful transfer of ``source`` into ``target`` hands to C."""
    specs, real = [], clip._clip_copy_c
    clip._clip_copy_c = lambda spec: (specs.append(spec), real(spec))[1]
    try:
        copy_matched(match(source, target))
    finally:
        clip._clip_copy_c = real
    return specs


def check_identical(specs, target) -> None:
    """Every setting writes the target tensors exactly as ordinary stores do (starting each time from a
    target filled with a value no source holds, so that a setting that wrote nothing would show)."""
    params = list(target.parameters())
    reference = None
    for name, args in SETTINGS.items():
        with torch.no_grad():
            for p in params:
                p.fill_(-7.25)
        for spec in specs:
            clip._clip_copy_c(spec, *args)
        now = [p.detach().clone() for p in params]
        if reference is None:
            reference = now
        elif not all(torch.equal(a, b) for a, b in zip(reference, now)):
            raise SystemExit(f"setting {name!r} wrote different values: a bug in clip_copy")


def measure(specs, repeats: int, cold: bool) -> dict[str, float]:
    junk = torch.empty(16_000_000) if cold else None  # 64 MB, twice the L3 of the machine this was tuned on
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(repeats):
        for name, args in SETTINGS.items():
            if junk is not None:
                junk.add_(1.0)
            c0 = time.thread_time()
            for spec in specs:
                clip._clip_copy_c(spec, *args)
            times[name].append(time.thread_time() - c0)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=31, help="calls per median (default 31)")
    ap.add_argument("--pairs", type=int, default=len(PAIRS), help="only the first N pairs (default: all)")
    ap.add_argument("--busy", type=int, default=1, help="spinning processes in the loaded round (0: skip it)")
    args = ap.parse_args(argv)
    if clip._clip_copy_c is None:
        raise SystemExit("dpiat._dpcore has no clip_copy (pure-Python build): nothing to measure")
    torch.set_num_threads(1)
    print(f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}; "
          f"CPU time of the calling thread, medians of {args.repeats}; the C copy is single-threaded")
    prepared = []
    for a, b in PAIRS[: args.pairs]:
        source, target = dpiat.create_model(a), dpiat.create_model(b)
        specs = recorded_spec(source, target)
        check_identical(specs, target)
        prepared.append((f"{a} -> {b}", specs, (source, target)))  # the models own the addresses
    print("all settings write identical tensors (checked on every pair)")
    rounds = [("idle", 0)] + ([("loaded", args.busy)] if args.busy else [])
    for phase, busy in rounds:
        with Busy(busy):
            print(f"\n{phase}: load average {load()}" + (f", {busy} busy process(es)" if busy else ""))
            for label, specs, _models in prepared:
                warm = measure(specs, args.repeats, cold=False)
                cold = measure(specs, args.repeats, cold=True)
                print(f"  {label}")
                for name in SETTINGS:
                    print(f"    {name:58s} warm {warm[name]:6.2f} ms ({warm[name] / warm[DEFAULT]:.2f}x)"
                          f"   cold {cold[name]:6.2f} ms ({cold[name] / cold[DEFAULT]:.2f}x)")
            print(f"  load average after: {load()}")


if __name__ == "__main__":
    main()

"""Estimate the GPU-hours of an experiment's sweep from timm's published throughput (no GPU needed).

    .venv/bin/python slurm/estimate_gpu_hours.py                                  # the two paper experiments
    .venv/bin/python slurm/estimate_gpu_hours.py experiment=paper_imagenet seed=0 # any sweep, as bench/sweep.py
    .venv/bin/python slurm/estimate_gpu_hours.py --measured path/gpu_check.json   # bench/measure/gpu_check.py's

Uses our GPU's measured throughput when ``results/gpu/gpu_check.json`` (bench/measure/gpu_check.py) is committed,
or the file ``--measured`` names; timm's published figures otherwise; it prints which.

Counts exactly what ``bench/sweep.py`` would submit for the same overrides; the throughput tables, their
sources and why the published figures are lower bounds: ``bench/planning/gpu_hours.py``. Exit status: 0, or 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import USER_ERRORS
from bench.planning.gpu_hours import MEASURED, estimate, throughput_table

# Without arguments: the two paper experiments (a data.root and GHN checkpoint are needed to plan, not read).
PAPER = [["experiment=paper_imagenet", "data.root=/data/imagenet", "init.checkpoint=/ckpt/ghn2_imagenet.pt"],
         ["experiment=paper_cifar100_grid"]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="estimate_gpu_hours.py",
        description="Estimate the GPU-hours of an experiment's sweep (what bench/sweep.py would submit for the "
                    "same overrides) from measured or published throughput; no GPU needed.",
        epilog="Example: .venv/bin/python slurm/estimate_gpu_hours.py experiment=paper_imagenet "
               "data.root=/data/imagenet. Exit status: 0, or 2 for bad input.")
    p.add_argument("--measured", metavar="JSON", type=Path,
                   help="a bench/measure/gpu_check.py result to use instead of results/gpu/gpu_check.json")
    p.add_argument("overrides", nargs="*",
                   help="the sweep's Hydra overrides, as bench/sweep.py takes them (default: the two paper "
                        "experiments)")
    return p


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed
        return int(e.code or 0)
    measured, argv = (args.measured or MEASURED), args.overrides
    if args.measured is not None and not measured.exists():
        print(f"error: --measured {measured}: no such file", file=sys.stderr)
        return 2
    try:
        _, origin = throughput_table(measured)
        if origin.startswith("published"):
            print(f"Estimated RTX 3090 GPU-hours from timm's {origin};\n"
                  "lower bounds: batch 128 and JPEG decoding make real runs slower.\n")
        else:
            print(f"Estimated GPU-hours from the throughput {origin}.\n")
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        for overrides in ([argv] if argv else PAPER):
            print(estimate(overrides, measured) + "\n")
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

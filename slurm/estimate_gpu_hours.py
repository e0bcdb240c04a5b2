"""Estimate the GPU-hours of an experiment's sweep from timm's published throughput (no GPU needed).

    python slurm/estimate_gpu_hours.py                                  # the two paper experiments
    python slurm/estimate_gpu_hours.py experiment=paper_imagenet seed=0 # any sweep, as bench/sweep.py takes it
    python slurm/estimate_gpu_hours.py --measured path/gpu_check.json   # bench/measure/gpu_check.py's figures

Uses our GPU's measured throughput when ``results/gpu/gpu_check.json`` (bench/measure/gpu_check.py) is committed, or
the file ``--measured`` names; timm's published figures otherwise; it prints which.

Counts exactly what ``bench/sweep.py`` would submit for the same overrides; the throughput tables, their
sources and why the published figures are lower bounds: ``bench/planning/gpu_hours.py``. Exit status: 0, or 2 for bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.errors import USER_ERRORS
from bench.planning.gpu_hours import MEASURED, estimate, throughput_table

# Without arguments: the two paper experiments (a data.root and GHN checkpoint are needed to plan, not read).
PAPER = [["experiment=paper_imagenet", "data.root=/data/imagenet", "init.checkpoint=/ckpt/ghn2_imagenet.pt"],
         ["experiment=paper_cifar100_grid"]]


def main(argv: list[str]) -> int:
    measured = MEASURED
    if argv[:1] == ["--measured"]:
        if len(argv) < 2:
            print("error: --measured needs the path of a bench/measure/gpu_check.py JSON", file=sys.stderr)
            return 2
        measured, argv = Path(argv[1]), argv[2:]
        if not measured.exists():
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

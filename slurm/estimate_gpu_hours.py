"""Estimate the GPU-hours of an experiment's sweep from timm's published throughput (no GPU needed).

    python slurm/estimate_gpu_hours.py                                  # the two paper experiments
    python slurm/estimate_gpu_hours.py experiment=paper_imagenet seed=0 # any sweep, as bench/sweep.py takes it

Counts exactly what ``bench/sweep.py`` would submit for the same overrides; the throughput table, its source
and why the figures are lower bounds: ``bench/planning/gpu_hours.py``. Exit status: 0, or 2 for bad input.
"""

from __future__ import annotations

import sys

from bench.errors import USER_ERRORS
from bench.planning.gpu_hours import SOURCE, estimate

# Without arguments: the two paper experiments (a data.root and GHN checkpoint are needed to plan, not read).
PAPER = [["experiment=paper_imagenet", "data.root=/data/imagenet", "init.checkpoint=/ckpt/ghn2_imagenet.pt"],
         ["experiment=paper_cifar100_grid"]]


def main(argv: list[str]) -> int:
    print(f"Estimated RTX 3090 GPU-hours from timm's throughput ({SOURCE.format(kind='train|infer')});\n"
          "lower bounds: batch 128 and JPEG decoding make real runs slower.\n")
    try:
        for overrides in ([argv] if argv else PAPER):
            print(estimate(overrides) + "\n")
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

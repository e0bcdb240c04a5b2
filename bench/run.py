"""Train a target network from random, DPIAT or predicted init, and record its validation accuracy per epoch.

    python bench/run.py                                         # built-in default: random/DPIAT/GHN, one pair, table
    python bench/run.py experiment=default init=dpiat           # one run of it
    python bench/run.py experiment=smoke                        # seconds: tiny models on sklearn digits
    python bench/run.py pair=resnet_to_effnet init=dpiat seed=1 # one point of a comparison
    python bench/run.py experiment=paper_imagenet data.root=/data/imagenet pair=b2_to_b0 init=random
    python bench/run.py experiment=paper_imagenet data.root=/data/imagenet trainer=ddp trainer.devices=4
    python bench/run.py trainer.devices=2 trainer.strategy=ddp  # 2-process DDP on a CPU (gloo)

Every argument is a Hydra override (groups: pair, init, data, optim, trainer, logger, experiment; list them
with --help). The run folder results/runs/<experiment>/<pair>/<init>/seed<k>/ is the run: the same command
again resumes it from its newest checkpoint, or says it is finished. Never combine a `-m` sweep with
strategy=ddp. Exit status: 0 finished (or already finished), 1 failed (the reason is in run.json).
"""

import sys

import hydra
from omegaconf import DictConfig

from bench.errors import USER_ERRORS, DivergedError
from bench.running.folder import RunFolder
from bench.running.lit import global_rank
from bench.running.target import run


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        record = run(cfg)
    except USER_ERRORS as e:
        if global_rank() == 0:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        # Other DDP processes leave the report to process 0; a divergence stops them all at the same step,
        # and a non-zero exit here would make Lightning kill process 0 before it records the failure.
        sys.exit(0 if isinstance(e, DivergedError) else 1)
    if global_rank() == 0:
        final = record.get("final_val_top1")
        print(f"{cfg.pair.target} ({cfg.init.name} init, seed {cfg.seed}): validation top-1 "
              f"{100 * final:.2f}% after {len(record['metrics'])} epochs (best {100 * record['best_val_top1']:.2f}%)")
        print(f"run folder: {RunFolder.target(cfg).path}  (run.json, checkpoints/, csv/)")


def default_slice() -> int:
    """No arguments: the built-in default, a small slice of the CPU proxy experiment (conf/experiment/default.yaml),
    every init of one pair, then its table."""
    from bench.sweep import main as sweep

    return sweep(["experiment=default", "--local"])


if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.exit(default_slice())
    main()

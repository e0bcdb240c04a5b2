"""Train (and cache) the source network of one pair, then exit: a sweep's stage-1 task.

A target run trains its source itself when the cache is empty (``source.weights=train``); running this
first, once per distinct source, keeps concurrent target tasks from all waiting on one lock and makes a
failed source training stop the targets that need it (``bench/sweep.py`` submits the targets with
``--dependency=afterok`` on these tasks). It takes the same overrides as ``bench/run.py`` and writes the
same cache: ``results/runs/<experiment>/sources/<model>/seed<source.seed>/weights.safetensors``.

    python bench/train_source.py experiment=smoke
    python bench/train_source.py experiment=paper_cifar100_grid pair=custom pair.source=mixnet_m pair.target=tf_efficientnet_b0
    srun python bench/train_source.py experiment=paper_cifar100_grid trainer=ddp trainer.devices=4 ...   # DDP

Exit status: 0 trained, or already cached (also when ``source.weights`` is not ``train``: nothing to do);
1 failed (the reason is in the source's run.json).
"""

import sys

import bench.startup  # noqa: F401  (first: Ctrl-C during the imports below ends in one line)

import hydra
from omegaconf import DictConfig

from bench.errors import USER_ERRORS, Interrupted
from bench.running import sources
from bench.running.lit import global_rank

# Hydra's output folder (.hydra/, the job log) goes into the source's own run folder, not into the folder of
# whichever target run the pair in the overrides names.
SOURCE_DIR = "hydra.run.dir=${run_folder:source}"


def say(msg: str) -> None:
    if global_rank() == 0:
        print(msg, flush=True)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.source.weights != "train":
        say(f"source.weights={cfg.source.weights}: no source to train (only source.weights=train trains one)")
        return
    if not cfg.pair.source:
        say(f"error: pair {cfg.pair.name!r} has no source network to train")
        sys.exit(1)
    try:
        sources.new_launch()
        _, info = sources.get_source(cfg, log=say)
    except Interrupted as e:  # Ctrl-C or SIGTERM, while it trained or waited for another process's training
        if global_rank() == 0:
            print(str(e), file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:  # while it waited for the lock of a source another process trains
        if global_rank() == 0:
            print(f"interrupted while waiting for source {cfg.pair.source}: rerun the same command", file=sys.stderr)
        sys.exit(130)
    except USER_ERRORS as e:
        if global_rank() == 0:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    say(f"source {cfg.pair.source}: weights {info['path']} (best epoch {info['best_epoch']}, "
        f"val_loss {info['best_val_loss']:.4f}, val_top1 {info['best_val_top1']:.4f})")


if __name__ == "__main__":
    bench.startup.imports_done()
    if not any(a.startswith("hydra.run.dir=") for a in sys.argv[1:]):
        sys.argv.append(SOURCE_DIR)
    main()

"""Train a target network from random, DPIAT or predicted init, and record its validation accuracy per epoch.

    python bench/run.py                                         # built-in default: random/DPIAT/GHN, one pair, table
    python bench/run.py experiment=default init=dpiat           # one run of it
    python bench/run.py experiment=smoke                        # seconds: tiny models on sklearn digits
    python bench/run.py pair=resnet_to_effnet init=dpiat seed=1 # one point of a comparison
    python bench/run.py experiment=paper_imagenet data.root=/data/imagenet pair=b2_to_b0 init=random
    python bench/run.py experiment=paper_imagenet data.root=/data/imagenet trainer=ddp trainer.devices=4
    python bench/run.py trainer.devices=2 trainer.strategy=ddp  # 2-process DDP on a CPU (gloo)

Every argument is a Hydra override (groups: pair, init, data, optim, trainer, logger, experiment); --help lists
the groups, the init methods and every config key with its value and meaning (bench/config_help.py). The run
folder results/runs/<experiment>/<pair>/<init>/seed<k>/ is the run: the same command again resumes it from
its newest checkpoint, or says it is finished. A run outside the experiment's grid (a pair, init or seed that
its grid does not list) is ad hoc: it goes to results/runs/<experiment>/adhoc/<pair>/<init>/seed<k>/, so it
never enters the experiment's table. Never combine a `-m` sweep with strategy=ddp. Ctrl-C (or SIGTERM) stops it with one line,
"interrupted after epoch K of N (...): rerun the same command to resume", and the rerun says after which epoch it
resumes. A run that cannot start (a misspelt key or option, a value of the wrong type, a missing or unreadable
weights or data file, ...) is refused in one line before anything is written (bench/refusal.py). Exit status: 0
finished (or already finished), 1 failed (the reason is in run.json), 2 refused, 130 interrupted.
"""

import sys

import bench.startup  # noqa: F401  (first: Ctrl-C during the imports below ends in one line)

import hydra
from omegaconf import DictConfig

from bench.errors import USER_ERRORS, DivergedError, Interrupted
from bench.layout import ADHOC, experiment_path, outside_grid, table_dir
from bench.running.folder import RunFolder
from bench.running.lit import global_rank
from bench.running.target import run

INTERRUPTED_EXIT = 130  # as a shell reports a command stopped by Ctrl-C

@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if global_rank() == 0:
        note = adhoc_note(cfg)
        if note:
            print(note, flush=True)
    try:
        record = run(cfg)
    except Interrupted as e:  # Ctrl-C or SIGTERM: the run is saved as interrupted, resumable
        if global_rank() == 0:
            print(str(e), file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED_EXIT)
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


def adhoc_note(cfg: DictConfig) -> str | None:
    """For a run outside its experiment's grid: that it is ad hoc, where it goes, and how to get its table."""
    why = outside_grid(cfg.get("grid"), cfg.pair.name, cfg.init.name, cfg.seed, cfg.get("recipe"))
    if not why:
        return None
    adhoc = experiment_path(cfg.paths.runs, cfg.experiment_name) / ADHOC
    return (f"ad hoc run: {'; '.join(why)} of experiment {cfg.experiment_name}, so it goes to "
            f"{RunFolder.target(cfg).path}, not into that experiment's table; the table of its ad hoc runs: "
            f".venv/bin/python bench/aggregate.py {adhoc} --out {table_dir(adhoc)}")


def help_requested(argv: list[str]) -> bool:
    return any(a in ("--help", "-h") for a in argv)


def print_help(argv: list[str]) -> int:
    """--help: the config groups, the init methods and every key's value and meaning (bench/config_help.py)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bench.config_help import help_text
    from bench.refusal import REFUSED, hydra_message

    overrides = [a for a in argv if not a.startswith("-")]
    try:
        print(help_text(overrides), end="")
    except (HydraException, OmegaConfBaseException) as e:
        print(f"error: {hydra_message(e, overrides)}", file=sys.stderr)
        return REFUSED
    return 0


def default_slice() -> int:
    """No arguments: the built-in default, a small slice of the CPU proxy experiment (conf/experiment/default.yaml),
    every init of one pair, then its table."""
    from bench.sweep import main as sweep

    return sweep(["experiment=default", "--local", "--jobs", "3"])


if __name__ == "__main__":
    bench.startup.imports_done()
    if len(sys.argv) == 1:
        sys.exit(default_slice())
    if help_requested(sys.argv[1:]):
        sys.exit(print_help(sys.argv[1:]))
    from bench.config_help import unknown_override_key
    from bench.running.refuse import REFUSED, refuse

    if misspelt := unknown_override_key(sys.argv[1:]):  # before Hydra, whose advice ("+key=...") does not fit
        print(f"error: {misspelt}", file=sys.stderr)
        sys.exit(REFUSED)
    try:
        refuse(sys.argv[1:])  # a run that cannot start: one line, status 2, before Hydra makes its folder
        main()
    except KeyboardInterrupt:  # before the run started training (config, imports): nothing to resume yet
        print("interrupted before training started: run the same command again", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)

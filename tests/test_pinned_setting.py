"""A committed experiment still reproduces bit-identically under the trainer setting its run.json pinned.

Changing a default (e.g. making ``trainer.channels_last`` faster-but-different) must not change what a committed
experiment's command trains: experiments pin the settings their runs recorded. Here the first epoch of a committed
run (random init, seed 0: no source, no GHN, so it is the cheapest) is trained again with its experiment's command
and compared, epoch 0 and epoch 1, bit for bit. Bits depend on the CPU's kernels, so the run chosen is the one
whose recorded instruction set (``hardware.cpu_capability``) and torch are this machine's: the horizon's (recorded
on AVX-512) or, on an AVX2 machine, the selection grid's run of the same network and seed (the same protocol, the
same first epoch); without either the check is skipped, saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "horizon" / "runs" / "paper" / "tinynet_d_to_e" / "random" / "seed0" / "run.json"
# committed first epochs of TinyNet-E from random init, seed 0, under the proxy's protocol, and their commands
CANDIDATES = [
    (COMMITTED, ["experiment=horizon", "recipe=paper", "pair=tinynet_d_to_e"]),
    (REPO / "results" / "selection" / "runs" / "tinynet_d_to_tinynet_e" / "random" / "seed0" / "run.json",
     ["experiment=selection", "pair=custom", "pair.source=tinynet_d", "pair.target=tinynet_e"]),
]


def test_the_horizon_pins_eager_float32_on_one_thread():
    record = json.loads(COMMITTED.read_text())
    trainer = record["config"]["trainer"]
    assert (trainer["channels_last"], trainer["precision"], trainer["threads"]) == (False, "32-true", 1)
    from hydra import compose, initialize_config_dir

    from bench.config import CONF_DIR

    for experiment in ("horizon", "reuse"):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment={experiment}"])
        assert (cfg.trainer.channels_last, cfg.trainer.precision, cfg.trainer.threads) == (False, "32-true", 1)


@pytest.mark.slow
def test_a_committed_run_repeats_its_first_epoch_bit_identically(compose_config, tmp_path):
    here = (torch.backends.cpu.get_cpu_capability(), torch.__version__)
    usable = [(path, args) for path, args in CANDIDATES
              if (lambda r: (r["hardware"]["cpu_capability"], r["versions"]["torch"]))(json.loads(path.read_text()))
              == here]
    if not usable:
        pytest.skip(f"bits depend on the CPU kernels: no committed candidate was recorded on {here[0]} with torch "
                    f"{here[1]}")
    if not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("Fashion-MNIST's Debian package is not installed (bash setup.sh installs it)")
    from bench.running.target import run

    path, args = usable[0]
    record = json.loads(path.read_text())
    assert record["config"]["trainer"]["channels_last"] is False
    again = run(compose_config(*args, "init=random", "seed=0", "epochs=1", f"paths.runs={tmp_path}"))
    drop = ("wall_seconds", "seconds_evaluation", "seconds_bn_recalibration")
    strip = lambda d: {k: v for k, v in d.items() if k not in drop}  # noqa: E731
    assert strip(again["init_metrics"]) == strip(record["init_metrics"])
    assert strip(again["metrics"][0]) == strip(record["metrics"][0])

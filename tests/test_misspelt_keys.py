"""A misspelt config key on the command line is refused in one line that names the key and the closest real
ones (bench/config_help.py), before Hydra, whose advice ("To append to your config use +trainr...") does not fit a
structured config."""

from __future__ import annotations

import pytest

from bench.config_help import schema_keys, unknown_key, unknown_override_key


@pytest.mark.parametrize("key, suggestion", [
    ("trainer.devics", "trainer.devices"),
    ("optm.lr", "optim.lr"),
    ("data.batchsize", "data.batch_size"),
    ("epoch", "epochs"),
    ("trainer.max_epochs", "epochs"),  # Lightning's name for a key we keep at the top level
])
def test_a_misspelt_key_gets_its_closest_real_keys(key, suggestion):
    message = unknown_key(key)
    assert message.startswith(f"{key}: ") and "did you mean" in message and suggestion in message
    assert suggestion in schema_keys() and "bench/run.py --help" in message and "\n" not in message


@pytest.mark.parametrize("key", [
    "seed", "trainer.devices", "pair", "experiment", "hydra.run.dir", "init.checkpoint",  # init: open to yaml keys
    "pair.source_kwargs.img_size", "grid.recipes.mine", "data.root",
])
def test_real_keys_and_open_sections_pass(key):
    assert unknown_key(key) is None


def test_only_plain_overrides_are_checked():
    assert unknown_override_key(["+mine=1", "~data.mean", "hydra/launcher=slurm", "-m", "pair=a,b"]) is None
    assert unknown_override_key(["experiment=smoke", "trainr.max_epochs=1"]).startswith("trainr.max_epochs: ")


def test_run_and_sweep_refuse_it_in_one_line(run_main, tmp_path):
    from bench.sweep import main as sweep

    code, _, err = run_main("bench/run.py", "experiment=smoke", "trainr.max_epochs=1", f"paths.runs={tmp_path}")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: trainr.max_epochs: there is no such key (did you mean ")
    assert "To append" not in err and not any(tmp_path.iterdir())  # nothing written
    assert sweep(["experiment=smoke", "trainer.devics=2", f"paths.runs={tmp_path}"]) == 2

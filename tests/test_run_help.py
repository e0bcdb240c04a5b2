"""python bench/run.py --help: Hydra's config groups, the registered init methods with their summaries, and every
config key with its current value and its meaning, generated from the schema's comments (bench/config_help.py)."""

from __future__ import annotations

import dpiat
from bench.config_help import help_text, schema_fields, undocumented_keys


def test_help_shows_groups_inits_and_what_each_key_means(run_main):
    code, text, err = run_main("bench/run.py", "--help")
    assert code == 0, err[-2000:]
    assert "pair: b2_to_b0, " in text and " custom, " in text and "experiment: default, horizon, paper_cifar100_grid" in text  # Hydra's list
    assert "source.weights=results/reuse/runs/sources/tinynet_d/seed0/weights.safetensors" in text and "timm: timm's pretrained weights (needs internet" in text
    assert "data.train_subset=5000" in text and 'an "epoch" = this many images, a fixed seeded subset' in text
    for name in dpiat.available_inits():
        assert f"init={name} " in text and dpiat.get_init(name).summary.split(";")[0][:40] in text
    assert "init.checkpoint" in text and "ppuda's official ghn2_*.pt" in text  # conf/init/ghn.yaml's comment
    for section in ("paths", "pair", "source", "init", "data", "optim", "trainer", "logger", "grid"):
        assert f"\n-- {section} --" in text
    assert "one of: mocked_cosine (the paper's" in text  # an Enum's values with their comments


def test_help_shows_the_values_of_the_overrides_given():
    text = help_text(["experiment=smoke", "seed=7"])
    assert "experiment_name=smoke" in text and "seed=7 " in text and "data.name=digits" in text


def test_a_bad_override_with_help_is_one_line(run_main):
    code, out, err = run_main("bench/run.py", "pair=nope", "--help")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "there is no pair 'nope'" in err and "tinynet_d_to_e" in err


def test_every_key_of_the_schema_has_a_meaning():
    """A new key in bench/config.py needs its comment: that comment is its --help line."""
    assert undocumented_keys() == []
    assert "needs internet" in schema_fields()["SourceConfig"]["weights"].meaning  # comment lines above a field

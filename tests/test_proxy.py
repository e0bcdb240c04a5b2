"""The CPU proxy experiment (conf/experiment/proxy.yaml) and the built-in default slice of it: their grids,
per-pair source settings, the per-init GHN checkpoint, offline ImageNet source weights, and the no-argument
entry point. Composes the real configs and plans the real sweep; trains nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import dpiat.zoo
from bench.errors import ConfigError, SweepError
from bench.planning.plan import plan_sweep
from bench.running import sources
from tests.conftest import REPO

PROXY_PAIRS = ["tinynet_d_to_e", "rexnet_100_to_tinynet_e", "resnet10t_to_tinynet_e", "lite0_imagenet_to_tinynet_e",
               "tinynet_d_untrained_to_e"]


def test_proxy_grid_runs_shared_baselines_once_per_seed(tmp_path):
    plan = plan_sweep(["experiment=proxy", f"paths.runs={tmp_path}"])
    assert plan.axes["pair"] == PROXY_PAIRS and plan.axes["init"] == ["random", "dpiat", "ghn"]
    assert plan.axes["seed"] == ["0", "1", "2"]
    lines = [t.line for t in plan.runs]
    assert len(lines) == 5 * 3 + 3 + 3  # dpiat per pair and seed; random and ghn once per seed (one target)
    ghn = [line for line in lines if "init=ghn" in line]
    assert len(ghn) == 3 and all(f"init.checkpoint={tmp_path}/proxy/ghn/ghn.pt" in line for line in ghn)
    assert not any("init.checkpoint" in line for line in lines if "init=ghn" not in line)
    kinds = [t.kind for t in plan.prerequisites]
    assert kinds.count("source") == 3  # trained sources only: not the ImageNet Lite0 nor the untrained control
    ghn_training = [t.line for t in plan.prerequisites if t.kind == "prerequisite"]
    assert ghn_training == ["bench/train_ghn.py data=fashion_mnist epochs=10 steps_per_epoch=60 "
                            "'family.kinds=[effnet,mobilenetv3]' eval.final_images=2560 "
                            f"out_dir={tmp_path}/proxy/ghn"]


def test_proxy_sources_are_trained_to_convergence_with_their_own_recipe(compose_config):
    from bench.config import source_config
    cfg = compose_config("experiment=proxy", "pair=resnet10t_to_tinynet_e")
    own = source_config(cfg)
    assert own.data.train_subset is None and cfg.data.train_subset == 5000  # the whole split, targets 5k
    assert (own.optim.name.value, own.optim.lr, own.optim.schedule.value) == ("sgd", 0.1, "cosine_steps")
    assert list(own.data.crop_scale) == [0.9, 1.0] and cfg.optim.name.value == "adam"  # targets: the paper's
    assert cfg.trainer.threads == 1


def test_variants_share_the_proxys_sources_and_its_random_and_dpiat_runs(tmp_path, compose_config):
    from bench.running.folder import RunFolder
    plan = plan_sweep(["experiment=variants", f"paths.runs={tmp_path}"])
    assert "random" not in plan.axes["init"] and "dpiat" not in plan.axes["init"] and len(plan.axes["init"]) >= 4
    assert plan.compare_dirs == [tmp_path / "proxy"]
    assert {str(t.folder) for t in plan.prerequisites} <= {str(tmp_path / "proxy" / "sources" / m / "seed0")
                                                           for m in ("tinynet_d", "resnet10t", "rexnet_100")}
    v = compose_config("experiment=variants", "pair=tinynet_d_to_e", "init=dpiat_bn", f"paths.runs={tmp_path}")
    p = compose_config("experiment=proxy", "pair=tinynet_d_to_e", "init=dpiat", f"paths.runs={tmp_path}")
    assert RunFolder.source(v).path == RunFolder.source(p).path and RunFolder.source(v).config == RunFolder.source(p).config


def test_pair_files_carry_their_source_weights(compose_config):
    lite0 = compose_config("experiment=proxy", "pair=lite0_imagenet_to_tinynet_e")
    assert (lite0.source.weights, lite0.source.num_classes, lite0.source.in_chans) == \
        ("zoo:efficientnet_lite0_imagenet", 1000, 3)
    assert lite0.data.in_chans == 1
    control = compose_config("experiment=proxy", "pair=tinynet_d_untrained_to_e")
    assert control.source.weights == "none" and control.pair.source == "tinynet_d"
    trained = compose_config("experiment=proxy", "pair=rexnet_100_to_tinynet_e")
    assert trained.source.weights == "train"


def nothing_to_train(monkeypatch):
    monkeypatch.setattr(sources, "execute", lambda *a, **k: pytest.fail("nothing to train"))


def test_zoo_source_weights_are_the_real_imagenet_lite0(compose_config, monkeypatch):
    nothing_to_train(monkeypatch)
    cfg = compose_config("experiment=proxy", "pair=lite0_imagenet_to_tinynet_e")
    model, info = sources.get_source(cfg, log=print)
    assert info == {"weights": "zoo:efficientnet_lite0_imagenet"}
    reference = dpiat.zoo.efficientnet_lite0_imagenet()
    assert torch.equal(model.classifier.weight, reference.classifier.weight)
    assert model.conv_stem.weight.shape == (32, 3, 3, 3)


def test_zoo_source_must_match_the_pair(compose_config, monkeypatch):
    nothing_to_train(monkeypatch)
    cfg = compose_config("experiment=proxy", "pair=tinynet_d_to_e", "source.weights=zoo:efficientnet_lite0_imagenet")
    with pytest.raises(ConfigError, match="holds a tf_efficientnet_lite0"):
        sources.get_source(cfg, log=print)
    cfg = compose_config("experiment=proxy", "pair=tinynet_d_to_e", "source.weights=zoo:lite9")
    with pytest.raises(dpiat.UnknownNameError, match="unknown zoo model 'lite9'"):
        sources.get_source(cfg, log=print)


def test_default_is_a_one_seed_slice_with_every_init(tmp_path):
    plan = plan_sweep(["experiment=default", f"paths.runs={tmp_path}"])
    assert [t.line.split()[-2:] for t in plan.runs] == [["init=random", "seed=0"], ["init=dpiat", "seed=0"],
                                                        ["init=ghn", "seed=0"]]
    # nothing trained before the runs: the committed source and GHN-2 of experiment=reuse are read as files
    assert plan.prerequisites == [] and plan.missing == []
    cfg = plan_sweep(["experiment=default", f"paths.runs={tmp_path}", "source.weights=train"])
    assert [t.kind for t in cfg.prerequisites] == ["source"]  # another pair's way: its source trained here


def test_init_overrides_must_be_init_options(tmp_path):
    with pytest.raises(SweepError, match="only init.<option>=value"):
        plan_sweep(["experiment=default", f"paths.runs={tmp_path}", "grid.init_overrides={ghn:['seed=3']}"])


def test_run_py_without_arguments_runs_the_default_slice(tmp_path):
    """The no-argument path hands over to the local sweep of experiment=default (checked without training)."""
    code = ("import sys, bench.sweep, runpy; seen = []\n"
            "bench.sweep.main = lambda argv: seen.append(argv) or 0\n"
            "sys.argv = ['bench/run.py']\n"
            "try:\n    runpy.run_path('bench/run.py', run_name='__main__')\n"
            "except SystemExit as e:\n    print(seen, e.code)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[['experiment=default', '--local', '--jobs', '3']] 0", out.stderr[-2000:]

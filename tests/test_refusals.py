"""A command line that cannot run is refused in one line, with exit status 2, before anything is written
(bench/refusal.py, dpiat/cli.py); Hydra's and argparse's messages are reworded, with the closest names there are.

bench/run.py runs in this process (the run_main fixture), as ``python bench/run.py ...`` would, so that each case
costs a config composition and not a new Python with torch and Lightning to import.
"""

from __future__ import annotations

import pytest

import dpiat
from dpiat.cli import main as dpiat_main
from dpiat.errors import close_matches
from dpiat.models import timm_model_names


def refused(run_main, tmp_path, *argv: str) -> str:
    """The one line bench/run.py refuses ``argv`` with (exit status 2, nothing under tmp_path/runs)."""
    runs = tmp_path / "runs"
    code, _, err = run_main("bench/run.py", *argv, f"paths.runs={runs}")
    assert code == 2, err[-2000:]
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err[-2000:]
    assert not runs.exists(), sorted(p.relative_to(runs) for p in runs.rglob("*"))  # no run folder, no .hydra/
    return err.strip()


# ---------------------------------------------------------------------------------------------------------
# Invalid runs: refused before Hydra makes the run folder
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, says", [
    (["data.num_classes=0"], "data.num_classes=0: digits has 10 classes"),
    (["data.num_classes=5"], "at least 10 outputs"),
    (["source.weights=/nonexistent/src.safetensors"], "source.weights='/nonexistent/src.safetensors': no such file"),
    (["source.weights=zoo:nonexistent"], "unknown zoo model 'nonexistent'. Available: efficientnet_lite0_imagenet"),
    (["source.weights=zoo:efficientnet_lite0_imagenet"], "holds a tf_efficientnet_lite0, but pair"),
    (["pair.source=resnet_nonexist"], "unknown timm model 'resnet_nonexist'"),
    (["init=ghn", "init.checkpoint=/nonexistent/ghn.pt"], "the ghn runs need /nonexistent/ghn.pt (init.checkpoint)"),
    (["init=random", "data=imagenet", "data.root=/nonexistent/imagenet"], "imagenet folder /nonexistent/imagenet"),
])
def test_an_invalid_run_is_refused_before_its_folder_exists(run_main, tmp_path, argv, says):
    assert says in refused(run_main, tmp_path, "experiment=smoke", *argv)


def test_the_defaults_committed_source_with_another_pair_says_to_train_one(run_main, tmp_path):
    """experiment=default (what bench/run.py composes without experiment=) reads the TinyNet-D committed with the
    reuse grid; a pair with another source is told the fix, not that weights of another network do not fit."""
    line = refused(run_main, tmp_path, "pair=resnet_to_effnet", "init=dpiat")
    assert "holds the tinynet_d trained in results/reuse/runs/sources/tinynet_d/seed0" in line, line
    assert "names the source 'resnet50': add source.weights=train" in line, line


def test_a_corrupt_weights_file_is_refused_without_an_unrelated_hint(run_main, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 7 + b"garbage" * 100)
    line = refused(run_main, tmp_path, "experiment=smoke", f"source.weights={bad}")
    assert "is not a readable safetensors file (corrupt or truncated?)" in line
    assert "num_classes" not in line and "in_chans" not in line  # nothing to do with the file being unreadable


def test_weights_of_another_shape_are_refused_with_the_fix(run_main, tmp_path):
    src = tmp_path / "src.safetensors"
    dpiat.save_weights(dpiat.create_model("test_resnet", num_classes=7), src)
    line = refused(run_main, tmp_path, "experiment=smoke", f"source.weights={src}")
    assert "do not fit" in line and "fc.weight (file (7, " in line and "set source.num_classes" in line


def test_weights_that_fit_are_read_on_the_meta_device_without_loading(compose_config, tmp_path):
    from bench.running.sources import check_source

    cfg = compose_config("experiment=smoke", f"paths.runs={tmp_path}")
    src = tmp_path / "src.safetensors"
    dpiat.save_weights(dpiat.create_model(cfg.pair.source, num_classes=cfg.data.num_classes,
                                          in_chans=cfg.data.in_chans), src)
    cfg.source.weights = str(src)
    check_source(cfg)  # no error: the run would load them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]


def test_a_run_that_can_start_is_not_refused(tmp_path):
    from bench.running.refuse import refusal

    assert refusal(["experiment=smoke", f"paths.runs={tmp_path}"]) is None
    assert refusal(["experiment=smoke", "init=dpiatt", "--cfg", "job"]) is not None  # the config is still checked
    assert refusal(["experiment=smoke", "source.weights=/nonexistent.pt", "--cfg", "job"]) is None  # it only prints
    assert refusal(["experiment=smoke", "-m", "seed=1,2"]) is None  # Hydra's own sweep: left to Hydra
    assert not any(tmp_path.iterdir())


def test_a_sweep_plan_writes_nothing(tmp_path, capsys):
    """experiment=horizon keeps its finished runs in results/horizon/runs (grid.resume_committed): a plan counts
    them as finished without copying them into the runs folder; --local and --submit copy them."""
    from bench.sweep import main as sweep

    runs = tmp_path / "runs"
    # the committed runs were made with the default paths.runs, which their GHN checkpoint path names
    assert sweep(["experiment=horizon", f"paths.runs={runs}", "init.checkpoint=results/runs/proxy/ghn/ghn.pt"]) == 0
    out = capsys.readouterr().out
    assert "15 finished, 0 to run" in out and "15 of the finished runs are in the committed" in out
    assert not runs.exists()


# ---------------------------------------------------------------------------------------------------------
# Hydra's messages, one line each
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, says", [
    (["init=dpiatt"], "init=dpiatt: there is no init 'dpiatt' (did you mean dpiat"),
    (["experiment=proxi"], "experiment=proxi: there is no experiment 'proxi' (did you mean proxy?); the experiment "
                           "options: default, horizon,"),
    (["pair=nonexistent_pair"], "pair=nonexistent_pair: there is no pair 'nonexistent_pair'; the pair options: "
                                "b2_to_b0,"),
    (["data=fashon_mnist"], "data=fashon_mnist: there is no data 'fashon_mnist' (did you mean fashion_mnist?)"),
    (["optim.lr=abc"], "optim.lr=abc: optim.lr takes a number (e.g. 0.001), not 'abc' (its default: optim.lr=4e-3)"),
    (["seed=x"], "seed=x: seed takes a whole number, not 'x' (its default: seed=0)"),
    (["trainer.compile=maybe"], "trainer.compile takes true or false, not 'maybe' (its default: trainer.compile=false)"),
    (["optim.name=adamw"], "optim.name=adamw: optim.name is one of adam, sgd (did you mean optim.name=adam?)"),
    (["seed=1,2"], "seed=1,2: several values are a sweep: run them with .venv/bin/python bench/sweep.py seed=1,2"),
    (["seed"], "cannot read the override 'seed'"),
])
def test_hydras_errors_are_one_line_with_the_options(run_main, tmp_path, argv, says):
    line = refused(run_main, tmp_path, *argv)
    assert says in line and "Config search path" not in line and "full_key" not in line


def test_help_with_a_bad_override_is_the_same_line(run_main):
    code, _, err = run_main("bench/run.py", "pair=resnet_to_efnet", "--help")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: pair=resnet_to_efnet: there is no pair 'resnet_to_efnet' (did you mean "
                          "resnet_to_effnet")


def test_a_sweep_says_it_the_same_way(capsys):
    from bench.sweep import main as sweep

    assert sweep(["experiment=smoke", "optim.lr=abc"]) == 2
    assert capsys.readouterr().err == ("error: optim.lr=abc: optim.lr takes a number (e.g. 0.001), not 'abc' (its "
                                       "default: optim.lr=4e-3); .venv/bin/python bench/run.py --help lists every key "
                                       "with its value\n")


# ---------------------------------------------------------------------------------------------------------
# Close names, and the dpiat command line
# ---------------------------------------------------------------------------------------------------------


def test_close_names_share_the_start_of_the_name():
    names = timm_model_names()
    assert all(n.startswith("resnet") for n in close_matches("resnet_nonexist", names))  # not test_convnext
    assert close_matches("vit_tiny", names)[0].startswith("vit_tiny_patch16")  # a shortened name
    assert close_matches("resnet5O", names)[0] == "resnet50"
    assert close_matches("effnet_b0", names)[0] == "efficientnet_b0"


@pytest.mark.parametrize("argv, line", [
    (["rank", "tf_efficientnet_b0", "--top", "0"], "dpiat rank: error: argument --top: must be at least 1, got '0'"),
    (["rank", "tf_efficientnet_b0", "--topp", "3"],
     "dpiat rank: error: no option --topp (did you mean --top?); dpiat rank --help lists the options"),
    (["similarity", "A", "--method", "dpiat_struct"],
     "dpiat similarity: error: similarity compares two or more models, got 1 (A): add another, e.g. dpiat similarity "
     "A tf_efficientnet_b0"),
    (["rank"], "dpiat rank: error: missing target; dpiat rank --help lists what it takes"),
    (["rnak", "x"], "dpiat: error: unknown command 'rnak' (did you mean rank?); the commands: transfer, cache-tag, "
                    "explain, similarity, rank, recommend"),
])
def test_argparse_errors_are_one_line_without_the_usage(argv, line, capsys):
    assert dpiat_main(argv) == 2
    assert capsys.readouterr().err == line + "\n"


def test_transfer_checks_both_names_before_warning_of_a_random_source(tmp_path, capsys):
    out = tmp_path / "t.safetensors"
    assert dpiat_main(["transfer", "resnet18", "tinynet_x", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dpiat transfer: error: unknown timm model 'tinynet_x'. Did you mean: tinynet_a")
    assert err.count("\n") == 1 and "warning" not in err and not out.exists()


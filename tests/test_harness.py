"""The harness end to end: real configs, real timm models, real data (sklearn digits), real Lightning.

Runs go in-process through ``bench.running.target.run`` (what bench/run.py calls) unless a test needs the real
command line: Hydra's own error messages, a process killed mid-training, concurrent runs, and DDP.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dpiat
from bench.errors import AlreadyFailed, ConfigError, DataError, DivergedError, RunFolderError
from bench.layout import hydra_dir
from bench.running.record import read_run
from bench.running.target import run
from dpiat.errors import DpiatError, WeightsError

REPO = Path(__file__).resolve().parents[1]
# Tiny and quick: timm's test models on digits at 16 px, epochs of 256 images.
FAST = ["experiment=smoke", "init=random", "data.train_subset=256", "data.batch_size=64", "epochs=2"]
SCHEMA_KEYS = {"schema_version", "status", "failure_reason", "experiment", "pair", "source", "target", "init", "seed",
               "data", "epochs", "similarity", "init_metrics", "metrics", "best_val_top1", "final_val_top1",
               "init_report", "config", "git_commit", "git_dirty", "versions", "hardware", "slurm", "wandb_run_id",
               "data_hash", "wall_seconds", "updated"}


def run_dir(cfg) -> Path:
    """The run folder of a composed config (bench/layout.py), as RunFolder.target(cfg).path."""
    return hydra_dir("target", cfg)


def curve(record: dict) -> list[dict]:
    """Per-epoch metrics without the wall-clock."""
    return [{k: v for k, v in m.items() if k != "wall_seconds"} for m in record["metrics"]]


def before_training(record: dict) -> dict:
    """The evaluation before training (epoch 0) without the wall-clock of it (seconds_*: the start cost)."""
    return {k: v for k, v in record["init_metrics"].items() if not k.startswith("seconds_")}


# ---------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["pair", "init", "data", "optim", "trainer", "logger", "experiment"])
def test_every_config_option_composes(compose_config, group):
    names = sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))
    assert names
    for name in names:
        cfg = compose_config(f"{group}={name}")
        if group == "pair" and name != "custom":
            assert cfg.pair.name == name  # the file name is the run folder's pair name
        if group == "init":
            assert cfg.init.name == name and name in dpiat.available_inits()


def test_every_registered_init_is_an_option_of_the_init_group(compose_config):
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bench.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        options = GlobalHydra.instance().config_loader().get_group_options("init")
    assert set(dpiat.available_inits()) <= set(options)
    for name in dpiat.available_inits():
        assert compose_config(f"init={name}").init.name == name


def test_an_init_registered_without_a_yaml_file_runs_from_the_command_line(tmp_path):
    """Registering a method in dpiat.inits is all it takes: bench/run.py init=<name>, with options."""
    assert not (REPO / "conf" / "init" / "halved_test.yaml").exists()
    args = ["experiment=smoke", "init=halved_test", "+init.factor=0.5", "epochs=1", "data.train_subset=64",
            f"paths.runs={tmp_path}"]
    code = ("import runpy, sys, torch\n"
            "from dpiat.inits import register_init\n"
            "@register_init('halved_test', needs_source=False, summary='test only')\n"
            "def halved(target, source=None, factor=1.0):\n"
            "    with torch.no_grad():\n"
            "        for p in target.parameters():\n"
            "            p.mul_(factor)\n"
            "    return {'method': 'halved_test', 'factor': factor}\n"
            f"sys.argv = ['bench/run.py', *{args!r}]\n"
            "runpy.run_path('bench/run.py', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_run(tmp_path / "smoke" / "test_resnet_to_effnet" / "halved_test" / "seed0")
    assert record["status"] == "finished" and record["init_report"] == {"method": "halved_test", "factor": 0.5}


def test_default_is_the_cpu_fashion_mnist_experiment(compose_config):
    cfg = compose_config()
    # its source is the TinyNet-D committed with experiment=reuse: nothing is trained before the targets
    assert (cfg.experiment_name, cfg.data.name, cfg.init.name, cfg.source.weights) == \
        ("default", "fashion_mnist", "dpiat", "results/reuse/runs/sources/tinynet_d/seed0/weights.safetensors")
    assert (REPO / cfg.source.weights).exists()
    assert cfg.trainer.accelerator == "cpu"


def test_paper_recipe_is_the_default_optimiser(compose_config):
    from bench.running.lit import lr_factor

    cfg = compose_config("experiment=paper_imagenet")
    assert (cfg.optim.name.value, cfg.optim.lr, cfg.optim.weight_decay, cfg.data.batch_size) == ("adam", 4e-3, 0.0, 128)
    assert cfg.data.resolution is None and cfg.epochs == 50  # per-model resolution; 50 epochs
    assert lr_factor(0, cfg.optim, 50) == 1.0 and abs(lr_factor(49, cfg.optim, 50) - 0.5645) < 1e-3


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")))
def test_experiment_files_start_with_command_time_and_accuracy(name):
    head = (REPO / "conf" / "experiment" / f"{name}.yaml").read_text().split("\n", 12)
    comment = "\n".join(line for line in head if line.startswith("#"))
    assert "python bench/run.py" in comment and "Expected" in comment


def test_hydra_run_dir_is_the_run_folder(compose_config, tmp_path):
    cfg = compose_config("pair=mixnet_s_to_tinynet_e", "init=random", "seed=3", f"paths.runs={tmp_path}", hydra=True)
    # seed 3 and that pair are outside the default experiment's grid: an ad hoc run (tests/test_adhoc.py)
    expected = tmp_path / "default" / "adhoc" / "mixnet_s_to_tinynet_e" / "random" / "seed3"
    assert Path(cfg.hydra.run.dir) == run_dir(cfg) == expected
    custom = compose_config("pair=custom", "pair.source=mixnet_m", "pair.target=tf_efficientnet_b1")
    assert custom.pair.name == "mixnet_m_to_tf_efficientnet_b1"


@pytest.mark.parametrize("override, message", [
    ("pair=resnet_to_efnet", "Available options in 'pair'"),
    ("init=dpait", "Available options in 'init'"),
    ("data=cifar", "Available options in 'data'"),
    ("trainer.devics=2", "Key 'devics' not in 'TrainerConfig'"),
    ("optim.name=adamw", "Invalid value 'adamw'"),
])
def test_typos_fail_with_hydras_message(compose_config, override, message):
    with pytest.raises(Exception) as info:
        compose_config(override)
    text = str(info.value) + str(info.value.__cause__ or "")
    assert message in text


def test_typo_on_the_command_line_lists_the_options(run_main):
    code, _, err = run_main("bench/run.py", "pair=resnet_to_efnet")
    assert code == 2 and err.count("\n") == 1  # tests/test_refusals.py: the other cases
    assert "there is no pair 'resnet_to_efnet' (did you mean resnet_to_effnet" in err


# ---------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------


def test_smoke_run_writes_the_run_folder_and_then_reports_it_finished(compose_config, tmp_path, capsys):
    cfg = compose_config(*FAST, f"paths.runs={tmp_path}")
    record = run(cfg)
    folder = run_dir(cfg)
    on_disk = read_run(folder)
    assert on_disk == json.loads(json.dumps(record, default=str))
    assert SCHEMA_KEYS <= set(on_disk)
    assert on_disk["status"] == "finished" and on_disk["failure_reason"] is None
    assert (on_disk["pair"], on_disk["init"], on_disk["seed"], on_disk["target"]) == \
        ("test_resnet_to_effnet", "random", 0, "test_efficientnet")
    assert [m["epoch"] for m in on_disk["metrics"]] == [1, 2]
    for m in [on_disk["init_metrics"], *on_disk["metrics"]]:
        assert 0 <= m["val_top1"] <= m["val_top5"] <= 1 and m["val_samples"] == 359
    assert [m["images_seen"] for m in on_disk["metrics"]] == [256, 512]
    assert on_disk["final_val_top1"] == on_disk["metrics"][-1]["val_top1"]
    assert on_disk["best_val_top1"] == max(m["val_top1"] for m in on_disk["metrics"])
    assert on_disk["config"]["optim"]["lr"] == 0.004 and on_disk["config"]["data"]["name"] == "digits"
    assert on_disk["versions"]["torch"] == torch.__version__ and on_disk["hardware"]["device"] == "cpu"
    assert len(on_disk["git_commit"] or "") == 40
    assert on_disk["similarity"] is not None  # the pair has a source, even if random init does not use it
    assert (folder / "checkpoints" / "last.ckpt").exists() and (folder / "checkpoints" / "best.ckpt").exists()
    assert "val_top1" in (folder / "csv" / "segment1" / "metrics.csv").read_text()
    capsys.readouterr()
    again = run(cfg)
    assert "already finished" in capsys.readouterr().out
    assert again["segments"] == 1 and again["updated"] == on_disk["updated"]


def test_same_seed_same_metrics_other_seed_other_metrics(compose_config, tmp_path):
    a = run(compose_config(*FAST, f"paths.runs={tmp_path / 'a'}"))
    b = run(compose_config(*FAST, f"paths.runs={tmp_path / 'b'}"))
    c = run(compose_config(*FAST, f"paths.runs={tmp_path / 'c'}", "seed=1"))
    assert curve(a) == curve(b) and before_training(a) == before_training(b)
    assert a["init_metrics"]["seconds_bn_recalibration"] > 0  # what epoch 0 costs is recorded beside it
    assert curve(a) != curve(c)


def test_more_epochs_continue_a_finished_run(compose_config, tmp_path):
    two = run(compose_config(*FAST, f"paths.runs={tmp_path / 'a'}"))
    three = run(compose_config(*FAST, f"paths.runs={tmp_path / 'a'}", "epochs=3"))
    straight = run(compose_config(*FAST, f"paths.runs={tmp_path / 'b'}", "epochs=3"))
    assert curve(three)[:2] == curve(two) and curve(three) == curve(straight)
    assert three["segments"] == 2 and three["status"] == "finished"
    logs = run_dir(compose_config(*FAST, f"paths.runs={tmp_path / 'a'}")) / "csv"
    assert sorted(p.parent.name for p in logs.glob("*/metrics.csv")) == ["segment1", "segment2"]  # none lost


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_the_uninterrupted_metrics(compose_config, run_cli, tmp_path):
    # threads pinned: the reference runs in this process, the killed run in a child, and bits depend on the count
    args = ["experiment=smoke", "init=random", "epochs=2", "data.batch_size=32", "trainer.enable_progress_bar=false",
            "trainer.threads=1"]
    reference = run(compose_config(*args, f"paths.runs={tmp_path / 'ref'}"))
    folder = run_dir(compose_config(*args, f"paths.runs={tmp_path / 'killed'}"))
    command = [sys.executable, str(REPO / "bench" / "run.py"), *args, f"paths.runs={tmp_path / 'killed'}"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            ckpt = folder / "checkpoints" / "last.ckpt"
            if ckpt.exists() and (folder / "run.json").exists() and len(read_run(folder)["metrics"]) == 1:
                time.sleep(0.3)  # into epoch 2 (of 44 steps)
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    killed = read_run(folder)
    assert killed["status"] == "running" and len(killed["metrics"]) == 1  # died in epoch 2
    resumed = run_cli(*args, f"paths.runs={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout and "last.ckpt" in resumed.stdout
    final = read_run(folder)
    assert final["status"] == "finished" and final["segments"] == 2
    assert curve(final) == curve(reference)
    # the killed segment never wrote its wall time, but its finished epoch counts in the run's
    assert final["wall_seconds"] >= final["metrics"][-1]["wall_seconds"] > final["metrics"][0]["wall_seconds"]


def test_batchnorm_recalibrated_evaluation_leaves_training_bit_identical(compose_config, tmp_path):
    on = run(compose_config(*FAST, f"paths.runs={tmp_path / 'on'}"))
    off = run(compose_config(*FAST, "eval.bn_batches=0", f"paths.runs={tmp_path / 'off'}"))
    protocol = [{k: v for k, v in m.items() if not k.endswith("_bn")} for m in curve(on)]
    assert protocol == curve(off)  # the same training, the same protocol evaluation, epoch by epoch
    assert "val_top1_bn" not in off["init_metrics"] and "val_top1_bn" not in off["metrics"][0]
    for m in [on["init_metrics"], *on["metrics"]]:
        assert 0 <= m["val_top1_bn"] <= 1 and m["val_loss_bn"] > 0
    weights = [torch.load(run_dir(compose_config(*FAST, f"paths.runs={tmp_path / side}")) / "checkpoints" / "last.ckpt",
                          weights_only=True)["state_dict"] for side in ("on", "off")]
    assert weights[0].keys() == weights[1].keys()  # the recalibrated copy is not part of the model
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_recalibration_averages_batch_statistics_on_a_copy_and_draws_no_random_numbers():
    from bench.running.bn_eval import recalibrated

    net = torch.nn.Sequential(torch.nn.BatchNorm1d(2), torch.nn.Dropout(0.5)).eval()
    batches = [torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.tensor([[4.0, 1.0], [6.0, 1.0]])]
    state = torch.random.get_rng_state()
    copy = recalibrated(net, batches)
    assert torch.equal(torch.random.get_rng_state(), state)  # dropout stayed off
    assert copy[0].running_mean.tolist() == [3.0, 1.5]  # the mean of the batch means (1, 2) and (5, 1)
    assert copy[0].running_var.tolist() == [2.0, 1.0]  # of the unbiased batch variances (2, 2) and (2, 0)
    assert net[0].running_mean.tolist() == [0.0, 0.0] and not copy.training  # the original is untouched


def test_a_source_trains_with_its_own_budget_and_schedule(compose_config, tmp_path):
    cfg = compose_config("experiment=smoke", "data.train_subset=256", "epochs=1", "source.train_subset=512",
                         "source.schedule=cosine_steps", "source.warmup_steps=2", "source.lr=0.002",
                         f"paths.runs={tmp_path}")
    target = run(cfg)
    source = read_run(tmp_path / "smoke" / "sources" / "test_resnet" / "seed0")
    assert source["config"]["data"]["train_subset"] == 512 and source["config"]["lr"] == 0.002
    assert (source["config"]["optim"]["schedule"], source["config"]["optim"]["warmup_steps"]) == ("cosine_steps", 2)
    assert source["metrics"][-1]["images_seen"] == 512  # its own budget, not the targets' 256
    assert target["metrics"][-1]["images_seen"] == 256 and target["config"]["optim"]["schedule"] == "mocked_cosine"
    with pytest.raises(ConfigError, match="source.schedule='cosin' is not a schedule"):
        run(compose_config("experiment=smoke", "source.schedule=cosin", f"paths.runs={tmp_path / 'x'}"))


def test_run_json_records_what_bit_exact_reproduction_depends_on(compose_config, tmp_path):
    hw = run(compose_config(*FAST, "epochs=1", f"paths.runs={tmp_path}"))["hardware"]
    assert hw["torch_threads"] == torch.get_num_threads() and hw["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert hw["cpu_model"] and hw["torch_interop_threads"] >= 1


def test_trainer_threads_pins_the_threads_a_run_trains_and_records_with(compose_config, tmp_path):
    """Results are bit-identical only at the same thread count: trainer.threads fixes it, run.json says it."""
    before = torch.get_num_threads()
    try:
        cfg = compose_config(*FAST, "epochs=1", "trainer.threads=1", f"paths.runs={tmp_path}")
        first = run(cfg)
        assert first["hardware"]["torch_threads"] == 1 and torch.get_num_threads() == 1
        again = run(compose_config(*FAST, "epochs=1", "trainer.threads=1", f"paths.runs={tmp_path / 'again'}"))
        assert [m["val_loss"] for m in again["metrics"]] == [m["val_loss"] for m in first["metrics"]]
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------
# Sources and inits
# ---------------------------------------------------------------------------------------------------------


def test_dpiat_init_trains_the_source_once_and_shares_it(compose_config, tmp_path, capsys):
    common = ["experiment=smoke", "data.train_subset=256", "epochs=1", f"paths.runs={tmp_path}"]
    first = run(compose_config(*common, "seed=0"))
    out = capsys.readouterr().out
    assert "source test_resnet seed 0: starting" in out
    source_dir = tmp_path / "smoke" / "sources" / "test_resnet" / "seed0"
    source_run = read_run(source_dir)
    assert (source_run["pair"], source_run["init"], source_run["status"]) == ("sources", "random", "finished")
    assert (source_dir / "weights.safetensors").exists()
    assert first["source_weights"]["weights"] == "train"
    assert first["source_weights"]["best_epoch"] == 1
    assert first["init_report"]["method"] == "dpiat" and first["init_report"]["n_matched"] > 0
    second = run(compose_config(*common, "seed=1"))
    out = capsys.readouterr().out
    assert "source test_resnet seed 0: already finished" in out and "source test_resnet seed 0: starting" not in out
    assert read_run(source_dir)["segments"] == 1
    assert second["status"] == "finished" and second["source_weights"] == first["source_weights"]
    third = run(compose_config(*common, "seed=2", "source.epochs=2"))  # a longer source: trained on
    source_run = read_run(source_dir)
    assert source_run["segments"] == 2 and len(source_run["metrics"]) == 2
    best = min(source_run["metrics"], key=lambda m: m["val_loss"])["epoch"]
    assert third["source_weights"]["best_epoch"] == best
    assert json.loads((source_dir / "weights.json").read_text())["epoch"] == best
    shipped = dpiat.read_state_dict(source_dir / "weights.safetensors")
    in_ckpt = dpiat.read_state_dict(source_dir / "checkpoints" / "best.ckpt", key="state_dict")
    assert all(torch.equal(v, in_ckpt[f"model.{k}"]) for k, v in shipped.items())


@pytest.mark.slow
def test_concurrent_runs_train_the_shared_source_once(run_cli, tmp_path):
    args = ["experiment=smoke", "data.train_subset=256", "epochs=1", f"paths.runs={tmp_path}"]
    procs = [subprocess.Popen([sys.executable, str(REPO / "bench" / "run.py"), *args, f"seed={s}"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for s in (0, 1)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    joined = "\n".join(outs)
    assert joined.count("source test_resnet seed 0: starting") == 1
    assert joined.count("source test_resnet seed 0: already finished") == 1
    assert read_run(tmp_path / "smoke" / "sources" / "test_resnet" / "seed0")["segments"] == 1


def test_source_weights_from_a_file_and_a_file_that_does_not_fit(compose_config, tmp_path):
    good = dpiat.create_model("test_resnet", num_classes=10, in_chans=1)
    dpiat.save_weights(good, tmp_path / "good.safetensors")
    ok = run(compose_config(*FAST, "init=dpiat", "epochs=1", f"source.weights={tmp_path / 'good.safetensors'}",
                            f"paths.runs={tmp_path / 'ok'}"))
    assert ok["source_weights"]["weights"] == "file" and ok["status"] == "finished"

    dpiat.save_weights(dpiat.create_model("test_resnet", num_classes=100, in_chans=1), tmp_path / "bad.safetensors")
    cfg = compose_config(*FAST, "init=dpiat", f"source.weights={tmp_path / 'bad.safetensors'}",
                         f"paths.runs={tmp_path / 'bad'}")
    with pytest.raises(WeightsError, match=r"(?s)do not fit.*wrongly shaped.*source.num_classes"):
        run(cfg)
    failed = read_run(run_dir(cfg))
    assert failed["status"] == "failed" and "do not fit" in failed["failure_reason"]
    # A run that failed before any result may be started again in the same folder with the mistake fixed.
    fixed = run(compose_config(*FAST, "init=dpiat", f"source.weights={tmp_path / 'good.safetensors'}",
                               f"paths.runs={tmp_path / 'bad'}"))
    assert fixed["status"] == "finished" and fixed["segments"] == 2


def test_a_target_alone_takes_source_free_inits_only(compose_config, tmp_path):
    cfg = compose_config(*FAST, "pair=tinynet_e", f"paths.runs={tmp_path}")
    assert cfg.pair.source is None and run_dir(cfg).parts[-3] == "tinynet_e"
    with pytest.raises(ConfigError, match="needs a source network, and pair 'tinynet_e' has none"):
        run(compose_config(*FAST, "pair=tinynet_e", "init=dpiat", f"paths.runs={tmp_path}"))


def test_untrained_source_control(compose_config, tmp_path):
    record = run(compose_config(*FAST, "init=dpiat", "epochs=1", "source.weights=none", f"paths.runs={tmp_path}"))
    assert record["source_weights"]["weights"] == "none" and record["init_report"]["n_matched"] > 0
    assert not (tmp_path / "smoke" / "sources").exists()  # nothing trained


def test_timm_weights_without_internet_say_what_to_use_instead(run_cli, tmp_path):
    empty = tmp_path / "hub"  # a local Hugging Face cache without the weights (tests/test_pretrained_sources.py
    empty.mkdir()            # covers the cached case)
    proc = run_cli(*FAST, "init=dpiat", "epochs=1", "source.weights=timm", f"paths.runs={tmp_path}",
                   env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(empty)}, timeout=180)
    record = read_run(tmp_path / "smoke" / "test_resnet_to_effnet" / "dpiat" / "seed0")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot load the pretrained weights of 'test_resnet.r160_in1k'" in lines[0]
    assert "set source.weights=<path of a weights file>" in lines[0] and record["status"] == "failed"


def test_init_options_reach_the_init_method(compose_config, tmp_path):
    with pytest.raises(DpiatError, match="takes no options"):
        run(compose_config(*FAST, "+init.bogus=1", f"paths.runs={tmp_path}"))


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def nan_init(monkeypatch):
    """An init method that poisons the target with NaN: the loss is NaN at the first step."""
    from dpiat import inits

    def poison(target, source=None, **options):
        with torch.no_grad():
            for p in target.parameters():
                p.fill_(float("nan"))
        return {"method": "poison"}

    monkeypatch.setitem(inits._REGISTRY, "poison", inits.InitMethod("poison", poison, False, "test only"))


def test_nan_loss_stops_the_run_and_marks_it_failed(compose_config, tmp_path, nan_init):
    cfg = compose_config(*FAST, "init.name=poison", f"paths.runs={tmp_path}")
    with pytest.raises(DivergedError, match=r"training loss became nan at epoch 1, step 1"):
        run(cfg)
    failed = read_run(run_dir(cfg))
    assert failed["status"] == "failed" and failed["failure_kind"] == "diverged"
    assert "epoch 1, step 1" in failed["failure_reason"] and failed["metrics"] == []
    assert not (run_dir(cfg) / "checkpoints" / "last.ckpt").exists()  # no poisoned checkpoint to resume from
    with pytest.raises(AlreadyFailed, match="would fail again"):
        run(cfg)


def test_exploding_loss_stops_the_run(compose_config, tmp_path):
    cfg = compose_config(*FAST, "trainer.max_loss=0.5", f"paths.runs={tmp_path}")
    with pytest.raises(DivergedError, match=r"exploded to .* \(> trainer.max_loss=0.5\) at epoch 1, step 1"):
        run(cfg)
    assert read_run(run_dir(cfg))["status"] == "failed"


def test_missing_imagenet_fails_with_the_layout_before_any_record_is_written(compose_config, tmp_path):
    cfg = compose_config(*FAST, "data=imagenet", f"data.root={tmp_path / 'imagenet'}", f"paths.runs={tmp_path}")
    with pytest.raises(DataError, match=r"ImageFolder layout .*/train/<class>/\*\.JPEG"):
        run(cfg)
    assert not (run_dir(cfg) / "run.json").exists()  # a wrong path is an error, not a failed run to list
    with pytest.raises(DataError, match=r"data.root is required for imagenet"):
        run(compose_config(*FAST, "data=imagenet", f"paths.runs={tmp_path}"))


def test_a_setting_without_a_value_is_named(compose_config, tmp_path):
    with pytest.raises(ConfigError, match=r"no value: init.checkpoint\. .* init.checkpoint=\.\.\."):
        run(compose_config(*FAST, "init=ghn", f"paths.runs={tmp_path}"))
    assert not (tmp_path / "smoke").exists()  # refused before anything was written


def test_a_different_config_in_a_finished_folder_changes_nothing(compose_config, tmp_path):
    cfg = compose_config(*FAST, f"paths.runs={tmp_path}")
    run(cfg)
    before = (run_dir(cfg) / "run.json").read_bytes()
    with pytest.raises(RunFolderError, match=r"another configuration \(optim.lr: 0.004 -> 0.001\)"):
        run(compose_config(*FAST, "optim.lr=0.001", f"paths.runs={tmp_path}"))
    assert (run_dir(cfg) / "run.json").read_bytes() == before


def test_cli_error_is_one_line_and_exit_status_2(run_main, tmp_path):
    code, _, err = run_main("bench/run.py", *FAST, "data=imagenet", f"data.root={tmp_path / 'none'}",
                            f"paths.runs={tmp_path}")
    assert code == 2  # refused before Hydra made the run folder (bench/refusal.py)
    assert "error: imagenet folder" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------
# Other code paths: files on disk (the ImageNet path), W&B, DDP
# ---------------------------------------------------------------------------------------------------------


def test_mixed_precision_and_channels_last_switches(compose_config, tmp_path):
    # The GPU settings run on a CPU too (bf16 autocast): the code path, not the speed, is under test here.
    record = run(compose_config(*FAST, "epochs=1", "trainer.precision=bf16-mixed", "trainer.channels_last=true",
                                f"paths.runs={tmp_path}"))
    assert record["status"] == "finished" and 0 <= record["final_val_top1"] <= 1


def test_run_on_a_generated_image_folder(compose_config, tmp_path):
    record = run(compose_config(*FAST, "data=synthetic", f"data.root={tmp_path / 'syn'}", "data.batch_size=16",
                                "data.train_subset=null", "epochs=1", f"paths.runs={tmp_path}"))
    assert record["status"] == "finished" and record["metrics"][0]["val_samples"] == 32
    assert record["metrics"][0]["images_seen"] == 96


@pytest.mark.slow
def test_wandb_offline_with_a_run_id_that_survives_resume(compose_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    first = run(compose_config(*FAST, "logger=wandb", "epochs=1", f"paths.runs={tmp_path}"))
    folder = run_dir(compose_config(*FAST, f"paths.runs={tmp_path}"))
    offline = list((folder / "wandb").glob("offline-run-*"))
    assert first["wandb_run_id"] and offline and all(p.name.endswith(first["wandb_run_id"]) for p in offline)
    second = run(compose_config(*FAST, "logger=wandb", "epochs=2", f"paths.runs={tmp_path}"))
    assert second["wandb_run_id"] == first["wandb_run_id"] and len(second["metrics"]) == 2
    # A source trained in the same process logs to a W&B run of its own, not into the target's.
    target = run(compose_config(*FAST, "init=dpiat", "logger=wandb", "epochs=1", f"paths.runs={tmp_path / 'd'}"))
    source_dir = tmp_path / "d" / "smoke" / "sources" / "test_resnet" / "seed0"
    target_dir = run_dir(compose_config(*FAST, "init=dpiat", f"paths.runs={tmp_path / 'd'}"))
    source = read_run(source_dir)
    assert source["wandb_run_id"] != target["wandb_run_id"]
    for record, folder in ((source, source_dir), (target, target_dir)):
        ids = [p.name.rsplit("-", 1)[1] for p in (folder / "wandb").glob("offline-run-*")]
        assert ids == [record["wandb_run_id"]]


@pytest.mark.slow
def test_two_process_ddp_reduces_validation_and_only_rank0_writes(run_cli, tmp_path):
    args = [*FAST, "epochs=1", "trainer.devices=2", "trainer.strategy=ddp", f"paths.runs={tmp_path}"]
    proc = run_cli(*args, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = tmp_path / "smoke" / "test_resnet_to_effnet" / "random" / "seed0"
    record = read_run(folder)
    assert record["status"] == "finished" and record["hardware"]["n_devices"] == 2
    (m,) = record["metrics"]
    assert m["val_samples"] == 359  # both halves of the validation set, reduced across the 2 processes
    assert m["images_seen"] == 256
    # The reduced accuracy equals a single-process evaluation of the saved model on the whole set.
    from bench.config import data_config
    from bench.data.module import build_datamodule

    model = dpiat.create_model("test_efficientnet", num_classes=10, in_chans=1)
    dpiat.load_weights(model, folder / "checkpoints" / "last.ckpt", key="state_dict")
    model.eval()
    dm = build_datamodule(data_config("digits"), seed=0)
    dm.setup()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in dm.val_dataloader())
    assert abs(correct / 359 - m["val_top1"]) < 1e-6
    # Process 1 leaves nothing but Hydra's log of its own console output.
    assert sorted(p.name for p in folder.iterdir()) == [".hydra", "checkpoints", "csv", "run.json", "run.log",
                                                        "train_ddp_process_1.log"]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.slow
def test_ddp_divergence_stops_every_process_and_rank0_records_it(run_cli, tmp_path):
    args = [*FAST, "epochs=1", "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_loss=0.5",
            f"paths.runs={tmp_path}"]
    proc = run_cli(*args, timeout=400)
    assert proc.returncode == 1 and "error: training loss exploded" in proc.stderr
    record = read_run(tmp_path / "smoke" / "test_resnet_to_effnet" / "random" / "seed0")
    assert record["status"] == "failed" and "at epoch 1, step 1" in record["failure_reason"]

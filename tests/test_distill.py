"""Knowledge distillation in the harness (bench/running/teacher.py, ``distill=logits``) and the reuse grid's plan:
the loss as defined, the teacher as the pair's source outside everything trained, and the harness's guarantees
(bit-identical resume after a kill, 2-process DDP, the sweep's stages) kept for distilled runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.running.record import read_run
from bench.running.target import run
from bench.running.teacher import distillation_loss, state_digest

REPO = Path(__file__).resolve().parents[1]
FAST = ["experiment=smoke", "data.train_subset=256", "data.batch_size=64", "epochs=2", "trainer.threads=1"]


def curve(record: dict) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "wall_seconds"} for m in record["metrics"]]


def folder_of(runs: Path, init: str = "random") -> Path:
    return runs / "smoke" / "test_resnet_to_effnet" / init / "seed0"


def test_the_loss_is_the_defined_mixture_of_cross_entropy_and_tempered_kl():
    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    a, T = 0.9, 4.0
    p_t = torch.softmax(t / T, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, 1))).sum(1).mean()  # KL(p_teacher || p_student), per sample
    want = (1 - a) * F.cross_entropy(s, y) + a * T * T * kl
    assert torch.allclose(distillation_loss(s, t, y, alpha=a, temperature=T), want, atol=1e-6)
    assert torch.equal(distillation_loss(s, t, y, alpha=0.0, temperature=T), F.cross_entropy(s, y))


@pytest.mark.parametrize("override, message", [
    ("distill.kind=logit", "distill.kind='logit' is not a kind of distillation; did you mean logits?"),
    ("distill.alpha=1.5", "distill.alpha must be between 0 and 1"),
    ("distill.temperature=0", "distill.temperature must be positive"),
])
def test_bad_distillation_settings_are_one_line_errors(compose_config, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        run(compose_config(*FAST, "distill=logits", override, f"paths.runs={tmp_path}"))


def test_a_pair_without_a_source_cannot_be_distilled(compose_config, tmp_path):
    with pytest.raises(ConfigError, match="distill.kind=logits needs a source network"):
        run(compose_config(*FAST, "pair=tinynet_e", "init=random", "distill=logits", f"paths.runs={tmp_path}"))


def test_a_distilled_run_records_its_teacher_and_keeps_it_out_of_checkpoints(compose_config, tmp_path):
    record = run(compose_config(*FAST, "init=random", "distill=logits", f"paths.runs={tmp_path}"))
    assert record["status"] == "finished" and record["config"]["distill"]["kind"] == "logits"
    d = record["distill"]
    assert (d["kind"], d["alpha"], d["temperature"], d["teacher"]) == ("logits", 0.9, 4.0, "test_resnet")
    import dpiat

    teacher = dpiat.create_model("test_resnet", num_classes=10, in_chans=1)
    dpiat.load_weights(teacher, d["teacher_weights"]["path"])
    assert d["teacher_sha256"] == state_digest(teacher)  # the trained source's weights, as loaded
    ckpt = torch.load(folder_of(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert all(k.startswith("model.") for k in ckpt["state_dict"])  # the student only
    assert not any("teacher" in k for k in ckpt["state_dict"])
    assert record["init_seconds"] >= 0 and record["init_metrics"]["seconds_bn_recalibration"] > 0


def test_alpha_zero_trains_bit_identically_to_no_distillation(compose_config, tmp_path):
    # the teacher's forward draws no random numbers and changes no state the student sees: with the KL term
    # weighted 0 the run is the undistilled one, bit for bit
    plain = run(compose_config(*FAST, "init=dpiat", f"paths.runs={tmp_path / 'plain'}"))
    zero = run(compose_config(*FAST, "init=dpiat", "distill=logits", "distill.alpha=0",
                              f"paths.runs={tmp_path / 'zero'}"))
    assert curve(zero) == curve(plain)
    kd = run(compose_config(*FAST, "init=dpiat", "distill=logits", f"paths.runs={tmp_path / 'kd'}"))
    assert curve(kd) != curve(plain)


@pytest.mark.slow
def test_a_killed_distilled_run_resumes_to_exactly_the_uninterrupted_metrics(compose_config, run_cli, tmp_path):
    args = ["experiment=smoke", "init=random", "distill=logits", "epochs=2", "data.batch_size=32",
            "trainer.enable_progress_bar=false", "trainer.threads=1"]
    reference = run(compose_config(*args, f"paths.runs={tmp_path / 'ref'}"))
    folder = folder_of(tmp_path / "killed")
    command = [sys.executable, str(REPO / "bench" / "run.py"), *args, f"paths.runs={tmp_path / 'killed'}"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            if (folder / "checkpoints" / "last.ckpt").exists() and (folder / "run.json").exists() \
                    and len(read_run(folder)["metrics"]) == 1:
                time.sleep(0.3)
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert len(read_run(folder)["metrics"]) == 1
    resumed = run_cli(*args, f"paths.runs={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr
    final = read_run(folder)
    assert final["status"] == "finished" and final["segments"] == 2
    assert curve(final) == curve(reference)
    assert final["distill"]["teacher_sha256"] == reference["distill"]["teacher_sha256"]


@pytest.mark.slow
def test_two_process_ddp_distils_with_a_teacher_in_each_process(run_cli, tmp_path):
    proc = run_cli(*FAST, "init=random", "distill=logits", "epochs=1", "trainer.devices=2", "trainer.strategy=ddp",
                   f"paths.runs={tmp_path}", timeout=500)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = read_run(folder_of(tmp_path))
    assert record["status"] == "finished" and record["hardware"]["n_devices"] == 2
    assert record["distill"]["kind"] == "logits" and record["metrics"][0]["images_seen"] == 256


# ---------------------------------------------------------------------------------------------------------
# The reuse grid's plan
# ---------------------------------------------------------------------------------------------------------


def test_the_reuse_plan_has_ten_arms_per_seed_and_distilled_runs_wait_for_their_teacher(tmp_path):
    from bench.planning.plan import plan_sweep

    plan = plan_sweep(["experiment=reuse", f"paths.runs={tmp_path}", "grid.resume_committed=false"])
    lines = [t.line for t in plan.runs]
    assert len(lines) == 50
    assert [int(x.split("seed=")[1].split()[0]) for x in lines] == [k for k in range(5) for _ in range(10)]

    def arm(line: str) -> tuple[str, str, str]:
        get = lambda key: line.split(f" {key}=")[1].split()[0]  # noqa: E731
        return get("pair"), get("init"), get("recipe")

    arms = {arm(x) for x in lines}
    d, r = "tinynet_d_to_e", "resnet10t_to_tinynet_e"
    assert len(arms) == 10 and {(d, "weight_selection", "paper"), (d, "dpiat", "finetune"), (d, "random", "kd"),
                                (d, "dpiat", "kd"), (r, "random", "kd"), (r, "dpiat", "kd"), (r, "dpiat", "paper"),
                                (d, "dpiat", "paper")} <= arms
    assert sum(1 for p, i, _ in arms if i in ("random", "ghn") and _ == "paper") == 2  # shared by the pairs
    for t in plan.runs:
        pair, init, recipe = arm(t.line)
        kinds = sorted(n.kind for n in t.needs)
        needs_source = init in ("dpiat", "weight_selection") or recipe == "kd"
        assert ("source" in kinds) == needs_source, t.line
        assert ("prerequisite" in kinds) == (init == "ghn"), t.line


def test_a_recipe_scope_list_is_the_union_of_its_scopes():
    from bench.config import check_recipes
    from bench.layout import outside_recipe_scope

    grid = {"recipes": {"paper": []}, "recipe_scope": {"paper": [{"inits": ["random"]},
                                                                  {"pairs": ["a_to_t"], "inits": ["wsel"]}]}}
    check_recipes(grid)
    assert outside_recipe_scope(grid, "b_to_t", "random", "paper") == []
    assert outside_recipe_scope(grid, "a_to_t", "wsel", "paper") == []
    assert outside_recipe_scope(grid, "b_to_t", "wsel", "paper") == [
        "b_to_t / wsel is in none of the scopes of recipe paper (grid.recipe_scope)"]
    with pytest.raises(ConfigError, match="a scope names pairs and/or inits only"):
        check_recipes({"recipes": {"paper": []}, "recipe_scope": {"paper": [{"seeds": [0]}]}})
    with pytest.raises(ConfigError, match="optim.<key>=value and distill.<key>=value settings only"):
        check_recipes({"recipes": {"x": ["trainer.threads=2"]}})
    with pytest.raises(ConfigError, match="distill has no key 'alfa'; did you mean distill.alpha"):
        check_recipes({"recipes": {"x": ["distill.alfa=0.5"]}})


def test_a_grid_keeps_its_sources_and_ghn_in_the_committed_copy(tmp_path):
    from bench.planning.committed import GHN_FILES, SOURCE_FILES, adopt_folder, publish_folder

    runs, committed = tmp_path / "runs" / "reuse", tmp_path / "results" / "reuse" / "runs"
    source = runs / "sources" / "tinynet_d" / "seed0"
    source.mkdir(parents=True)
    (source / "weights.safetensors").write_bytes(b"\x00\x01weights")
    (source / "weights.json").write_text("{}")
    (source / "run.json").write_text(json.dumps({"status": "running"}))
    assert not publish_folder(source, runs, committed, SOURCE_FILES)  # not finished: not published
    (source / "run.json").write_text(json.dumps({"status": "finished"}))
    assert publish_folder(source, runs, committed, SOURCE_FILES)
    assert (committed / "sources/tinynet_d/seed0/weights.safetensors").read_bytes() == b"\x00\x01weights"
    fresh = tmp_path / "fresh" / "reuse"  # another machine: no runs folder
    assert adopt_folder(fresh / "sources" / "tinynet_d" / "seed0", fresh, committed, SOURCE_FILES)
    assert (fresh / "sources/tinynet_d/seed0/weights.safetensors").read_bytes() == b"\x00\x01weights"
    started = fresh / "sources" / "resnet10t" / "seed0"  # a source half trained here is never replaced
    (committed / "sources/resnet10t/seed0").mkdir(parents=True)
    for name in ("weights.safetensors", "weights.json"):
        (committed / "sources/resnet10t/seed0" / name).write_text("x")
    (committed / "sources/resnet10t/seed0/run.json").write_text(json.dumps({"status": "finished"}))
    started.mkdir(parents=True)
    (started / "run.json").write_text(json.dumps({"status": "running"}))
    assert not adopt_folder(started, fresh, committed, SOURCE_FILES)
    ghn = runs / "ghn"
    ghn.mkdir()
    (ghn / "ghn.pt").write_bytes(b"ghn")
    (ghn / "train_log.json").write_text(json.dumps({"status": "finished"}))
    assert publish_folder(ghn, runs, committed, GHN_FILES)
    assert adopt_folder(fresh / "ghn", fresh, committed, GHN_FILES) and (fresh / "ghn/ghn.pt").read_bytes() == b"ghn"

"""bench/measure/gpu_check.py --smoke: the GPU check's code path on a CPU (tiny model, 32 px), and its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_writes_the_json(tmp_path):
    script = REPO / "bench" / "measure" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"device", "date", "throughput", "loader_img_s_per_worker"} <= set(result)
    (row,) = result["throughput"]
    assert set(row) >= {"model", "resolution", "batch", "precision", "harness_img_s", "bare_img_s"}
    assert (row["model"], row["resolution"], row["batch"]) == ("tinynet_e", 32, 16)
    assert row["harness_img_s"] > 0 and row["bare_img_s"] > 0
    assert set(result["loader_img_s_per_worker"]) == {"pil", "torchvision"}
    assert result["smoke_experiment"]["returncode"] == 0 and result["smoke_experiment"]["status"] == "finished"
    assert "epochs=1 data.train_subset=128" in result["smoke_experiment"]["command"]  # --smoke: the cut experiment


def test_compile_keeps_the_checkpoint_keys_and_gpu_trainers_tune_cudnn(compose_config):
    """trainer.compile wraps the network outside the module tree, so checkpoints keep the plain keys."""
    import dpiat
    from bench.config import OptimConfig, check_config
    from bench.running.lit import Classifier

    model = dpiat.create_model("test_efficientnet", num_classes=10, in_chans=1)
    module = Classifier(model, num_classes=10, optim=OptimConfig(), epochs=1, seed=0, compile=True)
    keys = set(module.state_dict())
    module.setup("fit")
    assert module._compiled and set(module.state_dict()) == keys
    for trainer in ("gpu", "ddp"):
        cfg = compose_config(f"trainer={trainer}")
        assert cfg.trainer.cudnn_benchmark is True and cfg.trainer.compile is False
    cfg = compose_config("experiment=paper_imagenet", "data.root=/d")
    assert (cfg.data.num_workers, cfg.data.decoder, cfg.trainer.precision) == ("auto", "torchvision", "bf16-mixed")
    check_config(cfg)
    cpu = compose_config("experiment=smoke")
    assert (cpu.trainer.compile, cpu.trainer.cudnn_benchmark, cpu.data.num_workers, cpu.data.decoder) == (
        False, None, 0, "pil")

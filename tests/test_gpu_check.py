"""bench/gpu_check.py --smoke: the GPU check's code path on a CPU (tiny model, 32 px), and the JSON it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_writes_the_json(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--smoke", "--out", str(tmp_path)],
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

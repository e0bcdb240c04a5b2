"""Shared fixtures: the real Hydra configs composed in-process, and the real CLI run as a subprocess.

    def test_something(compose_config, run_cli, tmp_path):
        cfg = compose_config("experiment=smoke", f"paths.runs={tmp_path}")
        proc = run_cli("experiment=smoke", f"paths.runs={tmp_path}")
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def compose_config():
    """``compose_config(*overrides, hydra=False)``: the composed ``conf/config.yaml``, as bench/run.py sees it."""
    from hydra import compose, initialize_config_dir

    from bench.config import CONF_DIR

    def _compose(*overrides: str, hydra: bool = False):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=hydra)

    return _compose


@pytest.fixture
def run_cli():
    """``run_cli(*overrides, timeout=300)``: ``python bench/run.py ...`` from the repo root; a CompletedProcess."""

    def _run(*overrides: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), *overrides], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})

    return _run

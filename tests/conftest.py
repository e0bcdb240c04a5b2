"""Shared fixtures: the real Hydra configs composed in-process, and the real CLI run as a subprocess (or, for a
command line that stops before any work, in this process).

    def test_something(compose_config, run_cli, run_main, tmp_path):
        cfg = compose_config("experiment=smoke", f"paths.runs={tmp_path}")
        proc = run_cli("experiment=smoke", f"paths.runs={tmp_path}")
        code, out, err = run_main("bench/run.py", "init=dpiatt")
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """In each -n worker (pyproject.toml), torch's own computations use one thread, so that the two workers share
    the cores instead of each spreading over both. Only this process: an environment variable such as
    OMP_NUM_THREADS would also reach every command a test starts (nproc in slurm/local-cluster/up.sh honours it)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


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


@pytest.fixture
def run_main(monkeypatch, capsys):
    """``run_main(script, *argv)``: ``python <script> <argv>`` in this process, for a command line that stops before
    any work (a refusal, --help): its (exit status, stdout, stderr). A new Python would spend seconds importing torch
    and Lightning first; one that does train belongs in ``run_cli``."""

    def _run(script: str, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", [str(REPO / script), *argv])
        monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # bench/startup.py replaces it: restored after
        monkeypatch.chdir(REPO)
        with pytest.raises(SystemExit) as stopped:
            runpy.run_path(str(REPO / script), run_name="__main__")
        out = capsys.readouterr()
        return stopped.value.code, out.out, out.err

    return _run

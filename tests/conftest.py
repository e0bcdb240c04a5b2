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
    """In each -n worker (pyproject.toml), torch uses one thread, and so does every command a test starts
    (OMP_NUM_THREADS=1 in the worker's environment): the workers and what they start share the two cores instead of
    each spreading over both, which on a 2-core machine only adds threads waiting for each other. The local SLURM
    cluster still gets the machine's cores (slurm/local-cluster/up.sh asks nproc without OMP_NUM_THREADS) and its
    jobs their allocation's (slurm/array.sbatch sets OMP_NUM_THREADS from SLURM_CPUS_PER_TASK)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


# The files that take longest, longest first: with `--dist loadfile` a file runs whole on one worker, and a long file
# handed out last keeps one worker busy after the other has finished. Handed out longest first, the many short files
# fill in at the end. Measured on the idle 2-core EPYC VM (seconds of one worker, 2026-12-07); the order matters, not
# the numbers, and a file not listed runs after these in pytest's order.
LONGEST_FIRST = ["test_slurm.py",  # 138 s
                 "test_harness.py",  # 113
                 "test_local_jobs.py",  # 69 before its stop grace was honoured, about 40 after
                 "test_doc_outputs.py",  # 62
                 "test_distill.py",  # 48
                 "test_sweep.py",  # 47
                 "test_horizon.py",  # 34
                 "test_pinned_setting.py",  # 33
                 "test_download_errors.py", "test_gpu_check.py", "test_plots.py", "test_startup_interrupt.py",
                 "test_sweep_needs.py", "test_recipe.py", "test_proxy.py", "test_pretrained_sources.py",
                 "test_adhoc.py", "test_standalone.py"]  # 26 s down to 11


def pytest_collection_modifyitems(session, config, items):
    """Runs the files of LONGEST_FIRST first, in that order; within a file, the tests keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep pytest's order


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

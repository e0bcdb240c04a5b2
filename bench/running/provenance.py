"""Where and with what a run segment ran: the git checkout, package versions, hardware, SLURM ids.

:func:`collect` gives run.json's provenance keys, rewritten at every start and resume (a resumed run
records the machine and code of its last segment)::

    from bench.running.provenance import collect
    collect(cfg.trainer)   # {"git_commit": ..., "git_dirty": ..., "versions": ..., "hardware": ..., "slurm": ...}
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from bench.running.host import cpu_model
from bench.running.lit import on_gpu

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_state(root: Path = REPO_ROOT) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from; (None, None) outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=20, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=60, check=True).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def versions() -> dict:
    import hydra
    import lightning
    import timm
    import torchmetrics
    import torchvision

    import dpiat

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "lightning": lightning.__version__, "torchmetrics": torchmetrics.__version__,
            "hydra": hydra.__version__, "dpiat": dpiat.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}


def hardware(trainer_cfg: Any) -> dict:
    """Where the run ran. On a CPU, results are bit-identical across runs only with the same torch version,
    thread count and CPU kernels (``cpu_capability``: the vector instruction set torch dispatched to), which
    is why they are recorded (docs/reproducing.md)."""
    gpu = on_gpu(trainer_cfg)
    return {"device": torch.cuda.get_device_name(0) if gpu and torch.cuda.is_available() else "cpu",
            "n_devices": int(trainer_cfg.devices) * int(trainer_cfg.num_nodes),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "hostname": platform.node(),
            "cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_interop_threads": torch.get_num_interop_threads()}


def slurm_ids() -> dict | None:
    if "SLURM_JOB_ID" not in os.environ:
        return None
    env = os.environ.get
    return {"job_id": env("SLURM_JOB_ID"), "array_job_id": env("SLURM_ARRAY_JOB_ID"),
            "array_task_id": env("SLURM_ARRAY_TASK_ID"), "restart_count": int(env("SLURM_RESTART_COUNT", "0"))}


def collect(trainer_cfg: Any) -> dict:
    """run.json's provenance keys, in its order."""
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "versions": versions(), "hardware": hardware(trainer_cfg),
            "slurm": slurm_ids()}

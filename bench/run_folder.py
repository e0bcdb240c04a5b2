"""The run folder: its identity, resume point, run.json bookkeeping and provenance.

``results/runs/<experiment>/<pair>/<init>/seed<k>/`` holds everything about one run::

    run.json                 status, config, per-epoch metrics, provenance (schema: bench/runfile.py)
    checkpoints/last.ckpt    end of the newest epoch (the resume point)
    checkpoints/best.ckpt    best epoch (targets: highest val_top1; sources: lowest val_loss)
    hpc_ckpt_*.ckpt          written by Lightning when SLURM preempts the job (mid-epoch: not resumed from)
    csv/segment<k>/metrics.csv  Lightning's CSV log (per step and per epoch), one per start or resume
    .hydra/                  Hydra's record of the command line and composed config

Only process 0 writes; every process reads, so that all of them take the same decisions.

    >>> folder = RunFolder("results/runs/smoke/test_resnet_to_effnet/random/seed0")
    >>> folder.read() is None or folder.read()["status"] in ("running", "finished", "failed")
    True
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only

from bench.runfile import RUN_FILE, atomic_write_json, read_run
from dpiat.errors import DpiatError

REPO_ROOT = Path(__file__).resolve().parent.parent

# Config keys that may change between the segments of one run without changing what it computes.
RESUMABLE_CHANGES = ("epochs", "paths", "logger", "grid", "data.root", "data.num_workers", "data.download",
                     "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.enable_progress_bar",
                     "trainer.log_every_n_steps")


def global_rank() -> int:
    """This process's rank as Lightning sees it (from RANK / LOCAL_RANK / SLURM_PROCID); 0 when alone."""
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.run_json = self.path / RUN_FILE
        self.checkpoints = self.path / "checkpoints"

    def read(self) -> dict | None:
        if not self.run_json.exists():
            return None
        try:
            return read_run(self.run_json)
        except ValueError as e:
            raise DpiatError(f"{e}. Move the file away (or delete the run folder) to start this run afresh.") from None

    def write(self, run: dict) -> None:
        run["updated"] = now()
        atomic_write_json(self.run_json, run)

    def resume_checkpoint(self) -> Path | None:
        """``checkpoints/last.ckpt`` (saved at the end of an epoch), or None.

        Not the ``hpc_ckpt_*.ckpt`` that Lightning writes on SLURM's SIGUSR1: it is taken mid-epoch (even
        mid-step), and Lightning cannot resume it exactly with these data loaders (it warns so). Measured on
        the local SLURM cluster: a smoke run requeued by SIGUSR1 and resumed from its hpc checkpoint ended at
        top-1 0.8663, the same run uninterrupted at 0.8802. Resumed from last.ckpt, the requeued run repeats
        the epochs after that checkpoint and ends bit-identical (tests/test_slurm.py). So a SLURM time limit
        must exceed one epoch plus start-up, or the run never gets past that epoch.
        """
        last = self.checkpoints / "last.ckpt"
        return last if last.exists() else None


# ---------------------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------------------


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
    from bench.lit import on_gpu

    gpu = on_gpu(trainer_cfg)
    return {"device": torch.cuda.get_device_name(0) if gpu and torch.cuda.is_available() else "cpu",
            "n_devices": int(trainer_cfg.devices) * int(trainer_cfg.num_nodes),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "hostname": platform.node()}


def slurm_ids() -> dict | None:
    if "SLURM_JOB_ID" not in os.environ:
        return None
    env = os.environ.get
    return {"job_id": env("SLURM_JOB_ID"), "array_job_id": env("SLURM_ARRAY_JOB_ID"),
            "array_task_id": env("SLURM_ARRAY_TASK_ID"), "restart_count": int(env("SLURM_RESTART_COUNT", "0"))}


# ---------------------------------------------------------------------------------------------------------
# Decisions on an existing run
# ---------------------------------------------------------------------------------------------------------


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    """Keys whose values differ between two resolved configs, ignoring the RESUMABLE_CHANGES."""
    a, b = flatten(old), flatten(new)

    def ignored(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES)

    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if not ignored(k) and a.get(k) != b.get(k)]


def check_same_run(existing: dict, config: dict, folder: RunFolder) -> None:
    diffs = config_differences(existing.get("config") or {}, config)
    if diffs:
        raise DpiatError(
            f"{folder.path} already holds a run with another configuration ({'; '.join(diffs[:6])}"
            f"{' ...' if len(diffs) > 6 else ''}). A run folder is one run: choose another experiment_name "
            f"(or paths.runs) for this configuration, or delete the folder to start it again.")


def is_complete(run: dict, epochs: int) -> bool:
    return run.get("status") == "finished" and len(run.get("metrics") or []) >= epochs


# ---------------------------------------------------------------------------------------------------------
# The per-epoch recorder
# ---------------------------------------------------------------------------------------------------------


class EpochRecorder(pl.Callback):
    """Appends one metrics entry to run.json after every validation epoch, before the checkpoint is saved.

    Lightning runs checkpoint callbacks last, so an epoch's metrics are on disk before its ``last.ckpt``: a
    run killed in between recomputes that epoch on resume (deterministically) and replaces the entry.
    """

    def __init__(self, folder: RunFolder, run: dict, *, global_batch: int, write: bool):
        self.folder, self.run, self.global_batch, self.write = folder, run, global_batch, write
        self._t0 = 0.0
        self._wall_base = 0.0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        done = trainer.current_epoch  # epochs already trained (restored from a checkpoint)
        kept = [m for m in self.run["metrics"] if m["epoch"] <= done]
        self._wall_base = kept[-1]["wall_seconds"] if kept else 0.0
        self._t0 = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        m = trainer.callback_metrics
        epoch = trainer.current_epoch + 1
        entry = {"epoch": epoch, "val_top1": float(m["val_top1"]), "val_top5": float(m["val_top5"]),
                 "val_loss": float(m["val_loss"]), "train_loss": float(module.train_loss.compute()),
                 "images_seen": int(trainer.global_step * self.global_batch),
                 "val_samples": int(m["val_samples"]),
                 "wall_seconds": round(self._wall_base + time.perf_counter() - self._t0, 3)}
        metrics = [e for e in self.run["metrics"] if e["epoch"] < epoch] + [entry]
        self.run["metrics"] = metrics  # every process keeps the record: all of them decide from it
        self.run["best_val_top1"] = max(e["val_top1"] for e in metrics)
        if self.write:
            self.folder.write(self.run)
        if not all(map(_finite, (entry["val_loss"], entry["train_loss"]))):
            from bench.lit import DivergedError

            raise DivergedError(f"validation loss became {entry['val_loss']:g} (training loss "
                                f"{entry['train_loss']:g}) at epoch {epoch}")


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")

"""Known-harmless noise of Lightning and torch, silenced where it comes from; what a user must see stays.

Imported by :mod:`bench.running.lit` (before any Trainer is built). Each entry is a line that every run would
print and that says nothing about the run, or advice that does not apply to this harness:

* Lightning's device summary, "GPU available: ..., used: ...", "TPU available: ...": run.json
  records the hardware (``bench/running/provenance.py``), and the harness picks the accelerator from
  ``trainer.accelerator``. Kept: "GPU available but not used", a hint that can matter.
* "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]", once per process on a GPU.
* "`Trainer.fit` stopped: `max_epochs=N` reached.": the harness logs its own "finished" line.
* "Tip: ..." adverts for Lightning's cloud logger.
* "The `srun` command is available on your system but is not used": runs started by ``bench/sweep.py
  --submit`` run under ``srun`` (slurm/array.sbatch); one started by hand is a single process, or DDP that
  Lightning launches itself, so the hint is not about them.
* "The number of training batches (N) is smaller than the logging interval Trainer(log_every_n_steps=M)":
  only the per-step training loss of the CSV / W&B logs is affected; run.json's per-epoch metrics are not.
* "Checkpoint directory ... exists and is not empty": a resumed run writes into its own checkpoints/, on
  purpose.
* torch's "`isinstance(treespec, LeafSpec)` is deprecated" (FutureWarning), raised inside Lightning's own
  use of torch's pytree: nothing a user can change.

Errors, divergence, the harness's own lines and every other warning are untouched. The test suite filters
the same warnings in pyproject.toml (``[tool.pytest.ini_options] filterwarnings``), because pytest replaces
the process's warning filters around each test.
"""

from __future__ import annotations

import logging
import re
import warnings

# Lightning's info lines (logged through these loggers by rank_zero_info / rank_zero_warn) that are noise.
NOISE_LINES = re.compile(r"^(GPU available: |TPU available: |LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES|"
                         r"`Trainer\.fit` stopped: `max_epochs=|💡 Tip:|Tip:|"
                         r"Detected KeyboardInterrupt, attempting graceful shutdown)")  # the harness says it in words
LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
           "lightning.pytorch.accelerators.cuda")
# Warnings (message regexes, matched at the start of the message) that are noise.
NOISE_WARNINGS = (
    r"The `srun` command is available on your system but is not used",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"Checkpoint directory .* exists and is not empty",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


def _not_noise(record: logging.LogRecord) -> bool:
    return not NOISE_LINES.match(record.getMessage().lstrip())


def install() -> None:
    """Silence the lines above (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _not_noise not in logger.filters:
            logger.addFilter(_not_noise)
    for message in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


install()

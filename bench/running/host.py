"""The machine a run or a measurement is on, read without importing torch: the CPU's model name and the load
average, as run.json (bench/running/provenance.py) and the measure scripts (bench/measure/) record them."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(unknown: str = "unknown") -> str:
    """The CPU's model name as /proc/cpuinfo gives it (Linux), else what the platform module says, else
    ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or unknown


def load() -> str:
    """The 1-, 5- and 15-minute load averages as ``a/b/c``."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())

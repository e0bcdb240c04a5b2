"""What the speed benchmarks (transfer_speed.py, copy_stream.py, beside this file) share: the model pairs they
time and background processes that keep cores busy (the CPU model and load average: bench/running/host.py)."""

from __future__ import annotations

import subprocess
import sys
import time

PAIRS = [
    ("tf_efficientnet_b2", "tf_efficientnet_b0"),
    ("mixnet_l", "tf_efficientnet_b0"),
    ("rexnet_100", "tf_efficientnet_b0"),
    ("resnet50", "efficientnet_b0"),
    ("tf_efficientnet_b0", "tf_efficientnet_b7"),
]

# A background process that keeps one core busy, and exits when its parent (this script) is gone.
SPIN = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(200000):\n        pass\n"


class Busy:
    """``n`` processes spinning on one core each for the duration of a ``with`` block."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL))
        time.sleep(1.0)  # let them get scheduled
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []
        return False

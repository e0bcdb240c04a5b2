"""Ctrl-C while a task is still starting (importing torch, Lightning, Hydra) leaves one line in its log, not a
KeyboardInterrupt traceback, and the process ends as interrupted (SIGINT), as a sweep's stop expects.

The SIGINT is sent by the task's own interpreter 1 s after it started (a sitecustomize.py put on its path), so
it lands inside the imports: they take several seconds here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SITECUSTOMIZE = """import os, signal, threading
t = threading.Timer(float(os.environ["DPIAT_TEST_SIGINT_AFTER"]), os.kill, (os.getpid(), signal.SIGINT))
t.daemon = True
t.start()
"""


@pytest.mark.parametrize("script", ["bench/run.py", "bench/train_source.py", "bench/train_ghn.py"])
def test_ctrl_c_during_start_up_is_one_line(script, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), "DPIAT_TEST_SIGINT_AFTER": "1.0"}
    p = subprocess.run([sys.executable, script, "experiment=smoke", f"paths.runs={tmp_path / 'runs'}"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300,
                       # a SIGINT ignored by this test process (an earlier test's clean-up) would be inherited, and
                       # Python keeps an ignored SIGINT ignored: give the task the default, as a shell does
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    output = p.stdout + p.stderr
    assert p.returncode in (-signal.SIGINT, 130), output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0], p.stderr

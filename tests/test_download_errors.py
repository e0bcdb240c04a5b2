"""data.download=true without a network: one line saying the download failed and what to do, no traceback.

The network is cut inside the run's process (urllib's urlopen raises URLError, as it does offline), so the
test never downloads anything, with or without a network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_offline(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """bench/run.py with urllib cut off and Fashion-MNIST's fallback folder in tmp_path."""
    code = ("import runpy, sys, urllib.error, urllib.request\n"
            "def offline(*args, **kwargs):\n"
            "    raise urllib.error.URLError(OSError(-2, 'Name or service not known'))\n"
            "urllib.request.urlopen = offline\n"
            "import bench.data.datasets as d\n"
            f"d.FASHION_MNIST_DOWNLOADS = d.Path({str(tmp_path / 'fallback')!r})\n"
            f"sys.argv = ['bench/run.py', *{list(overrides)!r}]\n"
            "runpy.run_path('bench/run.py', run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("data, advice, process", [
    ("cifar10", "data.root=<folder holding cifar-10-batches-py>", "this"),
    ("cifar100", "data.root=<folder holding cifar-100-python>", "this"),
    ("fashion_mnist", "apt-get install dataset-fashion-mnist", "new"),
])
def test_a_failed_download_is_one_line_with_the_fix(tmp_path, monkeypatch, run_main, data, advice, process):
    """One case as a new process sees it (stderr of a real ``python bench/run.py``); the others in this process
    (bench/run.py's __main__ run by run_main, urllib cut by monkeypatch), which spares a start of torch and Lightning
    each and goes through the same code."""
    empty = tmp_path / "empty"
    empty.mkdir()
    in_chans = [] if data == "fashion_mnist" else ["data.in_chans=3"]
    args = ["experiment=smoke", "init=random", f"data={data}", f"data.root={empty}", "data.download=true", *in_chans,
            f"paths.runs={tmp_path / 'runs'}"]
    if process == "new":
        proc = run_offline(tmp_path, *args)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        import urllib.error
        import urllib.request

        import bench.data.datasets as d

        def offline(*a, **k):
            raise urllib.error.URLError(OSError(-2, "Name or service not known"))

        monkeypatch.setattr(urllib.request, "urlopen", offline)
        monkeypatch.setattr(d, "FASHION_MNIST_DOWNLOADS", tmp_path / "fallback")
        code, out, err = run_main("bench/run.py", *args)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out + err, err[-3000:]
    assert lines[0].startswith("error: ") and "download failed (no network? " in lines[0]
    assert advice in lines[0]

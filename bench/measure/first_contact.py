"""Time the README's two first-screen commands as a new user meets them: in a fresh clone of this checkout.

    .venv/bin/python bench/measure/first_contact.py                 # set-up, then the default (bench/run.py)
    .venv/bin/python bench/measure/first_contact.py default tests   # set-up, the default, then the test command

Everything runs in one fresh ``git clone`` of HEAD, in the README's order: ``bash setup.sh`` (its own .venv,
from the package cache it uses; always timed, since the rest needs it), then the commands asked for. Before the
test command, what the default wrote (``results/runs``, ``results/default``) is removed, so the suite also meets
a fresh tree. While a command runs, the 1-minute load average is sampled every 5 s; the record says the CPU
model, torch's CPU capability, the load before, the mean and the peak during, the seconds and the exit status.
Written to ``--out`` (results/first_contact/):

* ``timing.json``: one entry per command timed (a later call keeps the entries it does not redo);
* ``<command>.log``: what each printed;
* ``default/<pair>/<init>/seed0/run.json``: the default's three runs (not ``runs/``: no experiment's runs folder),
  whose numbers the README's expected table quotes (tests/test_first_contact.py checks the README against these
  files and ``timing.json``).

A measurement is only as good as the machine's quiet: stop other work first, and read ``load_mean`` before quoting.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.files import atomic_write_text  # noqa: E402
from bench.running.host import cpu_model, load  # noqa: E402

COMMANDS = {"setup": ["bash", "setup.sh"],
            "default": [".venv/bin/python", "bench/run.py"],
            "tests": [".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]}
DEFAULT_RUNS = Path("results") / "runs" / "default"


def _one_minute_load() -> float:
    return float(load().split("/")[0])


def timed(argv: list[str], cwd: Path, log: Path) -> dict:
    """Run ``argv`` in ``cwd`` (output to ``log``) and return its seconds, exit status and the load around it."""
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            samples.append(_one_minute_load())

    before = load()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    return {"command": " ".join(argv), "seconds": round(seconds, 1), "exit": code, "load_before": before,
            "load_mean": round(sum(samples) / len(samples), 2) if samples else None,
            "load_max": max(samples) if samples else None, "load_after": load()}


def fresh_clone(dest: Path) -> Path:
    """A clone of this checkout's HEAD at ``dest``."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", "--detach",
                    subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                   check=True).stdout.strip()], check=True)
    return dest


def _test_counts(log: Path) -> str:
    """pytest's summary line ("928 passed, 3 skipped in 251.3s"), or ''."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if " in " in ln and
             any(w in ln for w in ("passed", "failed", "error"))]
    return lines[-1].strip("= ") if lines else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="*", choices=[c for c in COMMANDS if c != "setup"], default=["default"],
                   help="the commands to time after the set-up, in the README's order (default: default)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "first_contact")
    p.add_argument("--keep", action="store_true", help="keep the fresh clone (its path is printed)")
    args = p.parse_args(argv)
    if not (REPO / ".venv" / "bin" / "python").exists():
        sys.exit("error: no .venv in this checkout: run `bash setup.sh` first")
    import torch

    out_dir: Path = args.out
    timing_path = out_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    machine = {"cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "torch": torch.__version__, "cores": len(__import__("os").sched_getaffinity(0))}
    work = Path(tempfile.mkdtemp(prefix="dpiat-first-contact-"))
    try:
        clone = fresh_clone(work / "clone")
        for name in [n for n in COMMANDS if n in args.what or n == "setup"]:
            if name == "tests":  # the suite meets a fresh tree too: only .venv and the built C core stay
                for made in ("results/runs", "results/default"):
                    shutil.rmtree(clone / made, ignore_errors=True)
            log = out_dir / f"{name}.log"
            out_dir.mkdir(parents=True, exist_ok=True)
            print(f"{name}: {' '.join(COMMANDS[name])} in a fresh clone ({clone}), load before {load()}", flush=True)
            entry = {**timed(COMMANDS[name], clone, log), **machine,
                     "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "git_commit": subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True,
                                                  text=True).stdout.strip()}
            if name == "tests":
                entry["summary"] = _test_counts(log)
            if name == "default" and entry["exit"] == 0:
                runs = out_dir / "default"
                shutil.rmtree(runs, ignore_errors=True)
                for record in sorted((clone / DEFAULT_RUNS).glob("*/*/seed*/run.json")):
                    dest = runs / record.relative_to(clone / DEFAULT_RUNS)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(dest, record.read_text())
            timing[name] = entry
            atomic_write_text(timing_path, json.dumps(timing, indent=2) + "\n")
            if entry["exit"] != 0 and name == "setup":
                print(f"setup failed (exit {entry['exit']}): {log}", flush=True)
                break
            print(f"{name}: exit {entry['exit']} after {entry['seconds']:.0f} s, 1-minute load mean "
                  f"{entry['load_mean']} (peak {entry['load_max']}); {entry.get('summary', '')}".rstrip("; "),
                  flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(e.get("exit") == 0 for e in timing.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

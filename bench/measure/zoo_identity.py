"""The identity check over timm's zoo: every pretrained architecture under a parameter cap, transferred into a
fresh copy of itself, must come out identical.

    nice -n 19 .venv/bin/python bench/measure/zoo_identity.py                     # all, cap 60M (resumes)
    .venv/bin/python bench/measure/zoo_identity.py --only 'vit_*' --out /tmp/vit.csv
    .venv/bin/python bench/measure/zoo_identity.py --shard 0/2 & ... --shard 1/2   # two processes, one file
    .venv/bin/python bench/measure/zoo_identity.py --summary                       # only the summary line

Per architecture: two copies are built on the meta device and given storage without timm's init (the check
needs values, not a good init, and init costs seconds per model), then every parameter of both copies gets
seeded Gaussian noise (source seed 0, target seed 1), so that no tensor can match by accident (norms start at
1 and 0 in both copies, layer scales at the same constant). Each method transfers the source into its own copy
of the target; the architecture is *identical* under a method when every target parameter then equals the
source's. A row names the parameters left different ("tensors left") and the transfer's seconds.

The CSV is written row by row (flushed, under a file lock) and an architecture already in it is skipped, so a
run that is stopped resumes where it was, and shards started side by side share one file. The parameter count
is read on the meta device (no memory). Ctrl-C stops it with one line (exit 130); the rows written so far stay
and the same command goes on from there. The header file beside the CSV (``identity.txt``, made from the lines
this script prints) records the command, the CPU, the load average and the wall time of each run, and the
summary line.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import fnmatch
import io
import sys
import time
import warnings
from pathlib import Path

import torch

import dpiat
from bench.running.host import cpu_model, load
from dpiat.models import create_model
from dpiat.pipeline import _n_parameters

FIELDS = ["name", "family", "params", "method", "identical", "n_left", "tensors_left", "seconds", "error"]
MAX_NAMES = 40  # tensors listed per row; the count is always complete


def architectures(pattern: str | None) -> list[str]:
    import timm

    names = sorted({n.split(".", 1)[0] for n in timm.list_models(pretrained=True)})
    patterns = pattern.split(",") if pattern else ["*"]
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def family(name: str) -> str:
    from timm.models._registry import _model_to_module

    return _model_to_module.get(name, "?")


def noisy_copy(name: str, seed: int) -> torch.nn.Module:
    """``name`` built without init, every parameter N(0, 0.5^2) from ``seed`` (buffers: uninitialised, unused)."""
    model = create_model(name, device="meta").to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * 0.5)
    return model.eval()


def left_different(source: torch.nn.Module, target: torch.nn.Module) -> list[str]:
    src = dict(source.named_parameters())
    return [n for n, p in target.named_parameters() if n not in src or not torch.equal(p, src[n])]


def check(name: str, methods: list[str]) -> list[dict]:
    """One row per method for architecture ``name``."""
    rows = []
    base = {"name": name, "family": family(name)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = noisy_copy(name, 0)
            fresh = noisy_copy(name, 1)
    except Exception as e:  # noqa: BLE001 -- a constructor that fails is recorded, not fatal
        return [{**base, "params": "", "method": m, "identical": "", "n_left": "", "tensors_left": "",
                 "seconds": "", "error": f"build: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}
                for m in methods]
    base["params"] = _n_parameters(source)
    state = {k: v.clone() for k, v in fresh.state_dict().items()}
    for i, method in enumerate(methods):
        target = fresh
        if i:  # every method starts from the same noisy target
            target.load_state_dict(state)
        row = {**base, "method": method, "error": ""}
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dpiat.transfer(source, target, method=method)
        except Exception as e:  # noqa: BLE001 -- a crash is a finding: recorded in the row
            row.update(identical="", n_left="", tensors_left="", seconds="",
                       error=f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
            rows.append(row)
            continue
        seconds = time.perf_counter() - t0
        left = left_different(source, target)
        row.update(identical=int(not left), n_left=len(left), tensors_left=" ".join(left[:MAX_NAMES]) +
                   (f" ...(+{len(left) - MAX_NAMES})" if len(left) > MAX_NAMES else ""), seconds=f"{seconds:.3f}")
        rows.append(row)
    return rows


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append under an exclusive lock, header first when the file is new: shards may write at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, FIELDS)
            if f.tell() == 0:
                writer.writeheader()
            writer.writerows(rows)
            f.write(text.getvalue())  # made first, written at once: a Ctrl-C leaves no half row
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def summary(rows: list[dict], cap: float) -> str:
    """One line per method: identical / reached, crashes, architectures with tensors left."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ok = sum(1 for r in mine if r["identical"] == "1")
        errors = sum(1 for r in mine if r["error"])
        left = [r["name"] for r in mine if r["identical"] == "0"]
        out.append(f"{method}: identical on {ok} of {len(mine)} pretrained timm architectures with at most "
                   f"{cap / 1e6:g}M parameters; {len(left)} leave tensors; {errors} failed to build or transfer"
                   + (f" ({', '.join(left[:12])}{', ...' if len(left) > 12 else ''})" if left else ""))
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-params", type=float, default=60e6, help="parameter cap (default 60e6)")
    p.add_argument("--methods", default="dpiat_struct,dpiat", help="comma-separated transfer methods")
    p.add_argument("--only", default=None, help="fnmatch patterns of architecture names, comma-separated")
    p.add_argument("--out", default="results/zoo/identity.csv")
    p.add_argument("--shard", default="0/1", help="i/n: this process checks every n-th architecture from i")
    p.add_argument("--summary", action="store_true", help="print the summary of the CSV and exit")
    args = p.parse_args(argv)
    out = Path(args.out)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in dpiat.METHODS]
    if unknown:
        print(f"error: unknown method(s) {unknown}; known: {sorted(dpiat.METHODS)}", file=sys.stderr)
        return 2
    try:
        i, n = (int(x) for x in args.shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        print(f"error: --shard takes i/n with 0 <= i < n, got {args.shard!r}", file=sys.stderr)
        return 2
    if args.summary:
        print(summary(read_rows(out), args.max_params))
        return 0
    torch.set_num_threads(1)  # a shared machine: one core per process
    t0, load0 = time.time(), load()
    done = {(r["name"], r["method"]) for r in read_rows(out)}
    names = architectures(args.only)[i::n]
    print(f"# {len(names)} architectures in shard {args.shard}; {len(done)} rows already in {out}; "
          f"cpu {cpu_model('?')}, load {load0}", flush=True)
    try:
        over, checked = _check_all(names, methods, done, out, args.max_params)
    except KeyboardInterrupt:
        print(f"# interrupted: {out} keeps every architecture finished so far; run the same command again to "
              "go on from there", file=sys.stderr, flush=True)
        return 130
    wall = time.time() - t0
    print(f"# checked {checked} architectures ({over} over the cap) in {wall:.0f} s; cpu {cpu_model('?')}, "
          f"load {load0} at start, {load()} at end", flush=True)
    print(summary(read_rows(out), args.max_params))
    return 0


def _check_all(names: list[str], methods: list[str], done: set, out: Path, cap: float) -> tuple[int, int]:
    """Check every architecture of ``names`` not yet in ``out`` under ``cap``; ``(over the cap, checked)``."""
    checked = over = 0
    for name in names:
        todo = [m for m in methods if (name, m) not in done]
        if not todo:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params = _n_parameters(create_model(name, device="meta"))
        except Exception:  # noqa: BLE001 -- counted below, by the full build
            params = 0
        if params > cap:
            over += 1
            continue
        rows = check(name, todo)
        append_rows(out, rows)
        checked += 1
        print(" ".join(f"{r['name']} {r['method']} identical={r['identical']} left={r['n_left']} "
                       f"{r['seconds']}s {r['error']}".rstrip() for r in rows), flush=True)
    return over, checked


if __name__ == "__main__":
    sys.exit(main())

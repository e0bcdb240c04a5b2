"""The identity check over timm's zoo: every pretrained architecture under a parameter cap, transferred into a
fresh copy of itself, must come out the same network.

    nice -n 5 .venv/bin/python bench/measure/zoo_identity.py                      # all, cap 60M (resumes)
    nice -n 5 .venv/bin/python bench/measure/zoo_identity.py --min-params 60e6 --max-params 200e6 \
        --out results/zoo/identity_60M_200M.csv                                     # the second table
    .venv/bin/python bench/measure/zoo_identity.py --only 'vit_*' --out /tmp/vit.csv
    .venv/bin/python bench/measure/zoo_identity.py --shard 0/2 & ... --shard 1/2   # two processes, one file
    .venv/bin/python bench/measure/zoo_identity.py --summary                       # only the summary line
    .venv/bin/python bench/measure/zoo_identity.py --table     # results/zoo/table.md from both CSVs (the docs quote it)

Per architecture: the architecture is built once by timm on the CPU (a real build: buffers derived from the
config, such as attention index tables, are computed as timm computes them) and copied, then every float
parameter and every float persistent buffer of both copies gets seeded Gaussian noise (source seed 0, target
seed 1; BatchNorm running variances kept positive, batch counters a seeded count), so that no tensor can match by
accident (norms start at 1 and 0 in both copies, layer scales at the same constant). Buffers that are not
persistent (derived from the config, not in the state_dict) keep what the build computed, in both copies. Each
method transfers the source into its own copy of the target; then the architecture is *identical* under a method
when the target has become the same network:

- every target parameter equals the source's (``params_equal``; the parameters left different are named in
  ``tensors_left``),
- every persistent buffer equals the source's (``buffers_equal``; ``buffers_left`` names the others), and
- the eval-mode forward of one image is bit-equal (``forward_equal``, compared bit for bit, NaN included;
  ``forward_input`` is the side of the square input: 64 px where the architecture takes it, else the size of its
  pretrained config; ``forward_finite`` says whether that output was finite).

A row also gives the transfer's seconds.

The CSV is written row by row (flushed, under a file lock) and an architecture already in it is skipped, so a
run that is stopped resumes where it was, and shards started side by side share one file. The parameter count
is read on the meta device (no memory). Ctrl-C stops it with one line (exit 130); the rows written so far stay
and the same command goes on from there. The header file beside the CSV (``identity.txt``, made from the lines
this script prints) records the command, the CPU, the load average and the wall time of each run, and the
summary line.
"""

from __future__ import annotations

import argparse
import copy
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

FIELDS = ["name", "family", "params", "method", "identical", "params_equal", "n_left", "tensors_left", "buffers_equal",
          "n_buffers_left", "buffers_left", "forward_equal", "forward_input", "forward_finite", "seconds", "error"]
MAX_NAMES = 40  # tensors listed per row; the count is always complete


def architectures(pattern: str | None) -> list[str]:
    import timm

    names = sorted({n.split(".", 1)[0] for n in timm.list_models(pretrained=True)})
    patterns = pattern.split(",") if pattern else ["*"]
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def family(name: str) -> str:
    from timm.models._registry import _model_to_module

    return _model_to_module.get(name, "?")


def scramble(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every float parameter and float persistent buffer of ``model`` N(0, 0.5^2) from ``seed`` (a BatchNorm
    running variance |N| + 0.5, a variance being positive), every ``num_batches_tracked`` a seeded count; buffers
    that are not persistent (derived from the config) are left as built. Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * 0.5)
        for module in model.modules():
            for key, b in module._buffers.items():
                if b is None or key in module._non_persistent_buffers_set:
                    continue
                if b.is_floating_point():
                    noise = torch.randn(b.shape, generator=g, dtype=torch.float32) * 0.5
                    b.copy_((noise.abs() + 0.5 if key == "running_var" else noise).to(b.dtype))
                elif key == "num_batches_tracked":
                    b.fill_(int(torch.randint(1, 10_000, (), generator=g)))
    return model.eval()


def noisy_copies(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``name`` built by timm (CPU, its own init: the noise replaces it) and copied; source seed 0, target 1."""
    model = create_model(name)
    return scramble(copy.deepcopy(model), 0), scramble(model, 1)


def persistent(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    params = {n for n, _ in model.named_parameters()}
    return {k: v for k, v in model.state_dict().items() if k not in params}


def left_different(source: torch.nn.Module, target: torch.nn.Module) -> list[str]:
    src = dict(source.named_parameters())
    return [n for n, p in target.named_parameters() if n not in src or not torch.equal(p, src[n])]


def buffers_different(source: torch.nn.Module, target: torch.nn.Module) -> list[str]:
    src = persistent(source)
    return [n for n, b in persistent(target).items() if n not in src or not torch.equal(b, src[n])]


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def bit_equal(a, b) -> bool:
    """Two forward outputs (tensors, or tuples / dicts of them) equal bit for bit, NaN included."""
    xs, ys = _tensors(a), _tensors(b)
    return len(xs) == len(ys) > 0 and all(
        x.shape == y.shape and x.dtype == y.dtype
        and torch.equal(x.detach().contiguous().view(torch.uint8), y.detach().contiguous().view(torch.uint8))
        for x, y in zip(xs, ys))


def forward(model: torch.nn.Module, side: int):
    g = torch.Generator().manual_seed(2)
    chans = int((getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3,))[0])
    x = torch.randn(1, chans, side, side, generator=g)
    with torch.no_grad():
        return model(x)


def input_side(model: torch.nn.Module) -> list[int]:
    """Sides to try: 64 px, then the pretrained config's input size."""
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))
    return list(dict.fromkeys([64, int(size[-1])]))


def reference_forward(source: torch.nn.Module):
    """(side, output) of the source's eval forward at the first side it takes; (None, error) when none."""
    err = None
    for side in input_side(source):
        try:
            return side, forward(source, side)
        except Exception as e:  # noqa: BLE001 -- an architecture that needs another size: the next side
            err = e
    return None, err


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def check(name: str, methods: list[str]) -> list[dict]:
    """One row per method for architecture ``name``."""
    rows = []
    base = {"name": name, "family": family(name)}
    empty = {k: "" for k in FIELDS if k not in ("name", "family")}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source, fresh = noisy_copies(name)
    except Exception as e:  # noqa: BLE001 -- a constructor that fails is recorded, not fatal
        return [{**empty, **base, "method": m, "error": f"build: {_error(e)}"} for m in methods]
    base["params"] = _n_parameters(source)
    side, reference = reference_forward(source)
    state = {k: v.clone() for k, v in fresh.state_dict().items()}
    for i, method in enumerate(methods):
        target = fresh
        if i:  # every method starts from the same noisy target
            target.load_state_dict(state)
        row = {**empty, **base, "method": method}
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dpiat.transfer(source, target, method=method)
        except Exception as e:  # noqa: BLE001 -- a crash is a finding: recorded in the row
            row["error"] = _error(e)
            rows.append(row)
            continue
        seconds = time.perf_counter() - t0
        left, buffers = left_different(source, target), buffers_different(source, target)
        if side is None:
            same, finite, note = "", "", f"forward: {_error(reference)}"
        else:
            try:
                same, note = int(bit_equal(reference, forward(target, side))), ""
            except Exception as e:  # noqa: BLE001 -- the target's forward fails where the source's ran
                same, note = 0, f"target forward: {_error(e)}"
            finite = int(all(t.isfinite().all() for t in _tensors(reference)))
        row.update(identical=int(not left and not buffers and same == 1), params_equal=int(not left),
                   n_left=len(left), tensors_left=_names(left), buffers_equal=int(not buffers),
                   n_buffers_left=len(buffers), buffers_left=_names(buffers), forward_equal=same,
                   forward_input=side or "", forward_finite=finite, seconds=f"{seconds:.3f}", error=note)
        rows.append(row)
    return rows


def _names(names: list[str]) -> str:
    return " ".join(names[:MAX_NAMES]) + (f" ...(+{len(names) - MAX_NAMES})" if len(names) > MAX_NAMES else "")


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


def summary(rows: list[dict], cap: float, floor: float = 0) -> str:
    """One line per method: the same network / reached, then parameters, persistent buffers and forward equal
    each, crashes, and the architectures that are not the same network."""
    out = []
    span = f"more than {floor / 1e6:g}M and at most {cap / 1e6:g}M" if floor else f"at most {cap / 1e6:g}M"
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        count = lambda key: sum(1 for r in mine if r.get(key) == "1")  # noqa: E731
        failed = sum(1 for r in mine if r.get("params_equal", "") == "")
        no_forward = sum(1 for r in mine if r.get("params_equal", "") != "" and r.get("forward_equal", "") == "")
        other = [r["name"] for r in mine if r["identical"] == "0"]
        finite = sum(1 for r in mine if r.get("forward_equal") == "1" and r.get("forward_finite") == "1")
        out.append(f"{method}: identical (parameters, persistent buffers and eval forward) on {count('identical')} of "
                   f"{len(mine)} pretrained timm architectures with {span} parameters; parameters equal on "
                   f"{count('params_equal')}, persistent buffers on {count('buffers_equal')}, forward bit-equal on "
                   f"{count('forward_equal')} (a finite output on {finite} of these); {failed} failed to build or "
                   f"transfer, {no_forward} ran no forward"
                   + (f"; not identical: {', '.join(other[:12])}{', ...' if len(other) > 12 else ''}" if other else ""))
    return "\n".join(out)


TABLES = (("at most 60M", "results/zoo/identity.csv"), ("60M-200M", "results/zoo/identity_60M_200M.csv"))
TABLE_HEADER = ["parameters", "method", "architectures", "identical", "parameters equal", "persistent buffers equal",
                "forward bit-equal", "of these with a finite output", "failed to build or transfer"]


def table(root: Path = Path(".")) -> str:
    """``results/zoo/table.md``: the counts of each CSV in ``TABLES`` that exists, one row per method (what the
    docs quote; tests/test_figures.py checks the page against this file and this file against the CSVs)."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    for span, path in TABLES:
        rows = read_rows(root / path)
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            count = lambda key: sum(1 for r in mine if r.get(key) == "1")  # noqa: E731
            finite = sum(1 for r in mine if r.get("forward_equal") == "1" and r.get("forward_finite") == "1")
            failed = sum(1 for r in mine if r.get("params_equal", "") == "")
            cells = [span, f"`{method}`", len(mine), count("identical"), count("params_equal"), count("buffers_equal"),
                     count("forward_equal"), finite, failed]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-params", type=float, default=60e6, help="parameter cap (default 60e6)")
    p.add_argument("--min-params", type=float, default=0,
                   help="only architectures with more parameters than this (default 0; 60e6 for the second table)")
    p.add_argument("--methods", default="dpiat_struct,dpiat", help="comma-separated transfer methods")
    p.add_argument("--only", default=None, help="fnmatch patterns of architecture names, comma-separated")
    p.add_argument("--out", default="results/zoo/identity.csv")
    p.add_argument("--shard", default="0/1", help="i/n: this process checks every n-th architecture from i")
    p.add_argument("--summary", action="store_true", help="print the summary of the CSV and exit")
    p.add_argument("--table", action="store_true",
                   help="write results/zoo/table.md (the counts of both committed CSVs, which the docs quote) and exit")
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
    if args.table:
        Path("results/zoo/table.md").write_text(table())
        print(table(), end="")
        return 0
    if args.summary:
        print(summary(read_rows(out), args.max_params, args.min_params))
        return 0
    torch.set_num_threads(1)  # a shared machine: one core per process
    t0, load0 = time.time(), load()
    done = {(r["name"], r["method"]) for r in read_rows(out)}
    names = architectures(args.only)[i::n]
    print(f"# {len(names)} architectures in shard {args.shard}; {len(done)} rows already in {out}; "
          f"cpu {cpu_model('?')}, load {load0}", flush=True)
    try:
        over, checked = _check_all(names, methods, done, out, args.max_params, args.min_params)
    except KeyboardInterrupt:
        print(f"# interrupted: {out} keeps every architecture finished so far; run the same command again to "
              "go on from there", file=sys.stderr, flush=True)
        return 130
    wall = time.time() - t0
    print(f"# checked {checked} architectures ({over} outside the parameter span) in {wall:.0f} s; cpu {cpu_model('?')}, "
          f"load {load0} at start, {load()} at end", flush=True)
    print(summary(read_rows(out), args.max_params, args.min_params))
    return 0


def _check_all(names: list[str], methods: list[str], done: set, out: Path, cap: float,
               floor: float = 0) -> tuple[int, int]:
    """Check every architecture of ``names`` not yet in ``out`` with more than ``floor`` and at most ``cap``
    parameters; ``(outside the span, checked)``."""
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
        if params > cap or (floor and params <= floor):
            over += 1
            continue
        rows = check(name, todo)
        append_rows(out, rows)
        checked += 1
        print(" ".join(f"{r['name']} {r['method']} identical={r['identical']} left={r['n_left']} "
                       f"buffers_left={r['n_buffers_left']} forward={r['forward_equal']} "
                       f"{r['seconds']}s {r['error']}".rstrip() for r in rows), flush=True)
    return over, checked


if __name__ == "__main__":
    sys.exit(main())

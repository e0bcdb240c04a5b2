"""Speed of the dpiat library, idle and under load, side by side with the authors' code when it is installed.

    .venv/bin/python bench/measure/transfer_speed.py                      # all pairs, idle and loaded (~3-5 min)
    .venv/bin/python bench/measure/transfer_speed.py --pairs 1 --busy 1   # only tf_efficientnet_b2 -> b0
    .venv/bin/python bench/measure/transfer_speed.py --python-dp          # also time the pure-Python DP fallback

Each figure is the median over ``--repeats`` calls (the authors' code: ``--authors-repeats``) on the same
model instances; model construction is excluded, and every call starts from fresh caches as a user's call
would. Two phases run back to back: *idle* (whatever else the machine is doing: the 1-minute load average
is printed before and after, and a warning when it is not below 0.5; the CPU time of the calling thread is
printed too, a proxy for the idle figure on a machine that never is) and *loaded*, with ``--busy``
background processes that this script starts, each spinning on one core, and stops when the phase ends
(also on Ctrl-C or an error; a spinner also exits on its own when this script dies). torch keeps its
default number of intra-op threads unless ``--threads`` is given; both implementations run under the same
setting.

The authors' implementation is the PyPI package ``iatransfer`` (Czyzewski, Nowak, Piechowiak): transfer is
``IAT()(source, target)`` and the symmetric similarity dpiat computes is
``sqrt(IAT().sim(a, b) * IAT().sim(b, a))`` (their ``sim`` is V(a->b) / V(b->b)). It is not a dependency
of this project; the comparison needs it, installed without its declared dependencies:

    .venv/bin/pip install --no-deps iatransfer==1.0.3 inflection==0.5.1

(``--no-deps``: iatransfer 1.0.3 declares research packages its transfer never calls, e.g. karateclub, nose,
graphviz, efficientnet-pytorch, which would bring packages outside this project's exact pins; inflection is
the one it needs.) Without it the script stops with that command, unless ``--no-authors`` asks for dpiat's
figures alone. Its package imports every module it ships at import time, among them a research module that
needs ``karateclub`` and ``graphviz`` (graph embeddings, plots); when those are missing, this script puts
inert placeholders in their place (said in the output). Before timing, each pair is checked: both must write
the same target tensors and reach the same DP values.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import signal
import statistics
import sys
import time
import types

import torch

import dpiat
import dpiat.alignment as alignment
from bench.measure.speed import PAIRS, Busy
from bench.running.host import load

INSTALL_HINT = ".venv/bin/pip install --no-deps iatransfer==1.0.3 inflection==0.5.1"  # the pin results/speed/ used

CPU = {}  # (what, pair, phase) -> median CPU milliseconds of the calling thread


def median_ms(fn, repeats: int, cpu_key=None) -> float:
    """Median wall-clock milliseconds of ``fn()``; with ``cpu_key``, also records the median CPU time of
    this thread (what a call costs when it has a core to itself; torch's worker threads not included)."""
    times, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    if cpu_key is not None:
        CPU[cpu_key] = 1000 * statistics.median(cpu)
    return 1000 * statistics.median(times)


class _Inert:
    """Stands in for a class of a research dependency that IAT's transfer never uses."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        raise RuntimeError("this placeholder stands in for a package iatransfer's transfer does not need")


def _placeholder_attribute(name: str):
    if name.startswith("__"):  # __file__, __path__, ...: a plain module without them
        raise AttributeError(name)
    return _Inert  # FeatherNode, NetMF, GL2Vec, Digraph, ...


def load_authors_code() -> tuple[object | None, str]:
    """``(IAT class or None, note)``."""
    try:
        import iatransfer  # noqa: F401
    except ImportError:
        return None, (f"the comparison needs the authors' iatransfer, which is not installed: {INSTALL_HINT} "
                      "(or --no-authors to time dpiat alone)")
    placeholders = []
    for name in ("karateclub", "graphviz"):
        try:
            __import__(name)
        except ImportError:
            module = types.ModuleType(name)
            module.__getattr__ = _placeholder_attribute
            sys.modules[name] = module
            placeholders.append(name)
    try:
        from iatransfer.toolkit import IAT
    except ImportError as e:
        return None, f"iatransfer is installed but cannot be imported ({e}): {INSTALL_HINT}"
    import importlib.metadata

    note = f"iatransfer {importlib.metadata.version('iatransfer')}"
    if placeholders:
        note += f" (inert placeholders for {', '.join(placeholders)}: used only by its graph-embedding research code)"
    return IAT, note


def check_same(IAT, src, dst) -> str:
    """Both implementations on copies of the same target: same tensors written, same DP values, same
    similarity? (The similarity formulas group their float operations differently, so it may differ in
    the last bits while the DP values are identical.)"""
    ours, theirs = copy.deepcopy(dst), copy.deepcopy(dst)
    dpiat.transfer(src, ours)
    IAT()(src, theirs)
    a, b = ours.state_dict(), theirs.state_dict()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    out = ["identical tensors" if not differ else f"{len(differ)} tensors differ (e.g. {differ[0]})"]
    iat = IAT()
    try:  # their DP value V(x -> y), as IAT.sim computes it before normalising
        values = []
        for x, y in ((src, dst), (dst, src)):
            iat.score.precompute_scores(x, y)
            iat.matching.set_score(iat.score)
            values.append((dpiat.match(x, y).value, iat.matching._match_models(iat.standardization(x),
                                                                                 iat.standardization(y))[0]))
        out.append("identical DP values" if all(u == v for u, v in values) else f"DP VALUES DIFFER: {values}")
    except AttributeError:  # another iatransfer version
        pass
    s_ours = dpiat.similarity(src, dst)
    s_theirs = (iat.sim(src, dst) * iat.sim(dst, src)) ** 0.5
    out.append(f"similarity {s_ours:.6f} vs {s_theirs:.6f} (difference {abs(s_ours - s_theirs):.0e})")
    return "; ".join(out)


def measure(models, IAT, repeats: int, authors_repeats: int, python_dp: bool, phase: str) -> dict:
    out = {}
    for (src_name, dst_name), (src, dst) in models.items():
        pair = (src_name, dst_name)
        row = {
            "match": median_ms(lambda: dpiat.match(src, dst), repeats),
            "transfer": median_ms(lambda: dpiat.transfer(src, dst), repeats, ("transfer", pair, phase)),
            "similarity": median_ms(lambda: dpiat.similarity(src, dst), repeats, ("similarity", pair, phase)),
        }
        if python_dp:
            saved, alignment._dp_c = alignment._dp_c, None
            try:
                row["transfer_py"] = median_ms(lambda: dpiat.transfer(src, dst), max(1, repeats // 3))
                row["similarity_py"] = median_ms(lambda: dpiat.similarity(src, dst), max(1, repeats // 3))
            finally:
                alignment._dp_c = saved
        line = (f"  {src_name} -> {dst_name}: match {row['match']:.1f} ms, transfer {row['transfer']:.1f} ms "
                f"(CPU {CPU['transfer', pair, phase]:.1f}), similarity {row['similarity']:.1f} ms "
                f"(CPU {CPU['similarity', pair, phase]:.1f})")
        if IAT is not None:
            iat = IAT()
            row["iat_transfer"] = median_ms(lambda: iat(src, dst), authors_repeats, ("iat_transfer", pair, phase))
            row["iat_similarity"] = median_ms(lambda: (iat.sim(src, dst) * iat.sim(dst, src)) ** 0.5,
                                              authors_repeats, ("iat_similarity", pair, phase))
            line += (f"; iatransfer {row['iat_transfer']:.0f} ms (CPU {CPU['iat_transfer', pair, phase]:.0f}) / "
                     f"{row['iat_similarity']:.0f} ms (CPU {CPU['iat_similarity', pair, phase]:.0f}); CPU-time "
                     f"ratios {CPU['iat_transfer', pair, phase] / CPU['transfer', pair, phase]:.0f}x / "
                     f"{CPU['iat_similarity', pair, phase] / CPU['similarity', pair, phase]:.0f}x")
        out[pair] = row
        print(line, flush=True)
    return out


def table(models, phases: dict, IAT, python_dp: bool) -> None:
    names = list(phases)
    for what in ("transfer", "similarity"):
        cols = ([f"match {p}" for p in names] if what == "transfer" else []) + [f"{what} {p}" for p in names]
        if IAT is not None:
            cols += [f"iatransfer {p}" for p in names] + [f"x {p}" for p in names]
        if python_dp:
            cols += [f"python DP {p}" for p in names]
        print(f"\n{what} (ms, medians)")
        print(f"{'source -> target':<42} " + " ".join(f"{c:>18}" for c in cols))
        for pair in models:
            vals = [f"{phases[p][pair]['match']:.1f}" for p in names] if what == "transfer" else []
            vals += [f"{phases[p][pair][what]:.1f}" for p in names]
            if IAT is not None:
                vals += [f"{phases[p][pair]['iat_' + what]:.0f}" for p in names]
                vals += [f"{phases[p][pair]['iat_' + what] / phases[p][pair][what]:.0f}x" for p in names]
            if python_dp:
                vals += [f"{phases[p][pair][what + '_py']:.1f}" for p in names]
            print(f"{pair[0] + ' -> ' + pair[1]:<42} " + " ".join(f"{v:>18}" for v in vals))


def run(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.authors:
        IAT, note = load_authors_code()
        if IAT is None:  # one line, the command to run, and nothing measured
            print(f"transfer_speed.py: error: {note}", file=sys.stderr)
            sys.exit(2)
    else:
        IAT, note = None, "iatransfer not used (--no-authors): dpiat's figures alone"
    print(f"dpiat {dpiat.__version__}, DP backend {alignment.BACKEND}, torch {torch.__version__} "
          f"({torch.get_num_threads()} intra-op threads), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; medians of {args.repeats} (authors' code: {args.authors_repeats})")
    print(note)
    pairs = PAIRS[: args.pairs] if args.pairs else PAIRS
    models = {}
    for src_name, dst_name in pairs:
        t0 = time.perf_counter()
        models[(src_name, dst_name)] = (dpiat.create_model(src_name), dpiat.create_model(dst_name))
        build = time.perf_counter() - t0
        check = f"; vs iatransfer: {check_same(IAT, *models[(src_name, dst_name)])}" if IAT is not None else ""
        print(f"{src_name} -> {dst_name}: built in {build:.1f} s{check}", flush=True)

    phases = {}
    before = os.getloadavg()[0]
    print(f"\nidle phase: load average {load()} (1/5/15 min)"
          + ("" if before < 0.5 else f"  WARNING: the machine is not idle (1-min load {before:.2f} >= 0.5)"))
    phases["idle"] = measure(models, IAT, args.repeats, args.authors_repeats, args.python_dp, "idle")
    print(f"  load average after: {load()}")
    if args.busy:
        with Busy(args.busy):
            print(f"\nloaded phase: {args.busy} busy process(es) started by this script, load average {load()}")
            phases["loaded"] = measure(models, IAT, args.repeats, args.authors_repeats, args.python_dp, "loaded")
            print(f"  load average after: {load()}")
    table(models, phases, IAT, args.python_dp)

    if args.rank:
        candidates = [c for c in dpiat.DEFAULT_CANDIDATES if c != "tf_efficientnet_b0"][:50]
        times = []
        for _ in range(max(1, args.repeats // 4)):
            t0 = time.perf_counter()
            dpiat.rank_sources("tf_efficientnet_b0", candidates)  # builds every candidate on the meta device
            times.append(time.perf_counter() - t0)
        print(f"\nrank tf_efficientnet_b0 against {len(candidates)} timm CNNs on the meta device, construction "
              f"included: {statistics.median(times):.2f} s (median of {len(times)}, no busy process)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9, help="calls per dpiat median (default 9)")
    p.add_argument("--authors-repeats", type=int, default=3, help="calls per iatransfer median (default 3)")
    p.add_argument("--busy", type=int, default=1, help="background spinning processes in the loaded phase "
                                                        "(default 1; 0 skips the phase)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--pairs", type=int, default=0, help="only the first N pairs (default: all)")
    p.add_argument("--python-dp", action="store_true", help="also time the pure-Python DP fallback")
    p.add_argument("--no-rank", dest="rank", action="store_false", help="skip the ranking timing")
    p.add_argument("--no-authors", dest="authors", action="store_false",
                   help=f"time dpiat alone, without the authors' iatransfer (otherwise needed: {INSTALL_HINT})")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup of the busy processes
    try:
        run(args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

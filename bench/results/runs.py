"""The runs of an experiment folder, read through run.json's schema, with every problem named by path.

``<runs_dir>/<pair>/<init>/seed<k>/run.json`` (:mod:`bench.layout`); the ``sources`` folder (source
trainings) holds no table rows. A record must sit where its identity says (a copied or misplaced file is
reported, not counted), and a seed folder without a run.json is reported as missing.

    from bench.results.runs import find_runs
    runs, problems = find_runs(Path("results/proxy/runs"))
    runs[0].pair, runs[0].curve(3)
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from bench.layout import target_folders, target_path
from bench.running.record import RUN_FILE, RunRecord, load_record


def load_run(path: str | Path) -> RunRecord:
    """Read and check one ``<pair>/<init>/seed<k>/run.json``; ValueError (naming the path) if malformed.

    >>> load_run("results/proxy/runs/tinynet_d_to_e/dpiat/seed0/run.json").curve(3)  # doctest: +SKIP
    [0.4844000041484833, 0.5454000234603882, 0.6528000235557556]
    """
    path = Path(path)
    run = load_record(path)
    experiment = path.parents[3]
    if target_path(experiment, run.pair, run.init, run.seed) != path.parent:  # a copied or misplaced file
        pair, init, seed = path.parent.relative_to(experiment).parts
        raise ValueError(f"{path}: says pair={run.pair!r}, init={run.init!r}, seed={run.seed} but lives in "
                         f"{init}/{seed} of {pair}")
    return run


def find_runs(runs_dir: Path) -> tuple[list[RunRecord], dict[tuple[str, str], list[str]]]:
    """All readable runs under ``runs_dir``, and problems (malformed / missing run.json) per (pair folder, init)."""
    runs, problems = [], defaultdict(list)
    for seed_dir in target_folders(runs_dir):
        pair, init = seed_dir.parent.parent.name, seed_dir.parent.name
        path = seed_dir / RUN_FILE
        if not path.exists():
            problems[pair, init].append(f"{path}: missing (not started, or killed before its first write)")
            continue
        try:
            runs.append(load_run(path))
        except (ValueError, OSError) as e:
            problems[pair, init].append(f"skipped {e}" if str(path) in str(e) else f"skipped {path}: {e}")
    return runs, problems

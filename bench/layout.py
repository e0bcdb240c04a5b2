"""Where runs live: the experiment folder's tree, the path half of every run's identity.

::

    <paths.runs>/<experiment>/           experiment_path
        <pair>/<init>/seed<k>/           target_path: one target run (bench/running/folder.py says what is in it)
        <recipe>/<pair>/<init>/seed<k>/  a target run with a fine-tuning recipe (config ``recipe``, one of
                                         ``grid.recipes``): each recipe's folder is laid out like an experiment's
        adhoc/<pair>/<init>/seed<k>/     a target run outside the experiment's grid (:func:`run_path`): never
                                         in the experiment's table, which reads <pair>/<init>/seed<k> only
        sources/<model>/seed<k>/         source_path: a source's training, shared by the experiment's targets
        manifests/                       bench/sweep.py's task lists, submission records and job logs
        table/                           the table of these runs (bench/aggregate.py's default: default_table_dir)
        ghn/                             a GHN-2 meta-training, where an experiment's grid puts one (out_dir)

:class:`bench.running.folder.RunFolder` builds a run's folder from these, Hydra's output folder is the same
path (the ``run_folder`` resolver of conf/config.yaml: :func:`hydra_dir`), the sweep plan finds finished runs
with them and the table reads runs through :func:`target_folders`.

    >>> str(target_path(experiment_path("results/runs", "proxy"), "tinynet_d_to_e", "dpiat", 2))
    'results/runs/proxy/tinynet_d_to_e/dpiat/seed2'

A run is *ad hoc* when its experiment has a grid and the run is not one of its points: its pair is not in
``grid.pairs`` (nor an ordered pair of ``grid.models``), or its init not in ``grid.inits``, or its seed not in
``grid.seeds`` (an empty axis has no outside). :func:`run_path` puts it under ``adhoc/``, so that e.g.
``python bench/run.py pair=resnet_to_effnet`` never changes the default experiment's table::

    >>> grid = {"pairs": ["tinynet_d_to_e"], "models": [], "inits": ["random", "dpiat"], "seeds": [0]}
    >>> str(run_path("results/runs", "default", grid, "tinynet_d_to_e", "dpiat", 0))
    'results/runs/default/tinynet_d_to_e/dpiat/seed0'
    >>> str(run_path("results/runs", "default", grid, "resnet_to_effnet", "dpiat", 0))
    'results/runs/default/adhoc/resnet_to_effnet/dpiat/seed0'
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

SOURCES = "sources"
MANIFESTS = "manifests"  # never named seed*, so no target folder is found in it
ADHOC = "adhoc"  # target runs outside the experiment's grid: <experiment>/adhoc/<pair>/<init>/seed<k>/
TABLE = "table"  # the table of a runs folder, inside it (default_table_dir): never a pair folder


def experiment_path(runs: str | Path, experiment: str) -> Path:
    return Path(runs) / experiment


def target_path(experiment_dir: str | Path, pair: str, init: str, seed: int) -> Path:
    return Path(experiment_dir) / pair / init / f"seed{seed}"


def source_path(experiment_dir: str | Path, model: str, seed: int) -> Path:
    return Path(experiment_dir) / SOURCES / model / f"seed{seed}"


def custom_pair_name(source: str, target: str) -> str:
    """The pair folder of ``pair=custom pair.source=S pair.target=T`` (conf/pair/custom.yaml's ``name``)."""
    return f"{source}_to_{target}"


def _axis(grid: Mapping | None, key: str) -> list:
    return list((grid or {}).get(key) or [])


def model_pairs(grid: Mapping | None) -> list[tuple[str, str]]:
    """The (source, target) pairs a grid names by model: every ordered pair of ``grid.models``, then every
    pair of ``grid.sources`` x ``grid.targets`` whose source is not its target (target by target), no repeats."""
    models = _axis(grid, "models")
    pairs = list(itertools.permutations(models, 2))
    pairs += [(s, t) for t in _axis(grid, "targets") for s in _axis(grid, "sources") if s != t]
    return list(dict.fromkeys(pairs))


def grid_pairs(grid: Mapping | None) -> list[str]:
    """The pair folders of a grid: ``grid.pairs``, then :func:`model_pairs`."""
    return [*_axis(grid, "pairs"), *(custom_pair_name(s, t) for s, t in model_pairs(grid))]


def outside_grid(grid: Mapping | None, pair: str, init: str, seed: int, recipe: str | None = None) -> list[str]:
    """Why (pair, init, seed, recipe) is not a point of ``grid``, one phrase per axis; empty when it is one.

    A grid with recipes has no point without one: every run of it is made with one of its recipes."""
    why = []
    recipes = list((grid or {}).get("recipes") or {})
    if recipes and recipe not in recipes:
        why.append(f"recipe {recipe} is not in the grid's recipes ({', '.join(recipes)})" if recipe else
                   f"no recipe given (recipe=<name>; the grid's recipes are {', '.join(recipes)})")
    why += outside_recipe_scope(grid, pair, init, recipe)
    for axis, value, values in (("pair", pair, grid_pairs(grid)), ("init", init, _axis(grid, "inits")),
                                ("seed", seed, _axis(grid, "seeds"))):
        if values and value not in values:
            shown = ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")
            why.append(f"{axis} {value} is not in the grid's {axis}s ({shown})")
    return why


def outside_recipe_scope(grid: Mapping | None, pair: str, init: str, recipe: str | None) -> list[str]:
    """Why (pair, init) is not run with ``recipe``: ``grid.recipe_scope`` limits that recipe to some pairs or inits.

    >>> grid = {"recipes": {"paper": [], "slow": ["optim.lr=0.001"]}, "recipe_scope": {"slow": {"inits": ["dpiat"]}}}
    >>> outside_recipe_scope(grid, "tinynet_d_to_e", "random", "slow")
    ['init random is not run with recipe slow (grid.recipe_scope: dpiat only)']
    >>> outside_recipe_scope(grid, "tinynet_d_to_e", "random", "paper")
    []
    """
    scope = ((grid or {}).get("recipe_scope") or {}).get(recipe) if recipe else None
    parts = list(scope) if isinstance(scope, Sequence) and not isinstance(scope, (str, Mapping)) else [scope]
    reasons = []
    for part in parts:  # a list of scopes: the recipe runs on their union, so one scope that admits the point is enough
        why = []
        for axis, value, key in (("pair", pair, "pairs"), ("init", init, "inits")):
            values = list((part or {}).get(key) or [])
            if values and value not in values:
                why.append(f"{axis} {value} is not run with recipe {recipe} (grid.recipe_scope: {', '.join(values)} only)")
        if not why:
            return []
        reasons.append(why)
    return reasons[0] if len(reasons) == 1 else [f"{pair} / {init} is in none of the scopes of recipe {recipe} "
                                                 "(grid.recipe_scope)"]


def run_path(runs: str | Path, experiment: str, grid: Mapping | None, pair: str, init: str, seed: int,
             recipe: str | None = None) -> Path:
    """A target run's folder: ``target_path`` in the experiment folder, or in its ``adhoc/`` when off the grid;
    with a recipe, in that recipe's folder there.

    >>> grid = {"recipes": {"adam_lr1e-3": ["optim.lr=0.001"]}}
    >>> str(run_path("results/runs", "recipe", grid, "tinynet_d_to_e", "dpiat", 0, "adam_lr1e-3"))
    'results/runs/recipe/adam_lr1e-3/tinynet_d_to_e/dpiat/seed0'
    """
    base = experiment_path(runs, experiment)
    if outside_grid(grid, pair, init, seed, recipe):
        base = base / ADHOC
    if recipe:
        base = base / recipe
    return target_path(base, pair, init, seed)


def recipe_folders(experiment_dir: str | Path) -> list[Path]:
    """The recipe folders of an experiment folder: those holding ``<pair>/<init>/seed<k>/run.json`` runs one
    level down (not ``sources/``, ``adhoc/``, ``manifests/``), in name order."""
    found = []
    for d in sorted(Path(experiment_dir).iterdir()) if Path(experiment_dir).is_dir() else []:
        if d.is_dir() and d.name not in (SOURCES, ADHOC, MANIFESTS, TABLE) and next(d.glob("*/*/seed*/run.json"), None):
            found.append(d)
    return found


def target_run_path(cfg: Any) -> Path:
    """The folder of the target run a composed config describes (RunFolder.target, Hydra, the sweep plan)."""
    return run_path(cfg.paths.runs, cfg.experiment_name, cfg.get("grid"), cfg.pair.name, cfg.init.name, cfg.seed,
                    cfg.get("recipe"))


def target_folders(experiment_dir: str | Path) -> Iterator[Path]:
    """The target run folders under an experiment folder (started or not), in path order.

    Not ``sources/`` nor ``adhoc/`` (give the adhoc folder itself to read its runs).
    """
    for seed_dir in sorted(Path(experiment_dir).glob("*/*/seed*")):
        if seed_dir.parent.parent.name not in (SOURCES, ADHOC, TABLE) and seed_dir.is_dir():
            yield seed_dir


def default_table_dir(runs_dir: str | Path) -> Path:
    """Where a table of ``runs_dir`` goes unless ``--out`` says otherwise (bench/aggregate.py, the sweep).

    Your own runs are never aggregated over committed results: a runs folder's table goes into it, as
    ``<runs_dir>/table/`` (``results/runs/proxy`` -> ``results/runs/proxy/table``, its ``adhoc/`` ->
    ``results/runs/proxy/adhoc/table``, a scratch or partial copy anywhere -> its own ``table/``). Only the
    committed copy of a table's runs, ``results/<experiment>/runs``, regenerates the committed table beside it
    (``results/<experiment>``): the same inputs, so the same table.

    >>> str(default_table_dir("/r/results/runs/default/adhoc"))
    '/r/results/runs/default/adhoc/table'
    >>> str(default_table_dir("/r/results/proxy/runs"))
    '/r/results/proxy'
    """
    runs_dir = Path(runs_dir).resolve()
    if _committed_copy(runs_dir):
        return runs_dir.parent
    return runs_dir / TABLE


def experiment_of(runs_dir: str | Path) -> str:
    """The experiment a runs folder belongs to: ``results/runs/proxy`` and ``results/proxy/runs`` are both
    ``proxy`` (what the table is titled and which published figures it is shown beside)."""
    runs_dir = Path(runs_dir).resolve()
    return runs_dir.parent.name if _committed_copy(runs_dir) else runs_dir.name


def _committed_copy(runs_dir: Path) -> bool:
    """``results/<experiment>/runs``: the run.json files committed beside their table (resolved path)."""
    return runs_dir.name == "runs" and runs_dir.parent.parent.name == "results"


table_dir = default_table_dir  # the name bench/sweep.py and bench/selection.py import


def hydra_dir(kind: str, cfg: Any) -> Path:
    """Hydra's output folder for a composed config: the ``run_folder`` resolver of the conf/ files.

    ``target`` (hydra.run.dir of bench/run.py), ``source`` (of bench/train_source.py), ``experiment`` and
    ``target_subdir`` (hydra.sweep.dir and .subdir of a ``-m`` sweep: the same folders as single runs).
    """
    experiment = experiment_path(cfg.paths.runs, cfg.experiment_name)
    if kind == "target":
        return target_run_path(cfg)
    if kind == "target_subdir":
        return target_run_path(cfg).relative_to(experiment)
    if kind == "source":
        return source_path(experiment, cfg.pair.source, cfg.source.seed)
    if kind == "experiment":
        return experiment
    raise ValueError(f"run_folder: unknown kind {kind!r} (target, target_subdir, source, experiment)")

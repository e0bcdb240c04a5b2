"""Which runs a path names, at whatever level of an experiment's folder tree it is given, and where the
committed runs it is compared with live (bench/compare.py).

Every experiment writes ``<paths.runs>/<experiment>/[<recipe>/]<pair>/<init>/seed<k>/run.json``
(:mod:`bench.layout`; ``adhoc/`` for runs outside the grid). Any of these folders names a *slice*:

- ``.../<pair>/<init>/seed<k>``: that one run; ``.../<pair>/<init>``: its seeds; ``.../<pair>``: its inits;
- a *runs folder* (the folder holding ``<pair>/<init>/seed<k>``: an experiment without recipes, one recipe's
  folder, an ``adhoc/``): all of it;
- a folder above runs folders (``<paths.runs>``, an experiment with recipes, ``results/<experiment>``): each
  runs folder under it, found down to three levels (not ``sources/``, ``manifests/``, ``table/``, ``adhoc/``).

A runs folder's reference is the committed copy at the same place: ``results/<experiment>/runs``, then
``adhoc/`` and ``<recipe>/`` as the runs record them (``DIR/horizon/paper`` ->
``results/horizon/runs/paper``).

    >>> Slice(Path("r/horizon/paper"), "horizon", "paper", pair="tinynet_d_to_e", seed=0).describe()
    'tinynet_d_to_e, seed 0'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.layout import ADHOC, MANIFESTS, SOURCES, TABLE, recipe_folders, target_folders
from bench.running.record import RUN_FILE, read_run

RESULTS = Path(__file__).resolve().parents[2] / "results"
SEED = re.compile(r"seed(\d+)")
NOT_RUNS = (SOURCES, MANIFESTS, TABLE, ADHOC)  # never searched for runs folders from above


class SliceError(ValueError):
    """One line saying what to give instead."""


@dataclass(frozen=True)
class Slice:
    root: Path  # the runs folder: holds <pair>/<init>/seed<k>
    experiment: str
    recipe: str | None = None
    adhoc: bool = False
    pair: str | None = None  # the slice inside it; None: every one
    init: str | None = None
    seed: int | None = None

    def holds(self, pair: str, init: str) -> bool:
        """Whether cell (pair, init) is in the slice."""
        return self.pair in (None, pair) and self.init in (None, init)

    def keeps(self, pair: str, init: str, seed: int) -> bool:
        """Whether a run of the runs folder is read: a seed slice drops the cell's other seeds."""
        return self.seed is None or not self.holds(pair, init) or seed == self.seed

    def describe(self) -> str:
        parts = [" / ".join(p for p in (self.pair, self.init) if p)] if self.pair or self.init else []
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts) or "all its runs"

    @property
    def place(self) -> tuple[bool, str | None]:
        """What a reference must match: adhoc or not, and the recipe."""
        return self.adhoc, self.recipe

    def reference(self) -> Path:
        """The committed runs folder at this slice's place: results/<experiment>/runs[/adhoc][/<recipe>]."""
        path = RESULTS / self.experiment / "runs"
        if self.adhoc:
            path = path / ADHOC
        return path / self.recipe if self.recipe else path


def _has_runs(folder: Path) -> bool:
    return any((d / RUN_FILE).is_file() for d in target_folders(folder))


def _runs_folders(path: Path, depth: int = 3) -> list[Path]:
    """The runs folders at or under ``path`` (a runs folder's recipe folders too)."""
    if _has_runs(path):
        return [path, *recipe_folders(path)]
    if not depth or not path.is_dir():
        return []
    found = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and child.name not in NOT_RUNS and not child.name.startswith("."):
            found += _runs_folders(child, depth - 1)
    return found


def _identity(root: Path) -> tuple[str, str | None]:
    """(experiment, recipe) as the run.json files of a runs folder record them; one of each, or SliceError."""
    experiments, recipes = set(), set()
    for seed_dir in target_folders(root):
        try:
            run = read_run(seed_dir / RUN_FILE)
        except (ValueError, OSError):
            continue  # reported where the runs are read (bench/results/runs.py)
        experiments.add(str(run.get("experiment")))
        recipes.add(run.get("recipe"))
    if len(experiments) != 1:
        raise SliceError(f"{root} holds runs of {len(experiments)} experiments ({', '.join(sorted(experiments))}): "
                         "give one experiment's runs folder")
    if len(recipes) != 1:
        shown = ", ".join(sorted(str(r) for r in recipes))
        raise SliceError(f"{root} holds runs of {len(recipes)} recipes ({shown}): give one recipe's folder")
    return experiments.pop(), recipes.pop()


def _slice(root: Path, **where) -> Slice:
    experiment, recipe = _identity(root)
    base = root.parent if recipe and root.name == recipe else root
    return Slice(root, experiment, recipe, base.name == ADHOC, **where)


def slices(path: Path) -> list[Slice]:
    """The slices ``path`` names (one per runs folder), or SliceError saying what to give."""
    if not path.is_dir():
        raise SliceError(f"{path}: no such folder")
    if (path / RUN_FILE).is_file() and SEED.fullmatch(path.name):
        return [_slice(path.parents[2], pair=path.parent.parent.name, init=path.parent.name,
                       seed=int(SEED.fullmatch(path.name).group(1)))]
    if any((d / RUN_FILE).is_file() for d in path.glob("seed*")):
        return [_slice(path.parents[1], pair=path.parent.name, init=path.name)]
    if any((d / RUN_FILE).is_file() for d in path.glob("*/seed*")) and not _has_runs(path):
        return [_slice(path.parent, pair=path.name)]
    if (path / "runs").is_dir() and _runs_folders(path / "runs"):
        path = path / "runs"  # results/<experiment>: its committed runs, not what else lies beside them
    roots = _runs_folders(path)
    if not roots:
        raise SliceError(f"{path}: no run.json under it at any level of <experiment>/[<recipe>/]<pair>/<init>/"
                         "seed<k>/ (give a folder of runs, e.g. results/runs/proxy)")
    return [_slice(root) for root in roots]

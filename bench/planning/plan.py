"""Plan a sweep: expand an experiment's grid into tasks and leave out what is finished.

An experiment's ``grid`` (``conf/experiment/*.yaml``) names ``pairs`` (or ``models``: every ordered pair of
them, as ``pair=custom pair.source=S pair.target=T``; or ``sources`` and ``targets``: each target with every other
model of ``sources``), ``inits``, ``seeds`` and optional ``prerequisites``
(command lines such as ``bench/train_ghn.py ...``) and ``init_overrides`` (options for one init method, e.g.
the GHN checkpoint). A plan has two stages:

* stage 1, prerequisites: one ``bench/train_source.py`` task per distinct source that a pending run needs
  and that is not cached yet (``source.weights=train``), plus the grid's prerequisites;
* stage 2, runs: one ``bench/run.py`` task per grid point whose run folder does not say finished or diverged and
  that no live process trains now (:meth:`RunFolder.decide`, the rule a run itself follows; a run whose process
  was killed is interrupted, resumable, and planned to resume). A source-free init (``random``, ``ghn``) runs
  once per (target, seed), in the pair folder :mod:`bench.baselines` picks: it would train the same network for
  every pair, and the table shares it between the pairs of that target by the same rule.
  A point outside the experiment's grid (``pair=``/``init=``/``seed=`` values it does not list) goes to the
  experiment's ``adhoc/`` folder, as the same run started by hand would (:func:`bench.layout.run_path`).

Files the runs read but nothing in the plan makes (an init's ``checkpoint``, e.g. the official GHN-2 file that
``paper_imagenet`` names under ``paths.checkpoints``) are listed in :attr:`Plan.missing`, one line each saying
where to get the file; bench/sweep.py prints them with the plan and refuses ``--local``/``--submit`` until
they are there.

Each task is a line of shell-quoted words to put after ``python`` (``slurm/array.sbatch`` does
``srun python <line>``). On the command line, ``pair=``, ``init=`` and ``seed=`` (comma lists allowed) fix
that axis of the grid; ``init.<key>=`` options go only to the inits whose composed ``init`` config has that
key; every other override goes to every task.

    from bench.planning.plan import plan_sweep
    from bench.planning.manifests import write_manifests
    plan = plan_sweep(["experiment=smoke", "grid.inits=[random,dpiat]", "grid.seeds=[0,1]"])
    print(plan.summary()); record = write_manifests(plan, mode="local", command=["example"])
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from bench.baselines import pick_baseline, source_free
from bench.config import CONF_DIR, apply_recipe, check_config, check_recipes, distilled, register_configs
from bench.config_help import unknown_override_key
from bench.data.datasets import check_data_root
from bench.errors import USER_ERRORS, SweepError
from bench.layout import ADHOC, experiment_path, model_pairs, outside_recipe_scope
from bench.planning.committed import (
    GHN_FILES,
    SOURCE_FILES,
    adopt_folder,
    adopt_run,
    committed_copy,
    committed_folder,
    committed_runs_dir,
)
from bench.running.needs import FILE_OPTIONS, made_by_prerequisites, missing_files
from bench.refusal import hydra_message
from bench.running.folder import SOURCE_WEIGHTS, RunFolder

RUN_SCRIPT = "bench/run.py"
SOURCE_SCRIPT = "bench/train_source.py"
AXES = ("pair", "init", "seed", "recipe")


@dataclass(frozen=True)
class PairPoint:
    """One value of the pair axis: a conf/pair/ name, or pair=custom with a source and a target."""

    choice: str
    source: str | None = None
    target: str | None = None

    def overrides(self) -> list[str]:
        if self.choice == "custom":
            return ["pair=custom", f"pair.source={self.source}", f"pair.target={self.target}"]
        return [f"pair={self.choice}"]

    def __str__(self) -> str:
        return f"{self.source}_to_{self.target}" if self.choice == "custom" else self.choice


@dataclass
class Task:
    kind: str  # "source" | "prerequisite" | "run"
    argv: list[str]  # what follows `python`: the script, then its arguments
    folder: Path | None = None  # the run folder it fills (None: a prerequisite of the experiment config)
    pair: PairPoint | None = None  # runs: the grid's pair
    network: str | None = None  # the timm model it trains (the pair's target, or the source)
    note: str = ""  # runs recorded running: what trains it now, or why it counts as interrupted
    # runs: the stage-1 tasks this one waits for (its source's training, the prerequisite that writes a file it
    # reads); None: every stage-1 task. --local starts a run as soon as its own are done (SLURM: all of stage 1)
    needs: list["Task"] | None = None

    @property
    def line(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


@dataclass
class Plan:
    experiment: str
    runs_dir: Path  # <paths.runs>/<experiment_name>
    overrides: list[str]  # as given
    axes: dict[str, list[str]]  # pair, init, seed values, as strings
    prerequisites: list[Task] = field(default_factory=list)  # stage 1
    runs: list[Task] = field(default_factory=list)  # stage 2: the runs still to do
    finished: list[Task] = field(default_factory=list)  # left out
    failed: list[Task] = field(default_factory=list)  # left out: diverged before, would diverge again
    running: list[Task] = field(default_factory=list)  # left out: another process trains it now
    interrupted: list[Task] = field(default_factory=list)  # of runs: recorded running, its process gone; resumes
    retried: list[Task] = field(default_factory=list)  # of runs: failed before (not diverged), tried again
    shared: list[Task] = field(default_factory=list)  # left out: a source-free run of another pair serves them
    trainer: dict[str, Any] = field(default_factory=dict)  # accelerator, devices, num_nodes of the runs
    missing: list[str] = field(default_factory=list)  # one line per file the runs need that nobody makes
    compare_dirs: list[Path] = field(default_factory=list)  # grid.compare_with: their runs join the table
    analyses: list[str] = field(default_factory=list)  # grid.analyses: scripts run after the table (--local)
    # grid.resume_committed: results/<experiment>/runs, where finished runs are taken from and copied to
    committed_dir: Path | None = None
    adopted: list[Task] = field(default_factory=list)  # of finished: in committed_dir, not in runs_dir before
    adopt: bool = False  # the adopted runs were copied into runs_dir (False: a plan only, nothing written)

    @property
    def adhoc_dir(self) -> Path:
        """Where the points outside the experiment's grid go (bench/layout.py)."""
        return self.runs_dir / ADHOC

    @property
    def adhoc(self) -> list[Task]:
        """The planned points outside the experiment's grid: their folders are under :attr:`adhoc_dir`."""
        return [t for t in self.runs + self.finished + self.failed + self.running
                if t.folder is not None and self.adhoc_dir in t.folder.parents]

    @property
    def n_points(self) -> int:
        return len(self.runs) + len(self.finished) + len(self.failed) + len(self.running)

    def summary(self) -> str:
        a = self.axes
        recipes = (f" x {len(a['recipe'])} recipes ({', '.join(a['recipe'])})" if a.get("recipe") else "")
        lines = [f"experiment {self.experiment}: {len(a['pair'])} pairs x {len(a['init'])} inits "
                 f"({', '.join(a['init'])}) x {len(a['seed'])} seeds ({', '.join(a['seed'])}){recipes} = "
                 f"{self.n_points + len(self.shared)} points"
                 + (f", {len(self.shared)} of them served by a source-free run of another pair with the same "
                    f"target" + (" and recipe" if a.get("recipe") else "") if self.shared else "")
                 + f": {self.n_points} runs, {len(self.finished)} finished, {len(self.runs)} to run"
                 + (f" ({len(self.interrupted)} of them interrupted, resumable)" if self.interrupted else "")
                 + (f" ({len(self.retried)} of them failed before, tried again)" if self.retried else "")
                 + (f", {len(self.running)} running now (left out)" if self.running else "")
                 + (f", {len(self.failed)} failed before (left out)" if self.failed else "")]
        if self.committed_dir is not None:
            copies = "" if self.adopt or not self.adopted else "; --local or --submit copies them into the runs folder"
            lines.append(f"  {len(self.adopted)} of the finished runs {'taken from' if self.adopt else 'are in'} the "
                         f"committed {self.committed_dir} (grid.resume_committed{copies}); each run that finishes "
                         "here is copied there")
        lines += [f"  left out, diverged before: {t.folder}  (delete the folder to run it again)" for t in self.failed]
        lines += [f"  left out, running now: {t.folder}  ({t.note})" for t in self.running]
        lines += [f"  interrupted (resumable): {t.folder}  ({t.note})" for t in self.interrupted]
        lines += [f"  failed before, tried again: {t.folder}  ({t.note})" for t in self.retried]
        lines.append(f"  stage 1, prerequisites: {len(self.prerequisites)} tasks"
                     + (f" ({sum(t.kind == 'source' for t in self.prerequisites)} source trainings)"
                        if self.prerequisites else ""))
        lines.append(f"  stage 2, runs: {len(self.runs)} tasks")
        lines.append(f"  run folders: {self.runs_dir}")
        if self.adhoc:
            lines.append(f"  {len(self.adhoc)} of the runs are outside the experiment's grid: ad hoc, in "
                         f"{self.adhoc_dir} (not in the experiment's table; their own: "
                         f".venv/bin/python bench/aggregate.py {self.adhoc_dir} --out <folder>)")
        lines += [f"  missing file: {m}" for m in self.missing]
        lines += [f"  the table also takes this grid's pairs from {d}" + ("" if d.is_dir() else
                  " (not there yet: run that experiment first)") for d in self.compare_dirs]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Overrides:
    passthrough: list[str] = field(default_factory=list)  # to every task
    grid: list[str] = field(default_factory=list)  # grid.*: what to expand, not part of any task's line
    init_options: list[tuple[str, str]] = field(default_factory=list)  # (key, override) for init.<key>=...
    axes: dict[str, list[str]] = field(default_factory=dict)  # pair / init / seed given on the command line
    custom: dict[str, str] = field(default_factory=dict)  # pair.source / pair.target


def _split_overrides(overrides: list[str]) -> _Overrides:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise SweepError(f"cannot parse the overrides: {e}") from None
    if misspelt := unknown_override_key(overrides):  # Hydra's advice for it ("+key=...") does not fit
        raise SweepError(misspelt)
    out = _Overrides()
    for o in parsed:
        key = o.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise SweepError(f"{o.input_line}: the sweep submits through slurm/array.sbatch and takes no hydra "
                             "settings; for the submitit launcher use: "
                             ".venv/bin/python bench/run.py -m hydra/launcher=slurm ...")
        if key in AXES and not o.is_delete():
            values = o.value().list if o.is_sweep_override() else [o.value()]
            if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
                raise SweepError(f"{o.input_line}: give {key} as a value or a comma list, e.g. {key}=a,b")
            out.axes[key] = [str(v) for v in values]
        elif o.is_sweep_override():
            raise SweepError(f"{o.input_line}: only pair, init, seed and recipe take comma lists (they are the grid's "
                             "axes; grid.pairs / grid.models / grid.inits / grid.seeds / grid.recipes set them too)")
        elif key in ("pair.source", "pair.target"):
            out.custom[key.split(".")[1]] = str(o.value())
        elif key == "grid.recipes" or key.startswith("grid.recipes."):  # a run applies its recipe from there
            out.passthrough.append(o.input_line)
        elif key == "grid" or key.startswith("grid."):
            out.grid.append(o.input_line)
        elif key.startswith("init."):
            out.init_options.append((key.split(".", 1)[1].split(".")[0], o.input_line))
        else:
            out.passthrough.append(o.input_line)
    if out.custom and "custom" not in out.axes.get("pair", ["custom"]):
        raise SweepError("pair.source / pair.target go with pair=custom (one custom pair, e.g. pair=custom,b2_to_b0)")
    if out.custom and set(out.custom) != {"source", "target"}:
        raise SweepError("give both pair.source=S and pair.target=T (with pair=custom)")
    return out


def _check_inits(inits: list[str]) -> None:
    options = GlobalHydra.instance().config_loader().get_group_options("init")  # yaml files and registered inits
    for init in inits:
        if init not in options:
            raise SweepError(f"unknown init {init!r}: available inits are {', '.join(sorted(options))}")


def _init_keys(init: str) -> set[str]:
    """The options of init ``init`` as Hydra composes its group: a yaml file's keys, or a registered method's."""
    return set(_compose([f"+init={init}"], config_name=None).init.keys())


def _compose(overrides: list[str], hydra_config: bool = False, config_name: str | None = "config") -> DictConfig:
    try:
        return compose(config_name, overrides=overrides, return_hydra_config=hydra_config)
    except (HydraException, OmegaConfBaseException) as e:  # one line, as bench/run.py says it
        raise SweepError(hydra_message(e, overrides)) from None


def plan_sweep(overrides: list[str], *, adopt: bool = False) -> Plan:
    """The plan for ``overrides`` (Hydra overrides as on bench/run.py's command line). Reads the run folders and
    writes nothing, unless ``adopt``: then a grid that keeps its runs in the repository (grid.resume_committed)
    gets its committed finished runs copied into the runs folder (what --local and --submit do before they start)."""
    register_configs()  # init methods registered since bench.config was imported become options too
    ov = _split_overrides(list(overrides))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        base = _compose(ov.passthrough + ov.grid, hydra_config=True)
        choices = base.hydra.runtime.choices
        grid = base.grid

        # -- the axes -------------------------------------------------------------------------------------
        if "pair" in ov.axes:
            pairs = [PairPoint("custom", ov.custom["source"], ov.custom["target"]) if p == "custom"
                     else PairPoint(p) for p in ov.axes["pair"]]
            if any(p.choice == "custom" and p.source is None for p in pairs):
                raise SweepError("pair=custom needs pair.source=S pair.target=T")
        elif ov.custom:
            pairs = [PairPoint("custom", ov.custom["source"], ov.custom["target"])]
        else:
            pairs = [PairPoint(p) for p in grid.pairs]
            pairs += [PairPoint("custom", s, t) for s, t in model_pairs(grid)]
            if not pairs:  # no grid: the experiment's own pair
                c = choices.pair
                pairs = [PairPoint(c, base.pair.source, base.pair.target) if c == "custom" else PairPoint(c)]
        pairs = list(dict.fromkeys(pairs))
        inits = list(dict.fromkeys(ov.axes.get("init") or list(grid.inits) or [choices.init]))
        try:
            seeds = [int(s) for s in ov.axes.get("seed") or list(grid.seeds) or [base.seed]]
        except ValueError:
            raise SweepError(f"seeds must be integers, got {ov.axes.get('seed')}") from None
        seeds = list(dict.fromkeys(seeds))
        try:
            check_recipes(grid)
        except USER_ERRORS as e:
            raise SweepError(str(e)) from None
        recipes: list[str | None] = list(dict.fromkeys(ov.axes.get("recipe") or list(grid.get("recipes") or {})))
        unknown = [r for r in recipes if r not in (grid.get("recipes") or {})]
        if unknown:
            known = ", ".join(grid.get("recipes") or {}) or "none: grid.recipes is empty"
            raise SweepError(f"recipe={','.join(unknown)}: not a recipe of this experiment (its recipes: {known})")
        recipes = recipes or [None]

        # -- init options go to the inits that have them --------------------------------------------------
        _check_inits(inits)
        keys = {i: _init_keys(i) if ov.init_options else set() for i in inits}
        for key, line in ov.init_options:
            if not any(key in k for k in keys.values()):
                raise SweepError(f"{line}: no init in this sweep ({', '.join(inits)}) has an option {key!r}")

        grid_init = {k: list(v) for k, v in (grid.get("init_overrides") or {}).items()}
        for init, lines in grid_init.items():
            bad = [line for line in lines if not str(line).startswith("init.")]
            if bad:
                raise SweepError(f"grid.init_overrides.{init}: {bad} - only init.<option>=value settings belong here")

        def init_overrides(init: str) -> list[str]:  # the experiment's first, the command line's win
            return [*grid_init.get(init, []), *[line for key, line in ov.init_options if key in keys[init]]]

        experiment = experiment_path(base.paths.runs, base.experiment_name)
        plan = Plan(experiment=base.experiment_name, runs_dir=experiment, overrides=list(overrides),
                    axes={"pair": [str(p) for p in pairs], "init": inits, "seed": [str(s) for s in seeds],
                          # the recipe axis exists only in an experiment that has recipes
                          **({"recipe": [r for r in recipes if r is not None]} if recipes != [None] else {})},
                    compare_dirs=[experiment_path(base.paths.runs, e) for e in grid.get("compare_with") or []],
                    analyses=[str(a) for a in grid.get("analyses") or []])
        if grid.get("resume_committed"):
            plan.committed_dir, plan.adopt = committed_runs_dir(base.experiment_name), adopt
        points: list[_Point] = []
        for choice, init in itertools.product(dict.fromkeys(p.choice for p in pairs), inits):
            # one compose per (pair file, init): composing costs ~0.3 s
            cell = _compose(ov.passthrough + [f"pair={choice}", f"init={init}"] + init_overrides(init))
            for recipe, pair, seed in itertools.product(recipes, [p for p in pairs if p.choice == choice], seeds):
                if outside_recipe_scope(grid, str(pair), init, recipe):  # grid.recipe_scope: not run with it
                    continue
                cfg = copy.deepcopy(cell)
                if pair.choice == "custom":
                    cfg.pair.source, cfg.pair.target = pair.source, pair.target
                cfg.seed = seed
                argv = [RUN_SCRIPT, *ov.passthrough, *init_overrides(init), *pair.overrides(), f"init={init}",
                        f"seed={seed}"]
                if recipe is not None:  # the run applies the recipe's settings itself (bench.config.apply_recipe)
                    cfg.recipe = recipe
                    argv.append(f"recipe={recipe}")
                points.append(_point(cfg, argv, pair, experiment, plan.committed_dir, adopt))

        baselines = _baseline_folders(points)
        needed_sources: dict[Path, Task] = {}
        for point in points:
            task, cfg = point.task, point.cfg
            if point.source_free and baselines[_baseline_key(point)] != cfg.pair.name:
                plan.shared.append(task)
                continue
            if point.adopted:
                plan.adopted.append(task)
            lists = {"finished": plan.finished, "diverged": plan.failed, "running": plan.running}
            lists.get(point.action, plan.runs).append(task)
            if task.note and point.action in ("start", "resume"):
                (plan.retried if point.failed_before else plan.interrupted).append(task)
            if point.action in lists:
                continue
            if not plan.trainer:
                plan.trainer = {k: cfg.trainer[k] for k in ("accelerator", "devices", "num_nodes")}
            task.needs = []
            if not point.source_free and cfg.source.weights == "train":
                source = RunFolder.source(cfg).path
                kept = False  # trained on the machine that started the grid and committed: keep using it
                if plan.committed_dir is not None:
                    kept = committed_folder(source, experiment, plan.committed_dir, SOURCE_FILES) is not None
                    if plan.adopt:  # --local / --submit: copied here; a plan only counts it (it writes nothing)
                        adopt_folder(source, experiment, plan.committed_dir, SOURCE_FILES)
                if source not in needed_sources and not (source / SOURCE_WEIGHTS).exists() and not kept:
                    needed_sources[source] = Task("source", [SOURCE_SCRIPT, *ov.passthrough, *task.pair.overrides()],
                                                  source, task.pair, cfg.pair.source)
                if source in needed_sources:
                    task.needs.append(needed_sources[source])
        if grid.get("seed_major"):  # every run of seed 0 first, then seed 1, ...: a grid stopped early has whole seeds
            order = {id(p.task): p.cfg.seed for p in points}
            plan.runs.sort(key=lambda t: order[id(t)])
        if plan.runs and plan.committed_dir is not None and plan.adopt:  # the grid's own GHN-2, trained before
            adopt_folder(experiment / "ghn", experiment, plan.committed_dir, GHN_FILES)
        if plan.runs:  # prerequisites serve the runs: with none left to do, there is nothing to prepare
            cfgs = {id(p.task): p.cfg for p in points}
            plan.prerequisites = [*needed_sources.values(),
                                  *_needed_prerequisites(_grid_prerequisites(grid), plan.runs, cfgs, grid_init)]
            pending = {id(t) for t in plan.runs}
            plan.missing = missing_files([p.cfg for p in points if id(p.task) in pending], plan.prerequisites)
    return plan


@dataclass
class _Point:
    task: Task
    cfg: DictConfig
    action: str  # what RunFolder.decide says: start, resume, finished, running or diverged
    source_free: bool  # a baseline of every pair with this target (bench.baselines)
    failed_before: bool = False  # its run.json says failed (not diverged): tried again, the note says why
    adopted: bool = False  # its finished record was taken from the committed copy (grid.resume_committed)


def _point(cfg: DictConfig, argv: list[str], pair: PairPoint, experiment: Path | None = None,
           committed: Path | None = None, adopt: bool = False) -> _Point:
    """A grid point, its config checked before anything is submitted, and its run folder's decision; when it has
    no record here while ``committed``, the experiment's committed runs, has its finished one, the decision is that
    record's (copied here first when ``adopt``)."""
    line = " ".join(shlex.quote(a) for a in argv)
    try:
        apply_recipe(cfg)  # as bench/run.py does: the same run identity
        check_config(cfg)  # missing values, unknown models or init methods
        check_data_root(cfg.data)  # else every task in the queue would fail on it
        folder = RunFolder.target(cfg)
        kept = committed_copy(folder.path, experiment, committed) if committed is not None else None
        adopted = kept is not None
        if adopted and adopt:
            adopt_run(folder.path, experiment, committed)
        decision = (folder if not adopted or adopt else dataclasses.replace(folder, path=kept)).decide()
    except USER_ERRORS as e:
        raise SweepError(f"{line}: {e}") from None
    if decision.action == "conflict":
        raise SweepError(decision.reason)
    note = decision.reason if decision.action == "running" else ""
    if decision.interrupted:
        note = decision.interrupted + ("; resumes from its last checkpoint" if decision.action == "resume"
                                       else "; starts again: no checkpoint yet")
    record = decision.record or {}
    failed_before = decision.action in ("start", "resume") and record.get("status") == "failed"
    if failed_before:
        reason = " ".join(str(record.get("failure_reason") or "no reason recorded").split())
        note = f"failed before: {reason[:160]}{'...' if len(reason) > 160 else ''}"
    task = Task("run", argv, folder.path, pair, cfg.pair.target, note)
    # a distilled run reads the pair's source (its teacher): never a baseline of other pairs
    free = source_free(cfg.init.name, cfg.pair.source) and not distilled(cfg)
    return _Point(task, cfg, decision.action, free, failed_before, adopted)


def _baseline_key(p: _Point) -> tuple[Path, str, str]:
    """(table folder, target, source-free init): the experiment's and its adhoc/ each get their own baselines."""
    return p.task.folder.parents[2], p.cfg.pair.target, p.cfg.init.name


def _baseline_folders(points: list[_Point]) -> dict[tuple[Path, str, str], str]:
    """(table folder, target, source-free init) -> the pair folder whose runs serve every pair of that target."""
    candidates: dict[tuple[Path, str, str], dict[str, int]] = {}
    for p in points:
        if p.source_free:
            held = candidates.setdefault(_baseline_key(p), {})
            if p.cfg.pair.name not in held:  # the runs of that init the pair folder holds already, any seed,
                # and those a sweep takes into it from the committed runs (a plan alone does not copy them)
                seeds = {f.parent.name for f in p.task.folder.parent.glob("seed*/run.json")}
                seeds |= {q.task.folder.name for q in points if q.adopted and q.task.folder.parent == p.task.folder.parent}
                held[p.cfg.pair.name] = len(seeds)
    return {key: pick_baseline(held.items(), target=key[1]) for key, held in candidates.items()}


def _needed_prerequisites(prerequisites: list[Task], runs: list[Task], cfgs: dict[int, DictConfig],
                          grid_init: dict[str, list[str]]) -> list[Task]:
    """The grid's prerequisites that the pending ``runs`` need, each run's ``needs`` extended with them.

    A prerequisite that writes a file an init option names (``bench/train_ghn.py ... out_dir=D`` and
    ``init.checkpoint=D/ghn.pt``) serves the runs that read that file and no other: with none of them pending it
    is left out (a slice of the grid without ``ghn`` trains no GHN-2). One that writes no file the grid's inits
    name (in their options or ``grid.init_overrides``) is needed by every run."""
    named = [line.split("=", 1)[1] for lines in grid_init.values() for line in lines
             if "=" in line and line.split("=", 1)[0].split(".")[-1] in FILE_OPTIONS]
    kept = []
    for prereq in prerequisites:
        readers = [t for t in runs if any(isinstance(v := cfgs[id(t)].init.get(o), str) and v
                                          and made_by_prerequisites(v, [prereq]) for o in FILE_OPTIONS)]
        linked = readers or any(made_by_prerequisites(v, [prereq]) for v in named)
        if linked and not readers:
            continue  # it makes a file that no pending run reads
        kept.append(prereq)
        for t in readers if linked else runs:
            t.needs = [*(t.needs or []), prereq]
    return kept


def _grid_prerequisites(grid: DictConfig) -> list[Task]:
    """``grid.prerequisites``: command lines (script and arguments, run with python), e.g. a GHN training.

    They must be idempotent: skip their work when its output already exists, as bench/run.py does.
    """
    tasks = []
    for line in grid.get("prerequisites") or []:
        argv = shlex.split(str(line))
        if argv and argv[0] in ("python", "python3"):
            argv = argv[1:]
        if not argv or not argv[0].endswith(".py"):
            raise SweepError(f"grid.prerequisites: {line!r} is not a python script command line "
                             "(expected e.g. 'bench/train_ghn.py data=cifar10 ...')")
        tasks.append(Task("prerequisite", argv))
    return tasks



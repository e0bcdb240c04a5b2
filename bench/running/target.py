"""One target run, from a composed config to a finished run folder: what ``bench/run.py`` calls.

:func:`run` checks the config, then lets the harness train the run folder of (pair, init, seed); a fresh run
starts from :func:`initialise`: the target with timm's initialisation for the run seed, then the init method
``cfg.init.name`` from the one registry (``dpiat.initialize``), given the source network when the method
reads one (:func:`bench.running.sources.get_source`: trained here and cached, timm's, a file, ...).
Re-running the same config resumes from the newest checkpoint, or returns at once when the run is finished.

From Python (tests do this)::

    from hydra import compose, initialize_config_dir
    from bench.config import CONF_DIR
    from bench.running.target import run
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke", "paths.runs=/tmp/runs"])
    record = run(cfg)                    # the run.json, as a dict
    print(record["final_val_top1"])
"""

from __future__ import annotations

import time
from collections.abc import Callable

from omegaconf import DictConfig

import dpiat
from bench.config import apply_recipe, check_config, distilled, init_options
from bench.data.datasets import check_data_present
from bench.errors import ConfigError, RunFolderError
from bench.running.needs import missing_files
from bench.running import sources
from bench.running.folder import RunFolder
from bench.running.harness import Initialised, execute, fresh_model, model_kwargs, print_rank0
from bench.running.lit import global_rank
from bench.running.teacher import build_teacher
from dpiat.errors import DpiatError


def run(cfg: DictConfig, *, log: Callable[[str], None] = print_rank0) -> dict:
    """Run (or resume, or skip) the run ``cfg`` describes; return its run.json."""
    apply_recipe(cfg)  # recipe=<name>: its optim settings (grid.recipes), before the run's identity is taken
    check_config(cfg)
    sources.new_launch()
    return execute(RunFolder.target(cfg), cfg, lambda: initialise(cfg, log), log=log,
                   teacher_of=lambda: build_teacher(cfg, sources.get_source, log))


def check_before_run(cfg: DictConfig) -> None:
    """Everything that would stop the run ``cfg`` before its first epoch and can be known without writing
    anything (``bench/run.py`` calls it before Hydra makes the run folder): the config (:func:`check_config`),
    a folder that holds another configuration, and, unless the run is finished already, the data's files, an
    init option's file and the source's weights (:func:`bench.running.sources.check_source`). Raises the error ``run`` would."""
    apply_recipe(cfg)
    check_config(cfg)
    decision = RunFolder.target(cfg).decide()
    if decision.action == "conflict":
        raise RunFolderError(decision.reason)
    if decision.action == "finished":  # it says so and stops: nothing below is read
        return
    check_data_present(cfg.data)
    missing = missing_files([cfg], [])  # an init option's file (init=ghn's checkpoint)
    if missing:
        raise ConfigError(missing[0])
    if dpiat.get_init(cfg.init.name).needs_source or distilled(cfg):  # a teacher is the pair's source too
        sources.check_source(cfg)


def initialise(cfg: DictConfig, log: Callable[[str], None] = print_rank0) -> Initialised:
    """The fresh target of ``cfg``, initialised by its init method, and what run.json records about that."""
    name = cfg.init.name
    method = dpiat.get_init(name)
    source, source_info = sources.get_source(cfg, log=log) if method.needs_source else (None, None)
    model = fresh_model(cfg.pair.target, cfg, cfg.seed)
    t0 = time.perf_counter()
    report = dpiat.initialize(name, model, source=source, **init_options(cfg.init))
    init_seconds = round(time.perf_counter() - t0, 4)  # the transfer or prediction itself (the source is sunk)
    similarity = None
    if cfg.pair.source and global_rank() == 0:
        try:  # of the two networks as built here (their classes and input channels), on the meta device
            target_net = dpiat.create_model(cfg.pair.target, device="meta", num_classes=cfg.data.num_classes,
                                            in_chans=cfg.data.in_chans, **model_kwargs(cfg, "target"))
            similarity = float(dpiat.similarity(sources.build_source_model(cfg, device="meta"), target_net))
        except DpiatError as e:
            log(f"note: no similarity for {cfg.pair.source} -> {cfg.pair.target}: {e}")
    if source is not None:
        log(f"init {name}: {report.get('n_matched', '?')}/{report.get('n_target_layers', '?')} target layers "
            f"from {cfg.pair.source}, {100 * report.get('fraction_overwritten', 0):.1f}% of parameters overwritten")
    return model, {"init_report": report, "init_seconds": init_seconds, "similarity": similarity,
                   "source_weights": source_info}

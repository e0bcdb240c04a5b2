"""Whether ``bench/run.py <argv>`` can run, decided before Hydra makes the run folder (nothing written): the
config composes (Hydra's messages rewritten into one line by :mod:`bench.refusal`) and
:func:`bench.running.target.check_before_run` passes. Lives beside the run it guards, so that bench.refusal (also
used by the sweep plan) needs nothing from bench.running."""

from __future__ import annotations

import sys

from bench.refusal import REFUSED, _split, hydra_message, one_line


def refusal(argv: list[str]) -> str | None:
    """Why ``bench/run.py <argv>`` cannot run, in one line, or None. Reads the run folder; writes nothing."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bench.config import CONF_DIR
    from bench.errors import USER_ERRORS

    overrides, run = _split(argv)
    if overrides is None:
        return None
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        return hydra_message(e, overrides)
    if not run:
        return None
    from bench.running.target import check_before_run  # here: target imports Lightning and torch

    try:
        check_before_run(cfg)
    except USER_ERRORS as e:
        return one_line(str(e))
    return None


def refuse(argv: list[str]) -> None:
    """Exit with status 2 and one line when ``bench/run.py <argv>`` cannot run; return when it can."""
    reason = refusal(argv)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(REFUSED)

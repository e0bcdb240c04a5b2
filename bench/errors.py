"""The benchmark's errors: mistakes a user can fix, each message saying what to change.

They are not :class:`dpiat.DpiatError` subclasses: the library's errors are about models, weights and
transfers, these about experiments (configs, data, run folders, sweeps, tables). Entry points report both
the same way, one line without a traceback::

    from bench.errors import USER_ERRORS
    try:
        main()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
"""

from __future__ import annotations

from dpiat.errors import DpiatError


class BenchError(Exception):
    """A problem with an experiment's input or state, explained in the message."""


class ConfigError(BenchError):
    """A composed config that cannot run: a missing value, an init that needs a source the pair lacks, ..."""


class DataError(BenchError):
    """Data that cannot be found or used as configured."""


class SourceError(BenchError):
    """Source weights that cannot be had as ``source.weights`` asks (no internet, no such file, ...)."""


class RunFolderError(BenchError):
    """A run folder that cannot be continued: another configuration in it, or a broken run file."""


class AlreadyFailed(BenchError):
    """A run that diverged before: re-running it would fail the same way."""


class Interrupted(BenchError):
    """Training stopped early without an error (e.g. Lightning's graceful shutdown): resumable."""


class DivergedError(BenchError):
    """The training loss became non-finite or exploded: the run stops and is marked failed."""


class SweepError(BenchError):
    """A sweep that cannot be planned or submitted."""


class AggregateError(BenchError):
    """Nothing could be aggregated (or the command line is wrong)."""


# What an entry point reports as `error: <message>`: the benchmark's errors and the library's.
USER_ERRORS = (BenchError, DpiatError)

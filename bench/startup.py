"""Ctrl-C while an entry script is still starting (imports, config): one line in its log, no traceback.

    import bench.startup  # noqa: F401  (first in bench/run.py, train_source.py, train_ghn.py)

A sweep's task spends its first seconds importing torch, Lightning and Hydra; a Ctrl-C then (the sweep passes it
on to every task it runs) used to end the task's log with a KeyboardInterrupt traceback. Now a KeyboardInterrupt
that reaches the top of the script prints one line instead; Python still ends the process as stopped by SIGINT
(status 130 in a shell, -2 to subprocess), so the sweep sees an interrupted task, and rerunning resumes it.
Any other exception is printed as before.
"""

from __future__ import annotations

import sys

_previous = sys.excepthook


def _interrupted(kind, value, traceback) -> None:
    if issubclass(kind, KeyboardInterrupt):
        script = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "python"
        print(f"{script}: interrupted while starting, before any work: run the same command again",
              file=sys.stderr, flush=True)
        return
    _previous(kind, value, traceback)


sys.excepthook = _interrupted

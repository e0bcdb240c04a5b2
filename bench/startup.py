"""Ctrl-C while an entry script is still starting (imports, config): one line in its log, no traceback.

    import bench.startup  # noqa: F401  (first in bench/run.py, train_source.py, train_ghn.py)

A sweep's task spends its first seconds importing torch, Lightning and Hydra; a Ctrl-C then (the sweep passes it
on to every task it runs) used to end the task's log with a KeyboardInterrupt traceback. Now a KeyboardInterrupt
that reaches the top of the script prints one line instead; Python still ends the process as stopped by SIGINT
(status 130 in a shell, -2 to subprocess), so the sweep sees an interrupted task, and rerunning resumes it.
Any other exception is printed as before.

A Ctrl-C that lands *inside* an import can leave a library half initialised (numpy then fails with a
RecursionError in its module ``__getattr__``, whatever catches the interrupt), so during the imports a SIGINT is
only noted; the script calls :func:`imports_done` once they are over, which restores Ctrl-C and, if one came,
prints the one line and ends the process by SIGINT.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_previous = sys.excepthook
_pending = False
_LINE = "interrupted while starting, before any work: run the same command again"


def _interrupted(kind, value, traceback) -> None:
    if issubclass(kind, KeyboardInterrupt):
        script = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "python"
        print(f"{script}: {_LINE}", file=sys.stderr, flush=True)
        return
    _previous(kind, value, traceback)


sys.excepthook = _interrupted


def _note(signum, frame) -> None:
    global _pending
    _pending = True


def imports_done() -> None:
    """Ctrl-C works again from here; one that came during the imports ends the process now, in one line."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is _note:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _pending:
        script = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "python"
        print(f"{script}: {_LINE}", file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # ends as stopped by SIGINT: a sweep sees an interrupted task


def _entry_script() -> bool:
    """Imported by an entry script run as a program (not, say, by a test process importing a module)."""
    path = str(getattr(sys.modules.get("__main__"), "__file__", "") or "").replace("\\", "/")
    return path.rsplit("/", 1)[-1] in ENTRY_SCRIPTS


ENTRY_SCRIPTS = ("run.py", "train_source.py", "train_ghn.py")  # each calls imports_done() first under __main__
# only where Python's own Ctrl-C handler is in place (an ignored SIGINT stays ignored)
if (_entry_script() and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
    signal.signal(signal.SIGINT, _note)

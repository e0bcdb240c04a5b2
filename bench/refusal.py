"""A command line that cannot run is refused in one line, before anything is written: ``bench/run.py``'s check.

Hydra makes the run folder (its ``.hydra/`` record, then run.json and run.log) before the task function starts,
so a run refused inside it leaves a failed run behind that the table counts. :func:`refusal` composes the config
from the command line as Hydra will, and runs every check that needs no training
(:func:`bench.running.target.check_before_run`: the config, the run folder, the data's files, the source's
weights), then returns why the run cannot start, in one line, or None; ``bench/run.py`` prints it as
``error: ...`` and exits with status 2 before Hydra starts.

Hydra's own messages are rewritten by :func:`hydra_message` into one line with the options that exist, the
closest first: a misspelt group option (Hydra lists its options and then its config search path) and a value of
the wrong type (Hydra adds ``full_key``/``object_type`` lines)::

    >>> from hydra.errors import MissingConfigException
    >>> e = MissingConfigException("In 'config': Could not find 'init/dpiatt'", "init/dpiatt", ["dpiat", "ghn"])
    >>> hydra_message(e, ["init=dpiatt"])
    "init=dpiatt: there is no init 'dpiatt' (did you mean dpiat?); the init options: dpiat, ghn"
    >>> e = MissingConfigException("In 'config': Could not find 'data/fashon_mnist'", "data/fashon_mnist",
    ...                            ["cifar10", "fashion_mnist"])
    >>> hydra_message(e, ["data=fashon_mnist"])
    "data=fashon_mnist: there is no data 'fashon_mnist' (did you mean fashion_mnist?); the data options: cifar10, fashion_mnist"
"""

from __future__ import annotations

import re
from typing import Any

from dpiat.errors import close_matches

REFUSED = 2  # the exit status of a refused command line (bench/run.py, bench/sweep.py)
# Hydra's flags that print the config instead of running it (their value follows): only the config is checked
PRINT_FLAGS = ("--cfg", "-c", "--package", "-p")
RUN_FLAGS = ("--run", "-r", "--resolve")  # flags that leave the run as it is
_SEARCH_PATH = ("Config search path", "See https://hydra.cc")
_TYPE_WORDS = {"Float": "a number (e.g. 0.001)", "Integer": "a whole number", "bool": "true or false"}


def one_line(text: str) -> str:
    """A message of several lines (a library error listing keys, say) as one line."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _override_for(key: str, overrides: list[str]) -> str | None:
    """The command-line override that sets ``key`` (``optim.lr=abc`` for ``optim.lr``), if one does."""
    for arg in reversed(overrides):
        if arg.lstrip("+~").split("=", 1)[0] == key:
            return arg
    return None


def _schema_default(key: str) -> str | None:
    """The schema's default of a dotted key, as written in bench/config.py (None: none, or not a schema key)."""
    from bench.config_help import ROOT, schema_fields

    cls = ROOT
    for i, part in enumerate(key.split(".")):
        f = schema_fields().get(cls, None)
        f = f.fields.get(part) if f else None
        if f is None:
            return None
        if i < key.count("."):
            if not f.nested:
                return None
            cls = f.nested
    default = f.default
    if not default or "MISSING" in default or "field(" in default or default == "None":
        return None
    if f.enum:
        return default.split(".")[-1]  # OptimName.adam -> adam
    return default.lower() if default in ("True", "False") else default


def _missing_option(e: Any, overrides: list[str]) -> str:
    """A group option that does not exist (``init=dpiatt``): the options there are, the closest first."""
    group, _, name = str(e.missing_cfg_file).rpartition("/")
    options = [str(o) for o in (e.options or [])]
    close = close_matches(name, options, n=3)
    where = re.match(r"In '([^']+)'", str(e))
    given = f"{group}={name}"
    asked = ""
    if where and where.group(1) != "config" and not any(a.lstrip("+~") == given for a in overrides):
        asked = f" (asked for by conf/{where.group(1)}.yaml)"
    return (f"{given}: there is no {group} {name!r}{asked}"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            + f"; the {group} options: {', '.join(options) if options else 'none'}")


def _wrong_value(cause: Any, overrides: list[str]) -> str:
    """A value the schema's type refuses (``optim.lr=abc``, ``seed=x``, ``optim.name=adamw``)."""
    key = re.sub(r"\[\d+\]$", "", str(getattr(cause, "full_key", "") or ""))
    given = _override_for(key, overrides) or key
    reason = str(getattr(cause, "msg", "") or cause).splitlines()[0].strip()
    choices = re.match(r"Invalid value '(.*)', expected one of \[(.*)\]", reason)
    if choices:
        options = [c.strip() for c in choices.group(2).split(",")]
        close = close_matches(choices.group(1), options, n=2)
        return (f"{given}: {key} is one of {', '.join(options)}"
                + (f" (did you mean {key}={close[0]}?)" if close else ""))
    kind = re.search(r"converted to (\w+)|not a valid (bool)", reason)
    if kind:
        word = _TYPE_WORDS.get(kind.group(1) or kind.group(2), (kind.group(1) or "").lower())
        value = given.split("=", 1)[1] if "=" in given else ""
        default = _schema_default(key)
        return (f"{given}: {key} takes {word}, not {value!r}"
                + (f" (its default: {key}={default})" if default else "")
                + "; .venv/bin/python bench/run.py --help lists every key with its value")
    return f"{given}: {reason}"


def hydra_message(e: BaseException, overrides: list[str]) -> str:
    """Hydra's (or OmegaConf's) error for composing ``overrides``, rewritten into one line that says what to fix."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ValidationError

    if isinstance(e, MissingConfigException) and getattr(e, "missing_cfg_file", None) \
            and "/" in str(e.missing_cfg_file) and e.options is not None:
        return _missing_option(e, overrides)
    cause = e.__cause__ if isinstance(e.__cause__, ValidationError) else e if isinstance(e, ValidationError) else None
    if cause is not None:
        return _wrong_value(cause, overrides)
    text = str(e)
    ambiguous = re.match(r"Ambiguous value for argument '(.*?)'", text)
    if ambiguous:
        return (f"{ambiguous.group(1)}: several values are a sweep: run them with .venv/bin/python bench/sweep.py "
                f"{ambiguous.group(1)} (a list value is written key=[a,b], a string with a comma key='a,b')")
    if isinstance(e, OverrideParseException):
        lines = text.splitlines()
        return (f"cannot read the override {e.override!r} ({lines[1].strip() if len(lines) > 1 else 'bad syntax'}): "
                "write key=value or group=option")
    for marker in _SEARCH_PATH:
        text = text.split(marker)[0]
    lines = [line for line in text.splitlines() if not re.match(r"\s*(full_key|reference_type|object_type)\b", line)]
    return one_line("\n".join(lines)) or type(e).__name__


def _split(argv: list[str]) -> tuple[list[str] | None, bool]:
    """(the overrides, whether the run itself is checked too); (None, False) for a command line left to Hydra
    (``-m``, another config path, ``--info``, ...)."""
    overrides: list[str] = []
    run = True
    value_next = False
    for arg in argv:
        if value_next:
            value_next = False
        elif arg in PRINT_FLAGS:
            run, value_next = False, True
        elif arg.split("=", 1)[0] in PRINT_FLAGS:
            run = False
        elif arg in RUN_FLAGS:
            continue
        elif arg.startswith("-"):
            return None, False
        else:
            overrides.append(arg)
    return overrides, run

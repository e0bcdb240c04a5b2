"""``python bench/run.py --help``: every config key with its current value and its meaning, from the schema.

The meanings have one source, the comments of the dataclasses in ``bench/config.py`` (a field's trailing
comment, and the comment lines right above it; a class's docstring; an Enum member's comment), read here from
the file with ``ast`` and ``tokenize``; an init method's options are described by the comments of
``conf/init/<name>.yaml``, and the methods themselves by their one-line summaries in ``dpiat.inits``. The
values are those of the config composed with the overrides given, so ``python bench/run.py experiment=proxy
--help`` shows the proxy's. Hydra's list of config groups and their options comes first, as in Hydra's own help.

    >>> keys = schema_fields()
    >>> "an \\"epoch\\" = this many images" in keys["DataConfig"]["train_subset"].meaning
    True
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import textwrap
import tokenize
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

CONFIG_SOURCE = Path(__file__).resolve().parent / "config.py"
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
ROOT = "Config"  # the dataclass the config is merged onto (bench/config.py)
WIDTH = 110
KEY_COLUMN = 34


@dataclass
class SchemaField:
    name: str
    meaning: str  # "" where the schema has no comment for it
    default: str  # the default's source text
    nested: str | None = None  # the dataclass the field holds, if any
    enum: str | None = None  # the Enum the field takes its values from, if any


@dataclass
class SchemaClass:
    name: str
    doc: str
    fields: dict[str, SchemaField] = field(default_factory=dict)

    def __getitem__(self, key: str) -> SchemaField:
        return self.fields[key]


def _comments(source: str) -> tuple[dict[int, str], set[int]]:
    """Comment text by line, and the lines that hold nothing but a comment."""
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return comments, set(comments) - code_lines


def _meaning(node: ast.stmt, comments: dict[int, str], own_line: set[int]) -> str:
    """The comment lines right above ``node`` and the comment trailing it, as one sentence."""
    above = []
    line = node.lineno - 1
    while line in own_line:
        above.insert(0, comments[line])
        line -= 1
    trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments and n not in own_line]
    return " ".join(part for part in (" ".join(above), *trailing) if part)


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


@lru_cache(maxsize=1)
def _parse(source_path: Path = CONFIG_SOURCE) -> dict[str, SchemaClass]:
    source = source_path.read_text()
    comments, own_line = _comments(source)
    tree = ast.parse(source)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    enums = {name for name, c in classes.items() if "Enum" in set().union(*(_names(b) for b in c.bases))}
    dataclasses = {name for name, c in classes.items()
                   if "dataclass" in set().union(*(_names(d) for d in c.decorator_list))}
    out: dict[str, SchemaClass] = {}
    for name, cls in classes.items():
        if name not in enums | dataclasses:
            continue
        schema = SchemaClass(name, ast.get_docstring(cls) or "")
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):  # a dataclass field
                used = _names(node.annotation)
                schema.fields[node.target.id] = SchemaField(
                    node.target.id, _meaning(node, comments, own_line),
                    ast.get_source_segment(source, node.value) if node.value is not None else "",
                    nested=next(iter(sorted(used & dataclasses)), None), enum=next(iter(sorted(used & enums)), None))
            elif isinstance(node, ast.Assign) and name in enums and isinstance(node.targets[0], ast.Name):
                schema.fields[node.targets[0].id] = SchemaField(node.targets[0].id, _meaning(node, comments, own_line),
                                                                ast.get_source_segment(source, node.value))
        out[name] = schema
    return out


def schema_fields() -> dict[str, SchemaClass]:
    """Every dataclass and Enum of bench/config.py with its fields' meanings, in source order."""
    return _parse(CONFIG_SOURCE)


def _schema_items():
    """``(dotted key, field)`` for every field of the schema, depth first, nested groups before their keys."""

    def walk(cls: str, prefix: str):
        for f in schema_fields()[cls].fields.values():
            yield prefix + f.name, f
            if f.nested:
                yield from walk(f.nested, f"{prefix}{f.name}.")

    return walk(ROOT, "")


def undocumented_keys() -> list[str]:
    """Dotted config keys whose schema field has no comment (tests keep this empty)."""
    return [key for key, f in _schema_items() if not f.nested and not f.meaning and not f.enum]


def schema_keys() -> list[str]:
    """Every dotted key of the schema, nested groups of settings included (``trainer``, ``trainer.max_epochs``)."""
    return [key for key, _ in _schema_items()]


def _close_keys(key: str, n: int = 3) -> list[str]:
    """The schema keys nearest to a misspelt one: by the whole key, or by its last part (``trainer.max_epochs``
    finds ``epochs``, ``optm.lr`` finds ``optim.lr``)."""
    last = key.split(".")[-1]
    scores: dict[str, float] = {}
    groups = sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir())
    # a dotted key is a setting: suggest settings, not a bare group such as ``trainer``
    candidates = [k for k in schema_keys() if k not in groups] if "." in key else schema_keys() + groups
    for known in dict.fromkeys(candidates):
        known_last = known.split(".")[-1]
        a, b = last.rstrip("s"), known_last.rstrip("s")  # epoch ~ epochs
        contains = min(len(a), len(b)) >= 4 and (a in b or b in a)
        whole = difflib.SequenceMatcher(None, key, known).ratio()
        score = max(whole, difflib.SequenceMatcher(None, last, known_last).ratio() - 0.02,
                    0.9 if contains else 0.0) + 0.1 * whole  # ties go to the nearer whole key
        if score >= 0.7:
            scores[known] = score
    return sorted(scores, key=lambda k: -scores[k])[:n]


def unknown_key(key: str) -> str | None:
    """Why ``key`` (as in ``key=value`` on the command line) names no config key, with the closest keys, or None
    when it does. Below a field that is not a group of settings (``init``, a dict such as
    ``pair.source_kwargs``, ``grid.recipes``) any key is allowed: yaml files fill those freely."""
    parts = key.split(".")
    if parts[0] == "hydra" or (len(parts) == 1 and (CONF_DIR / parts[0]).is_dir()):
        return None
    cls, prefix = ROOT, ""
    for i, part in enumerate(parts):
        f = schema_fields()[cls].fields.get(part)
        if f is None:
            hint = f" (did you mean {' or '.join(close)}?)" if (close := _close_keys(key)) else ""
            where = f"{prefix[:-1]} has no key {part!r}" if prefix else "there is no such key"
            return f"{key}: {where}{hint}; .venv/bin/python bench/run.py --help lists every key"
        if not f.nested:
            return None
        cls, prefix = f.nested, f"{prefix}{part}."
    return None


def unknown_override_key(overrides: list[str]) -> str | None:
    """The first ``key=value`` among command-line overrides whose key the schema does not have (see
    :func:`unknown_key`); ``+key``, ``++key``, ``~key``, ``group/option`` and flags are left to Hydra."""
    for arg in overrides:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        key = arg.split("=", 1)[0]
        if "/" in key or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
            continue
        message = unknown_key(key)
        if message:
            return message
    return None


def yaml_comments(path: Path) -> dict[str, str]:
    """A conf/ yaml file's top-level keys, in order, with their trailing comments ("" for none)."""
    keys: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z_]\w*):.*?\s#\s*(.*)$", line)
        if m:
            keys[m.group(1)] = m.group(2).strip()
        elif re.match(r"^[A-Za-z_]\w*:", line):
            keys.setdefault(line.split(":", 1)[0], "")
    return keys


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    s = str(getattr(v, "value", v))
    return s if s else "''"


def _line(key: str, meaning: str, indent: int = 2) -> str:
    """``key=value`` then its meaning, wrapped in a column."""
    head = " " * indent + key
    if not meaning:
        return head
    wrap = textwrap.wrap(meaning, WIDTH - KEY_COLUMN) or [""]
    pad = " " * KEY_COLUMN
    if len(head) + 2 <= KEY_COLUMN:
        lines = [head.ljust(KEY_COLUMN) + wrap[0]] + [pad + w for w in wrap[1:]]
    else:
        lines = [head] + [pad + w for w in wrap]
    return "\n".join(lines)


def _enum_meaning(f: SchemaField) -> str:
    members = schema_fields()[f.enum].fields.values()
    options = ", ".join(f"{m.name}" + (f" ({m.meaning})" if m.meaning else "") for m in members)
    return (f.meaning + "; " if f.meaning else "") + f"one of: {options}"


def _section(cls: str, values: Any, prefix: str, out: list[str]) -> None:
    values = values if isinstance(values, dict) else {}
    schema = schema_fields()[cls]
    for f in schema.fields.values():
        key = prefix + f.name
        value = values.get(f.name, None) if f.name in values else f.default
        if f.nested:
            nested = schema_fields()[f.nested]
            if isinstance(value, dict):
                _section(f.nested, value, key + ".", out)
            else:  # an optional group of settings that is unset: its keys with their schema defaults
                out.append(_line(f"{key}={_value(value)}", f.meaning or nested.doc))
                _section(f.nested, {}, key + ".", out)
            continue
        meaning = _enum_meaning(f) if f.enum else f.meaning
        out.append(_line(f"{key}={_value(value)}", meaning))
    for extra in (k for k in values if k not in schema.fields):  # e.g. keys a yaml file adds
        out.append(_line(f"{prefix}{extra}={_value(values[extra])}", ""))


def _init_section(values: dict, out: list[str]) -> None:
    root = schema_fields()[ROOT]
    name = values.get("name")
    out.append(_line(f"init.name={_value(name)}", root["init"].meaning + "; the methods are listed above"))
    path = CONF_DIR / "init" / f"{name}.yaml"
    described = yaml_comments(path) if path.exists() else {}
    for key, value in values.items():
        if key != "name":
            out.append(_line(f"init.{key}={_value(value)}", described.get(key, "")))


def init_methods() -> list[str]:
    """One line per registered init method (dpiat.inits), with the options its conf/init yaml describes."""
    import dpiat

    out = []
    for name in dpiat.available_inits():
        method = dpiat.get_init(name)
        kind = "reads the pair's source network" if method.needs_source else "source-free"
        out.append(_line(f"init={name}", f"{method.summary}; {kind}"))
        path = CONF_DIR / "init" / f"{name}.yaml"
        if path.exists():
            for key, meaning in yaml_comments(path).items():
                if key != "name":
                    out.append(_line(f"init.{key}", meaning, indent=6))
    return out


def groups_text(loader: Any) -> list[str]:
    """Hydra's "Configuration groups" list: each group and its options."""
    groups = sorted(g for g in loader.list_groups("") if g != "hydra" and not g.startswith("hydra/"))
    return [f"{g}: {', '.join(sorted(loader.get_group_options(g)))}" for g in groups]


def render(cfg: Any, loader: Any) -> str:
    """The whole help text for a composed config (``cfg``) and Hydra's config loader (its groups)."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    values.pop("hydra", None)
    root = schema_fields()[ROOT]
    out = [".venv/bin/python bench/run.py [group=option ...] [key=value ...]: train one target network "
           "(pair, init, seed) and record its",
           "validation top-1 per epoch; no arguments: the built-in default (README). "
           "Every argument is a Hydra override.", "",
           "== Configuration groups == (group=option; each is a file in conf/<group>/)", *groups_text(loader), "",
           "== Init methods == (init=<name>: dpiat.inits, the one registry; options as init.<option>=value)",
           *init_methods(), "",
           "== Config keys == (key=value: the value with the overrides given, then its meaning; the schema is "
           "bench/config.py)"]
    top: list[str] = []
    for f in root.fields.values():
        if f.nested:
            continue
        if f.name == "init":
            continue
        top.append(_line(f"{f.name}={_value(values.get(f.name, f.default))}", f.meaning))
    out += ["", "-- the run --", *top]
    for f in root.fields.values():
        if f.name == "init":
            section: list[str] = []
            _init_section(values.get("init") or {}, section)
            out += ["", "-- init --", *section]
        elif f.nested:
            section = []
            _section(f.nested, values.get(f.name), f.name + ".", section)
            doc = schema_fields()[f.nested].doc
            out += ["", f"-- {f.name} --" + (f" {doc}" if doc else ""), *section]
    out += ["", "Hydra flags: --cfg job (print the composed config), -m (a sweep; bench/sweep.py runs whole grids), "
            "--hydra-help.", "A misspelt key, group option or value fails before anything runs."]
    return "\n".join(out) + "\n"


def help_text(overrides: list[str]) -> str:
    """The help for ``python bench/run.py <overrides> --help``; raises Hydra's error for a bad override."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import bench.config  # noqa: F401  (registers the schema, the init options and the run_folder resolver)

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
        return render(cfg, GlobalHydra.instance().config_loader())

"""The command outputs the docs quote, and how each is checked (tests/test_doc_outputs.py), as
tests/test_figures.py checks the figures they quote.

A quoted output is a fenced block without a language whose lines starting with ``$ `` are commands, each
followed by what it printed. Every such block in README.md, docs/*.md and results/*/README.md must be listed in
:data:`CHECKS` under its first command, as printed:

- :class:`Run`: the test runs the block's commands as printed, in order, in one scratch folder (or the
  repository, ``cwd="repo"``), and the printed output must equal the quoted lines once :func:`normal` has taken
  out what changes from run to run on any machine (wall times; how many structures a call built or read from
  the shipped index, which depends on the cache it finds). ``paths`` maps a path printed in the page to the
  folder the test uses instead (a scratch hub cache, a committed run) and back in the output.
- a function ``(quoted lines) -> problems``: for a command too costly for the suite (minutes of training), a
  check of the quoted numbers against the committed run.json they came from.

So a change of a command's output fails the suite until the page is updated, as a changed figure does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("results/*/README.md"))]


@dataclass(frozen=True)
class Run:
    cwd: str = "scratch"  # "scratch": a fresh folder of the test's; "repo": the repository root
    paths: dict[str, str] = field(default_factory=dict)  # printed path -> the test's ("{scratch}", "{repo}" filled)
    before: tuple[str, ...] = ()  # commands of the page run first, their output not compared (what the page did)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the block's first command, 1-based
    commands: list[tuple[str, list[str]]]  # (command as printed, the lines quoted as its output)


PYTHON = "python: "  # the command of a python example whose output a page quotes: PYTHON + the code


def python_key(code: str) -> str:
    """How CHECKS names a python example: its first line that is not an import, comment stripped."""
    first = next(ln for ln in code.splitlines() if ln.strip() and not ln.startswith(("import ", "from ")))
    return PYTHON + first.split("#")[0].strip()


def blocks(page: Path) -> list[Block]:
    """The quoted outputs of ``page``: fenced blocks without a language that start with a ``$ `` line, and a
    ```` ```python ```` example followed by such a block of its output (the command: :func:`python_key`'s, the
    code in the block's ``code``)."""
    text = page.read_text()
    found = [Block(page, text[:m.start()].count("\n") + 1, [(PYTHON + m.group(1), m.group(2).rstrip("\n").split("\n"))])
             for m in re.finditer(r"```python\n(.*?)```\n\n```\n(?!\$ )(.*?)```", text, re.S)]
    lines, i = text.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == "```" and i + 1 < len(lines) and lines[i + 1].startswith("$ "):
            j, commands = i + 1, []
            while j < len(lines) and lines[j].strip() != "```":
                if lines[j].startswith("$ "):
                    commands.append((lines[j][2:], []))
                else:
                    commands[-1][1].append(lines[j])
                j += 1
            found.append(Block(page, i + 2, commands))
            i = j
        i += 1
    return found


_TIME = re.compile(r"\b\d+(\.\d+)? (ms|s)\b")
_CACHE = re.compile(r"\d+ built, (\d+ from the shipped index, )?")


def normal(text: str) -> str:
    """What stays the same from run to run: wall times become <t>; ``N built, M from the shipped index`` (what
    a call found in its cache) goes."""
    return "\n".join(_CACHE.sub("", _TIME.sub("<t>", line)).rstrip() for line in text.strip().splitlines())


# ----------------------------------------------------------------------------------- costly commands

LITE0_RUN = REPO / "results/proxy/runs/lite0_imagenet_to_tinynet_e/dpiat/seed0/run.json"
_EPOCH = re.compile(r"epoch (\d+)/\d+: train_loss ([\d.]+), val_top1 ([\d.]+) \(BatchNorm recalibrated ([\d.]+)\), "
                    r"val_loss ([\d.]+)")
_INIT = re.compile(r"after init, val_top1 ([\d.]+) \(BatchNorm recalibrated: ([\d.]+)\)")


def lite0_training_matches_its_committed_run(quoted: list[str]) -> list[str]:
    """docs/pretrained-sources.md step 3 (a 3-epoch training, 7 min): it says its numbers equal, bit for bit,
    those of the committed proxy run from the same weights; every number it quotes must be that run's."""
    run = json.loads(LITE0_RUN.read_text())
    problems, seen = [], 0
    for line in quoted:
        if m := _INIT.search(line):
            seen += 1
            want = (run["init_metrics"]["val_top1"], run["init_metrics"]["val_top1_bn"])
            if tuple(float(x) for x in m.groups()) != tuple(round(x, 4) for x in want):
                problems.append(f"{line!r}: the committed run has {want}")
        if m := _EPOCH.search(line):
            seen += 1
            e = run["metrics"][int(m.group(1)) - 1]
            want = tuple(round(e[k], 4) for k in ("train_loss", "val_top1", "val_top1_bn", "val_loss"))
            if tuple(float(x) for x in m.groups()[1:]) != want:
                problems.append(f"{line!r}: the committed run's epoch {m.group(1)} has {want}")
    if seen != 1 + len(run["metrics"]):
        problems.append(f"{seen} lines with numbers found; expected the init and {len(run['metrics'])} epochs")
    return problems


HUB = {"/tmp/hub-cache": "{scratch}/hub-cache"}

# the first command of each quoted block, as printed -> how it is checked
CHECKS: dict[str, Run | Callable[[list[str]], list[str]]] = {
    ".venv/bin/dpiat recommend tf_efficientnet_b0 --top 8 --tags '*in1k*' --max-params 10M": Run(),
    ".venv/bin/dpiat recommend tinynet_e --tags '*in1k*' --top 6": Run(),
    ".venv/bin/dpiat recommend vit_tiny_patch16_224 --top 6": Run(),
    "HF_HUB_CACHE=/tmp/hub-cache .venv/bin/dpiat cache-tag tf_efficientnet_lite0.in1k --weights "
    "zoo:efficientnet_lite0_imagenet": Run(paths=HUB),
    "HF_HUB_CACHE=/tmp/hub-cache HF_HUB_OFFLINE=1 .venv/bin/dpiat transfer tinynet_d.in1k tinynet_e --num-classes 10 "
    "--in-chans 1 --out x.safetensors": Run(paths=HUB),
    "HF_HUB_OFFLINE=1 .venv/bin/python bench/run.py experiment=proxy pair=custom "
    "pair.source=tf_efficientnet_lite0.in1k pair.target=tinynet_e init=dpiat source.weights=timm source.num_classes=1000 source.in_chans=3 seed=0 "
    "paths.runs=/tmp/w31/flow/runs": lite0_training_matches_its_committed_run,
    ".venv/bin/python bench/compare.py /tmp/slice/horizon": Run(cwd="repo",
                                                                 paths={"/tmp/slice": "results/horizon/slice"}),
    ".venv/bin/python bench/compare.py /tmp/slice/selection": Run(cwd="repo",
                                                                   paths={"/tmp/slice": "results/selection/slice"}),
    # docs/pretrained-sources.md, "In Python": the tag it transfers put into the hub cache as step 2 does
    PYTHON + 'rec = dpiat.recommend("tinynet_e", tags="*in1k*", top=4)': Run(paths=HUB, before=(
        "HF_HUB_CACHE=/tmp/hub-cache .venv/bin/dpiat cache-tag tf_efficientnet_lite0.in1k --weights "
        "zoo:efficientnet_lite0_imagenet",)),
}

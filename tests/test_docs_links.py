"""Every relative link and anchor in README.md, docs/*.md and results/*/README.md points at something that exists.

A link ``[text](path#anchor)`` (or an image ``![alt](path)``) must name a file or folder of the checkout, relative
to the page; an anchor must be a heading of the target page (GitHub's slugs: lower case, punctuation dropped,
spaces to hyphens). Web links (``http...``) are not fetched.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("results/*/README.md"))]


def prose(text: str) -> str:
    """The page without its fenced code blocks and inline code (a link-like text there is not a link)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text (links and emphasis markers gone), lower case, punctuation but
    hyphens and underscores dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower()).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen, out = {}, set()
    for line in re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif REPO not in dest.parents and dest != REPO:
            problems.append(f"{target}: outside the repository")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(page):
    assert not broken_links(page), f"{page.relative_to(REPO)}: {broken_links(page)}"


def test_the_checker_finds_broken_links(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "a.md").write_text("# Title: one `some_thing`\n\n## Two, three\n")
    page = tmp_path / "p.md"
    page.write_text("[ok](a.md) [ok](a.md#title-one-some_thing) [ok](a.md#two-three) ![ok](a.md) [web](https://x.org)\n"
                    "`[code](nope.md)` [bad](nope.md) [bad](a.md#nope) [bad](#missing)\n\n```\n[code](nope.md)\n```\n")
    assert broken_links(page) == ["nope.md: no such file", "a.md#nope: no heading #nope in a.md",
                                  "#missing: no heading #missing in p.md"]


def test_pages_are_the_readme_docs_and_results():
    names = {str(p.relative_to(REPO)) for p in pages()}
    assert {"README.md", "docs/library.md", "results/proxy/README.md"} <= names


def test_readme_is_a_first_screen():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 250
    text = "\n".join(lines)
    for command in ("bash setup.sh && .venv/bin/python bench/run.py", "bash setup.sh && .venv/bin/python -m pytest"):
        assert command in text
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash setup.sh" in ci and ".venv/bin/python -m pytest" in ci  # CI runs the README's test command

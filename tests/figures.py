"""Read the committed result tables the way the docs quote them (for tests/test_figures.py).

A result table is a markdown table in a committed file (``results/<experiment>/table.md``, ``selection.md``):
a header row, a ``|---|`` row, then data rows. Cells are compared as text, exactly as the file prints them.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A table in a page that copies rows of a committed table says so on the line before it (an HTML comment, not
# rendered): <!-- rows of results/proxy/table.md -->
VIEW_MARK = re.compile(r"<!--\s*rows of (\S+)\s*-->")


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(text: str) -> list[tuple[int, list[str], list[list[str]]]]:
    """Every markdown table in ``text``: (line index of its header, header cells, data rows)."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|?\s*:?-{3,}.*", lines[i + 1]):
            j = i + 2
            rows = []
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append(cells(lines[j]))
                j += 1
            out.append((i, cells(lines[i]), rows))
            i = j
        else:
            i += 1
    return out


def views(page: Path) -> list[tuple[str, list[str], list[list[str]], int]]:
    """The tables of ``page`` marked as rows of a committed table: (source, header, rows, line number)."""
    lines = page.read_text().splitlines()
    found = []
    for start, header, rows in tables(page.read_text()):
        above = [ln for ln in lines[max(0, start - 2):start] if ln.strip()]
        mark = VIEW_MARK.search(above[-1]) if above else None
        if mark:
            found.append((mark.group(1), header, rows, start + 1))
    return found


def check_view(source: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """Problems with a page's table that claims to copy rows of ``source`` (empty: it does, exactly).

    Its columns must be columns of one table of the source (same header text, any order and subset; the first
    such table) and start with that table's first column (the pair, the data set: what names a row); each of its rows must equal a source row
    restricted to those columns, cell for cell.
    """
    path = REPO / source
    if not path.is_file():
        return [f"{source}: no such file"]
    found = [t for t in tables(path.read_text()) if set(header) <= set(t[1])]
    if not found:
        return [f"no table of {source} has the columns {header}"]
    _, src_header, src_rows = found[0]
    if header[0] != src_header[0]:
        return [f"the first column must be {src_header[0]!r}, the column that names a row of {source}"]
    index = [src_header.index(h) for h in header]
    projected = {tuple(r[k] for k in index) for r in src_rows if len(r) == len(src_header)}
    return [f"row {' | '.join(r)} is not a row of {source}" for r in rows if tuple(r) not in projected]


def cell(source: str, row: tuple[str, ...], column: str) -> str:
    """The text of one cell of a table of ``source``: in the tables that have a column ``column``, the one row
    whose cells include every text in ``row`` (exactly one must)."""
    matches = [(header, r) for _, header, rows in tables((REPO / source).read_text()) if column in header
               for r in rows if all(k in r for k in row)]
    assert len(matches) == 1, f"{source}: {len(matches)} rows with cells {row} in a table with column {column!r}"
    header, r = matches[0]
    return r[header.index(column)]


def number_in(quote: str, text: str) -> bool:
    """``quote`` occurs in ``text`` as whole numbers (0.46 is in '0.46 [+0.09, +0.77]', 0.4 and 1.46 are not);
    an interval's signs may be left out ('[0.09, 0.77]' for '[+0.09, +0.77]')."""
    def pattern(q: str) -> str:
        return r"(?<![\d.])" + re.escape(q).replace(r"\ ", r"\s+") + r"(?![\d])"

    return re.search(pattern(quote), text) is not None or \
        re.search(pattern(quote.replace("+", "")), text.replace("+", "")) is not None

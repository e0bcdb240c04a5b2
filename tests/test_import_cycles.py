"""No import circle among the modules of dpiat/ and of bench/, read statically from the source (ast).

Every ``import`` counts, also one inside a function (a lazy import still makes two modules depend on each
other). A package's ``__init__`` counts as the module of that name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Circles known and owned elsewhere, to be removed from here once they are gone (a test below fails then).
KNOWN_PENDING = {
    "dpiat": [],
    "bench": [],
}


def module_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module name -> the modules of the same package it imports (absolute and relative imports)."""
    files = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    graph = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                candidates = [module] + [f"{module}.{a.name}" for a in node.names]  # `from pkg import mod`
            else:
                continue
            for c in candidates:  # `import a.b.c` depends on a.b.c (and loads a, a.b: packages, counted once)
                while c and c not in files:
                    c = c.rpartition(".")[0]
                if c and c != name:
                    deps.add(c)
        graph[name] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan), i.e. every import circle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


@pytest.mark.parametrize("package", sorted(KNOWN_PENDING))
def test_no_import_circle(package):
    cycles = import_cycles(module_graph(REPO / package))
    new = [sorted(c) for c in cycles if c not in KNOWN_PENDING[package]]
    assert not new, f"import circles in {package}/: {new}"


@pytest.mark.parametrize("package", sorted(KNOWN_PENDING))
def test_known_pending_circles_still_exist(package):
    """An exemption above that no longer matches a circle is stale: delete it."""
    cycles = import_cycles(module_graph(REPO / package))
    stale = [sorted(c) for c in KNOWN_PENDING[package] if c not in cycles]
    assert not stale, f"these circles are gone; remove them from KNOWN_PENDING: {stale}"


def test_the_finder_sees_circles(tmp_path):
    """Direct, relative and function-level imports all count; a one-way chain is not a circle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "c.py").write_text("import pkg.a\n")
    (pkg / "sub" / "d.py").write_text("from ..a import x\nfrom . import c\n")
    (pkg / "e.py").write_text("import pkg.sub.d\n")
    assert import_cycles(module_graph(pkg)) == [{"pkg.a", "pkg.b", "pkg.sub.c"}]
    (pkg / "sub" / "c.py").write_text("import os\n")
    assert import_cycles(module_graph(pkg)) == []

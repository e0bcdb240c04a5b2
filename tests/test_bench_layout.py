"""bench/'s structure: no import cycles, between modules or between its sub-packages, and entry-point scripts
that no internal module imports. Read from the source with ast (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
ENTRY_POINTS = {"bench.run", "bench.sweep", "bench.aggregate", "bench.train_source", "bench.train_ghn",
                "bench.measure.overhead", "bench.measure.ghn_speed", "bench.measure.transfer_speed",
                "bench.measure.copy_stream", "bench.measure.gpu_check"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(BENCH.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The bench modules that module ``name`` imports (``from bench.x import y`` is bench.x.y if that is one)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def unit(name: str) -> str:
    """A sub-package (bench.data, bench.running, ...) or a top-level module."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (BENCH / parts[-1]).is_dir() else name


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_modules_are_found():
    assert {"bench.running.folder", "bench.running.record", "bench.data.module", "bench.results.table",
            "bench.planning.plan", "bench.config", "bench.seeding"} <= set(MODULES)
    assert ENTRY_POINTS <= set(MODULES)
    assert "bench.running.folder" in GRAPH["bench.running.harness"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_no_import_cycle_between_sub_packages():
    units: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        units.setdefault(unit(name), set()).update(unit(d) for d in deps if unit(d) != unit(name))
    assert find_cycle(units) is None, " -> ".join(find_cycle(units))


@pytest.mark.parametrize("name", sorted(set(MODULES) - ENTRY_POINTS))
def test_internals_import_no_entry_point(name):
    assert not GRAPH[name] & ENTRY_POINTS


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_entry_points_are_scripts(name):
    assert 'if __name__ == "__main__":' in MODULES[name].read_text()

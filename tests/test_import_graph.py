"""The package's import graph: no circles between modules, and no layer imports a layer above it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "harness"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("harness.offline", "harness.parallel", "harness.storage", "harness.records", "harness.errors",
     "harness.safe_yaml"),
    ("harness.checkpoints",),
    ("harness.model",),
    ("harness.zoo", "harness.run"),
    ("harness.analysis",),
    ("harness.report", "harness.gate"),
    ("harness.cli", "harness.__main__"),
)
"""Lowest first: a module may import its own layer and the layers below it, never one above."""


def module_name(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Harness modules imported anywhere in a file (top level, functions, TYPE_CHECKING blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import submodule` imports the submodule; `from pkg import name` the package
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in HARNESS.rglob("*.py")}
    known = set(files)
    return {name: imports_of(path, known) - {name} for name, path in files.items()}


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_import_graph_has_no_circles():
    assert circles(import_graph()) == []


def test_no_module_imports_a_higher_layer():
    graph = import_graph()
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if b != "harness" and layer_of(b) > layer_of(a))
    assert upward == []


def test_every_module_has_a_layer():
    for module in import_graph():
        if module != "harness":
            layer_of(module)


def test_circle_finder_sees_a_planted_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", ["harness.report.build", "harness.cli.main"])
def test_layer_order_puts_consumers_above_producers(module):
    assert layer_of(module) > layer_of("harness.analysis.analyze")

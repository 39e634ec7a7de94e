"""The engine is pure torch and free of import circles (function-level imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "lrp_tasks" / "engine"
FORBIDDEN = ("prefect", "ray", "zarr", "pandas", "pydantic", "lrp_tasks.")


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ENGINE.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                deps.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith(FORBIDDEN), (path.name, node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(FORBIDDEN), (path.name, alias.name)
        graph[path.stem] = deps
    return graph


def test_no_import_circle_in_the_engine():
    graph = imports()
    graph.pop("__init__")
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == 2:
            return
        assert state.get(module) != 1, " -> ".join([*trail, module])
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            visit(dep, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        visit(module, [])

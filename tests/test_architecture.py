"""The layer rules of ARCHITECTURE.md, checked on every module's imports (function-level imports count:
a lazy import that breaks a circle still is one):

* no import circle anywhere in ``lrp_tasks`` and ``flows``;
* Ray only in ``lrp_tasks/cluster/``; Prefect only in ``flows/``;
* the engine imports only torch, numpy, the standard library and itself;
* ``lrp_tasks`` never imports ``flows``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lrp_tasks", "flows")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(path: Path, name: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import statement in ``path`` (relative imports resolved):
    ``import a.b`` is ``("a.b", [])``, ``from a import b, c`` is ``("a", ["b", "c"])``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            out.append((module, [alias.name for alias in node.names]))
    return out


def imported_names(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports; for ``from a import b`` both ``a`` and ``a.b``."""
    return {dep for module, names in imports_of(path, name) for dep in (module, *(f"{module}.{n}" for n in names))}


def graph() -> dict[str, set[str]]:
    """Project module -> project modules it imports. ``from pkg import sub`` of a submodule is an edge
    to the submodule only (the package is already being imported: that is how packages work)."""
    modules = project_modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for module, names in imports_of(path, name):
            subs = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            deps |= subs
            if module in modules and (len(subs) < len(names) or not names):
                deps.add(module)
        edges[name] = deps - {name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def third_party(path: Path, name: str) -> set[str]:
    """Top-level names of what a module imports from outside the project."""
    return {dep.split(".")[0] for dep in imported_names(path, name)} - set(PACKAGES) - {""}


def test_the_walker_sees_a_circle_and_lazy_imports(tmp_path) -> None:
    """The checks below can fail: a circle made of a function-level import is found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    module = tmp_path / "lrp_tasks" / "x.py"
    module.parent.mkdir()
    module.write_text("def f():\n    from .y import z\n    import ray\n")
    assert {"lrp_tasks.y", "lrp_tasks.y.z", "ray"} <= imported_names(module, "lrp_tasks.x")


def test_no_import_circle_anywhere() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("library", "allowed"), [("ray", "lrp_tasks.cluster"), ("prefect", "flows"), ("prefect_ray", "flows")]
)
def test_ray_only_in_cluster_and_prefect_only_in_flows(library: str, allowed: str) -> None:
    offenders = [
        name
        for name, path in project_modules().items()
        if library in third_party(path, name) and not (name == allowed or name.startswith(allowed + "."))
    ]
    assert offenders == [], f"{library} imported outside {allowed}: {offenders}"


def test_the_engine_imports_only_torch_numpy_and_the_standard_library() -> None:
    allowed = {"torch", "numpy", *sys.stdlib_module_names}
    for name, path in project_modules().items():
        if not name.startswith("lrp_tasks.engine"):
            continue
        assert third_party(path, name) <= allowed, (name, third_party(path, name) - allowed)
        project = {dep for dep in imported_names(path, name) if dep.split(".")[0] in PACKAGES}
        assert all(dep.startswith("lrp_tasks.engine") for dep in project), (name, project)


def test_lrp_tasks_never_imports_flows() -> None:
    for name, path in project_modules().items():
        if name.startswith("lrp_tasks"):
            assert not any(dep.split(".")[0] == "flows" for dep in imported_names(path, name)), name

"""The layers hold (docs/architecture.md): every module imports on its own, no folder imports one
it may not, and the import graph has no cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("consent", "portal", "api", "admin")
# What each folder may import. The core imports none of the packages built on it; the three
# front doors (parents, machines, staff) import the core and never each other.
MAY_IMPORT = {
    "consent": {"consent"},
    "portal": {"consent", "portal"},
    "api": {"consent", "api"},
    "admin": {"consent", "admin"},
}
# The factory is the one place that names the front doors, to register them.
COMPOSITION_ROOT = "consent.app"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(path): path
    for package in PACKAGES
    for path in sorted((ROOT / package).rglob("*.py"))
}


def _imports(path: Path) -> set[str]:
    """The project modules a file imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            submodules &= MODULES.keys()
            # `from portal import links` imports portal.links (and runs portal/__init__,
            # which only defines register()); name the submodule, not the package.
            found.update(submodules if len(submodules) == len(node.names) else {node.module})
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_every_module_imports_on_its_own():
    """Each module imported first, in a fresh interpreter state for the project's modules: an
    import cycle that only works in one order fails here."""
    script = f"""
import importlib, json, sys, traceback
sys.path.insert(0, {str(ROOT)!r})
failures = {{}}
for name in {sorted(MODULES)!r}:
    for loaded in [m for m in sys.modules if m.split(".")[0] in {PACKAGES!r}]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=3)
print(json.dumps(failures))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n".join(failures.values())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_only_what_its_layer_may(name):
    layer = name.split(".")[0]
    allowed = MAY_IMPORT[layer] | (set(PACKAGES) if name == COMPOSITION_ROOT else set())
    wrong = sorted(other for other in GRAPH[name] if other.split(".")[0] not in allowed)
    assert wrong == [], f"{name} ({layer}/) may not import {wrong}"


def test_core_modules_do_not_import_the_factory():
    importers = sorted(name for name, imported in GRAPH.items() if COMPOSITION_ROOT in imported)
    assert importers == ["consent"]  # the package's lazy `create_app`


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    """No cycle, counting imports inside functions too (the factory, which imports every
    front door, and the package's lazy `create_app` left out)."""
    graph = {
        name: imported - {"consent", COMPOSITION_ROOT}
        for name, imported in GRAPH.items()
        if name not in ("consent", COMPOSITION_ROOT)
    }
    assert _cycles(graph) == []

"""The layers of ARCHITECTURE.md, enforced: imports point one way and never go round in a circle.

    kongstack.cli  ->  flows  ->  tasks  ->  autoscaler, kongstack.core
                                    (and stock_api, a separate service, for its config)

* ``kongstack.core`` imports nothing from the project above it;
* ``autoscaler`` imports only itself and the core (its purity test forbids more: no I/O);
* ``tasks`` never imports ``flows`` or ``kongstack.cli``;
* ``flows`` never imports ``kongstack.cli`` and does no I/O itself (it sequences tasks);
* ``stock_api`` (its own image) imports nothing from the rest of the project;
* no two modules import each other, directly or round a circle (module-level imports).

Function-level imports count for the direction (a lazy import upward is still upward), not
for circles (they exist to break import-time work, not to hide a cycle in the layering).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kongstack.core.settings import REPO_ROOT

PACKAGES = ("kongstack", "autoscaler", "tasks", "flows", "stock_api")

ALLOWED: dict[str, tuple[str, ...]] = {
    # layer -> the project packages it may import (prefixes; itself always allowed)
    "kongstack.core": (),
    "autoscaler": ("kongstack.core",),
    "stock_api": (),
    "tasks": ("autoscaler", "kongstack.core", "stock_api"),
    "flows": ("tasks", "autoscaler", "kongstack.core"),
    "kongstack.cli": ("flows", "tasks", "autoscaler", "kongstack.core", "stock_api"),
    "kongstack": ("kongstack.core",),  # the package's own __init__
}
LAYER_ORDER = ("kongstack.core", "kongstack.cli", "kongstack", "autoscaler", "stock_api",
               "tasks", "flows")

FLOW_IO = ("httpx", "requests", "docker", "redis", "paramiko", "azure", "subprocess", "socket",
           "sqlite3", "yaml", "shutil", "tempfile", "os", "fcntl", "kongstack.core.files",
           "kongstack.core.yamlfile", "kongstack.core.procs")
FLOW_IO_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "mkdir",
                 "unlink", "rmtree"}


@dataclass(frozen=True)
class Import:
    target: str
    line: int
    top_level: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    for layer in LAYER_ORDER:
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            yield module_name(path), path


def _type_checking(node: ast.If) -> bool:
    return ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def imports_of(path: Path, module: str) -> list[Import]:
    """Project imports (absolute and relative), marking those made at import time."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and _type_checking(child):
                continue  # annotations only
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import mod`` imports pkg.mod when mod is a module
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.append(Import(sub if _is_module(sub) else base, child.lineno, top))
            visit(child, top)

    visit(tree, True)
    return [i for i in found if i.target.split(".")[0] in PACKAGES]


def _is_module(name: str) -> bool:
    base = REPO_ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _allowed(source_layer: str, target: str) -> bool:
    if layer_of(target) == source_layer:
        return True
    return any(target == ok or target.startswith(ok + ".") for ok in ALLOWED[source_layer])


def direction_offences() -> list[str]:
    offences = []
    for module, path in modules():
        layer = layer_of(module)
        assert layer is not None, f"{module}: in no layer (add it to LAYER_ORDER)"
        for imp in imports_of(path, module):
            if not _allowed(layer, imp.target):
                offences.append(f"{module}:{imp.line} ({layer}) imports {imp.target}")
    return offences


def test_imports_point_down_only() -> None:
    assert direction_offences() == []


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {}
    for module, path in modules():
        graph[module] = {i.target for i in imports_of(path, module)
                         if i.top_level and i.target != module}
    cycles = _cycles(graph)
    assert cycles == [], f"import circles: {cycles}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative enough for
    a few hundred modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_flows_only_sequence_tasks() -> None:
    offences = []
    for path in sorted((REPO_ROOT / "flows").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if any(name == bad or name.startswith(bad + ".") for bad in FLOW_IO):
                    offences.append(f"{path.name}:{getattr(node, 'lineno', 0)} imports {name}")
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(
                    func, "id", "")
                if called in FLOW_IO_CALLS:
                    offences.append(f"{path.name}:{node.lineno} calls {called}()")
    assert offences == [], "flows do no I/O themselves; move it into a task: " + str(offences)


@pytest.mark.parametrize(("layer", "target", "ok"), [
    ("kongstack.core", "tasks.tick.config", False),
    ("autoscaler", "kongstack.core.errors", True),
    ("autoscaler", "kongstack.cli.views", False),
    ("tasks", "kongstack.cli.fastpath", False),
    ("tasks", "flows.autoscale", False),
    ("flows", "kongstack.cli.app", False),
    ("kongstack.cli", "flows.autoscale", True),
    ("stock_api", "kongstack.core.settings", False),
])
def test_the_rule_itself(layer: str, target: str, ok: bool) -> None:
    assert _allowed(layer, target) is ok


def test_a_circle_would_be_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_relative_and_from_imports_are_resolved(tmp_path: Path) -> None:
    path = REPO_ROOT / "tasks" / "tick" / "act.py"
    targets = {i.target for i in imports_of(path, "tasks.tick.act")}
    assert {"tasks.tick.pool", "tasks.tick.record", "autoscaler"} <= targets

"""autoscaler/ is the pure decision core: it must import nothing that does I/O."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import autoscaler

PACKAGE = Path(autoscaler.__file__).parent
FORBIDDEN = (
    "prefect",
    "docker",
    "httpx",
    "requests",
    "redis",
    "paramiko",
    "azure",
    "pymongo",
    "montydb",
    "flask",
    "socket",
    "subprocess",
    "urllib.request",
    "http.client",
    "sqlite3",
    "tasks",
    "flows",
    "stock_api",
    "matplotlib",
    "time",
    "random",
    # no file I/O: reading traces and policy files is the edge's job (tasks/)
    "pathlib",
    "os",
    "io",
    "csv",
    "json",
    "yaml",
    "shutil",
    "tempfile",
    # no imports from the rest of the project: the core is the bottom layer
    "kongstack",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _is_forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)


def test_core_modules_import_nothing_that_does_io() -> None:
    offenders = {}
    for path in sorted(PACKAGE.glob("*.py")):
        bad = {n for n in _imports(path) if _is_forbidden(n)}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_core_never_reads_the_clock() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        source = path.read_text()
        for call in ("datetime.now(", "datetime.utcnow(", "time.time(", "date.today("):
            assert call not in source, f"{path.name} reads the clock ({call})"


def test_core_opens_no_file() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        calls = {node.func.id for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert not calls & {"open", "print", "input"}, path.name


def test_importing_the_package_loads_no_io_library() -> None:
    code = (
        "import json, sys\n"
        "import autoscaler, autoscaler.replay, autoscaler.presets\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    heavy = ("prefect", "docker", "httpx", "redis", "paramiko", "azure", "matplotlib", "pymongo")
    assert [m for m in loaded if m.split(".")[0] in heavy] == []


def test_the_purity_check_would_catch_a_bad_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import httpx\nfrom prefect import flow\n")
    assert {n for n in _imports(bad) if _is_forbidden(n)} == {"httpx", "prefect"}

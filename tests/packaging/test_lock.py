"""Installs are reproducible: the environment equals requirements.lock, the lock satisfies
pyproject.toml, the stock API image pins the lock's versions, every import is declared."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from kongstack.core.extras import EXTRAS
from kongstack.core.settings import REPO_ROOT

LOCK = REPO_ROOT / "requirements.lock"
IMAGE_REQUIREMENTS = REPO_ROOT / "deployments" / "image" / "requirements.txt"
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
PRODUCT = ("autoscaler", "flows", "tasks", "kongstack", "stock_api")


def _check_install() -> Any:
    spec = importlib.util.spec_from_loader(
        "check_install", importlib.machinery.SourceFileLoader(
            "check_install", str(REPO_ROOT / "scripts" / "check-install")))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_install = _check_install()


def _requirements(group: str | None) -> list[Requirement]:
    raw = PROJECT["dependencies"] if group is None else PROJECT["optional-dependencies"][group]
    return [Requirement(r) for r in raw]


def test_this_environment_is_exactly_the_lock() -> None:
    every_extra = all(importlib.util.find_spec(m) for mods in EXTRAS.values() for m in mods)
    args = ["--full"] if every_extra else []
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "check-install"), *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_check_install_reports_every_kind_of_difference(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("flask==3.1.3\n    # via kongstack\nredis==6.4.0\n"
                    "pywin32==312 ; sys_platform == 'win32'\nmissing-one==1.0\n")
    pins = check_install.locked(lock)
    assert pins == {"flask": "3.1.3", "redis": "6.4.0", "missing-one": "1.0"}
    have = {"flask": "3.1.3", "redis": "6.2.0", "extra-thing": "0.1", "pip": "26.3"}
    problems = check_install.differences(pins, have, full=True)
    assert problems == ["extra-thing==0.1 is installed but not in the lock",
                        "redis==6.2.0 is installed; the lock says 6.4.0",
                        "missing-one==1.0 is locked but not installed"]
    assert len(check_install.differences(pins, have, full=False)) == 2


def test_the_lock_satisfies_every_requirement_of_pyproject() -> None:
    pins = check_install.locked(LOCK)
    groups: list[str | None] = [None, *PROJECT["optional-dependencies"]]
    unmet = [f"{req} (locked: {pins.get(check_install.normalise(req.name))})"
             for group in groups for req in _requirements(group)
             if (req.marker is None or req.marker.evaluate())
             and pins.get(check_install.normalise(req.name)) not in req.specifier]
    assert not unmet, "run scripts/lock: " + ", ".join(unmet)


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*(?:;\s*(.+))?$", line)
        if m and (m.group(3) is None or Marker(m.group(3)).evaluate()):
            pins[check_install.normalise(m.group(1))] = m.group(2)
    return pins


def test_the_image_pins_the_locked_versions_of_the_api_extra() -> None:
    image, lock = _pins(IMAGE_REQUIREMENTS), _pins(LOCK)
    differ = {name: (version, lock.get(name)) for name, version in image.items()
              if lock.get(name) != version}
    assert not differ, f"image vs lock (run scripts/lock): {differ}"
    api = {check_install.normalise(r.name) for r in _requirements("api")}
    assert api <= set(image), f"the image lacks {sorted(api - set(image))}"
    assert "prefect" not in image, "the image carries the API's runtime only"


def test_setup_stamp_changes_when_the_lock_changes(tmp_path: Path) -> None:
    setup = (REPO_ROOT / "scripts" / "setup").read_text()
    stamp_line = next(line for line in setup.splitlines() if line.startswith("want="))
    for name in ("requirements.lock", "pyproject.toml"):
        (tmp_path / name).write_bytes((REPO_ROOT / name).read_bytes())

    def stamp() -> str:
        return subprocess.run(["bash", "-c", f"EXTRAS=all PIP_VERSION=1\n{stamp_line}\necho $want"],
                              cwd=tmp_path, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    before = stamp()
    assert re.fullmatch(r"[0-9a-f]{64}", before)
    with (tmp_path / "requirements.lock").open("a") as lock:
        lock.write("six==1.17.0\n")
    assert stamp() != before


def _third_party_imports(top: str) -> set[str]:
    local = set(PRODUCT) | {"tests", "benchmarks"}
    found = set()
    for path in (REPO_ROOT / top).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found |= {n for n in names
                      if n.split(".")[0] not in sys.stdlib_module_names | local}
    return found


def _distribution(module: str) -> str:
    """The distribution that provides ``module``; for a namespace package shared by several
    (``azure``), the one whose files hold the deepest part of the module's path."""
    parts = module.split(".")
    candidates = metadata.packages_distributions().get(parts[0]) or []
    if len(candidates) == 1:
        return str(check_install.normalise(candidates[0]))
    for depth in range(len(parts), 1, -1):
        prefix = "/".join(parts[:depth]) + "/"
        owners = {dist for dist in candidates
                  if any(str(f).startswith(prefix) for f in metadata.files(dist) or [])}
        if len(owners) == 1:
            return str(check_install.normalise(owners.pop()))
    raise AssertionError(f"no single installed distribution provides {module}")


def test_every_import_is_a_declared_dependency() -> None:
    declared = {check_install.normalise(r.name) for r in _requirements(None)}
    for group in PROJECT["optional-dependencies"]:
        declared |= {check_install.normalise(r.name) for r in _requirements(group)}
    product = {m for top in PRODUCT for m in _third_party_imports(top)}
    test_only = _third_party_imports("tests") | _third_party_imports("benchmarks")
    undeclared = {m: _distribution(m) for m in product | test_only
                  if _distribution(m) not in declared}
    assert not undeclared


@pytest.mark.slow
def test_a_fresh_base_install_has_the_locked_versions_and_no_extra(tmp_path: Path) -> None:
    """pip install from a clean venv with the lock as constraints: what scripts/setup does."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", str(LOCK), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=900, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([python, str(REPO_ROOT / "scripts" / "check-install")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr
    extras = [m for mods in EXTRAS.values() for m in mods]
    probe = subprocess.run(
        [python, "-c", "import importlib.util, sys; "
         f"print([m for m in {extras!r} if importlib.util.find_spec(m)])"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path)
    assert probe.stdout.strip() == "[]", "the base install pulled an extra's package"
    cli = subprocess.run([str(venv / "bin" / "kongstack"), "--help"], capture_output=True,
                         text=True, timeout=120, check=False, cwd=tmp_path)
    assert cli.returncode == 0 and "deploy" in cli.stdout, cli.stderr

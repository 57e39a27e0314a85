"""The one atomic write: content and mode, nothing left behind on failure, an unchanged file
untouched, and no other module renames temporary files into place itself."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from kongstack.core.files import write_atomic, write_if_changed
from kongstack.core.settings import REPO_ROOT

PRODUCT = ("autoscaler", "flows", "tasks", "kongstack", "stock_api")
HELPER = REPO_ROOT / "kongstack" / "core" / "files.py"
# nginx's config is written with write_atomic as a candidate, checked by ``nginx -t`` and only
# then renamed over the live one: a promotion, not a second atomic-write helper.
PROMOTES = {REPO_ROOT / "tasks" / "gateway" / "nginx" / "gateway.py": 1}
WRITERS = {"replace", "rename", "mkstemp", "NamedTemporaryFile"}


def test_text_and_bytes_with_parents_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    write_atomic(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_atomic(target, b"\x00\x01", mode=0o600)
    assert target.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def refuse(src: str, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_if_changed_leaves_an_identical_file_alone(tmp_path: Path) -> None:
    target = tmp_path / "rules.yml"
    assert write_if_changed(target, "a: 1\n") is True
    inode = target.stat().st_ino
    assert write_if_changed(target, "a: 1\n") is False
    assert target.stat().st_ino == inode  # not even rewritten: readers see no event
    assert write_if_changed(target, "a: 2\n") is True
    assert target.read_text() == "a: 2\n"
    assert target.stat().st_ino != inode


def _renames(path: Path) -> int:
    """Calls that move a temporary file into place: os.replace/os.rename, tempfile's
    mkstemp/NamedTemporaryFile, and ``tmp.replace(...)`` / ``tmp.rename(...)`` on a path."""
    count = 0
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in WRITERS - {"replace", "rename"}:
            count += 1  # from tempfile import mkstemp
        elif isinstance(func, ast.Attribute) and func.attr in WRITERS:
            owner = ast.unparse(func.value)
            if owner in ("os", "tempfile") or "tmp" in owner.lower() or "temp" in owner.lower():
                count += 1
    return count


def test_no_module_has_its_own_atomic_write() -> None:
    found = {}
    for package in PRODUCT:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if path == HELPER:
                continue
            count = _renames(path)
            if count > PROMOTES.get(path, 0):
                found[str(path.relative_to(REPO_ROOT))] = count
    assert found == {}, f"use kongstack.core.files.write_atomic instead: {found}"

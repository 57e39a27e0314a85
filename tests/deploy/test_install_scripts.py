"""The per-role install scripts: one per role, strict mode, valid bash, idempotent helpers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kongstack.topology import Role
from tasks.azure.remote import INSTALL_DIR, script_for

SCRIPTS = sorted(INSTALL_DIR.glob("*.sh"))


def test_every_role_has_a_script() -> None:
    for role in Role:
        assert script_for(role).exists()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_and_parses(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines[:6]
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=10)
    assert not re.search(r"(password|secret|token)\s*=\s*\S", script.read_text(), re.I)


def lib_file(tmp_path: Path) -> Path:
    text = (INSTALL_DIR / "common.sh").read_text()
    body = text.split("<<'LIBEOF'\n", 1)[1].split("\nLIBEOF\n", 1)[0]
    lib = tmp_path / "lib.sh"
    lib.write_text(body + "\n")
    return lib


def bash(lib: Path, snippet: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f"set -euo pipefail; . {lib}; {snippet}"],
                          capture_output=True, text=True, timeout=10)


def test_write_file_changes_only_when_content_differs(tmp_path: Path) -> None:
    lib, target = lib_file(tmp_path), tmp_path / "etc" / "app.conf"
    snippet = f"if write_file {target} 0640 <<< 'port 1'; then echo RESTART; fi"
    first = bash(lib, snippet)
    assert first.stdout.splitlines() == [f"changed: wrote {target}", "RESTART"]
    assert oct(target.stat().st_mode)[-3:] == "640"
    assert bash(lib, snippet).stdout == ""  # unchanged: no change line, no restart
    changed = bash(lib, snippet.replace("port 1", "port 2"))
    assert "RESTART" in changed.stdout and target.read_text() == "port 2\n"


def test_require_env_names_the_missing_variable(tmp_path: Path) -> None:
    result = bash(lib_file(tmp_path), "require_env KONGSTACK_STOCK_API_IMAGE")
    assert result.returncode == 1
    assert "KONGSTACK_STOCK_API_IMAGE is not set" in result.stderr

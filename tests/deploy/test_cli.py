"""``kongstack deploy``: validates first; dry run changes nothing; bad config exits 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kongstack.cli.app import app
from tests.deploy.conftest import write_stack_file


def test_dry_run_prints_the_plan(tmp_path: Path) -> None:
    config = write_stack_file(tmp_path / "stack.yaml", name="clitest")
    result = CliRunner().invoke(app, ["deploy", "--config", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    as_json = CliRunner().invoke(app, ["deploy", "-c", str(config), "--dry-run", "--json"])
    summary = json.loads(as_json.stdout)
    assert summary["dry_run"] and summary["changed"]
    assert any("stock API instances" in c for c in summary["steps"]["install"]["changes"])


def test_invalid_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = write_stack_file(tmp_path / "stack.yaml", name="clitest", provider="gcp")
    result = CliRunner().invoke(app, ["deploy", "--config", str(config)])
    assert result.exit_code == 2
    assert "provider: Input should be 'local' or 'azure'" in result.output

"""The autoscale flow, the CLI and the maintenance flow load the same policy from the same
file (the one named by KONGSTACK_AUTOSCALER_CONFIG), with the same environment overrides."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.autoscale import autoscale
from flows.maintenance import maintenance
from kongstack.cli.app import app
from tasks.tick.config import CONFIG_FILE_ENV


def _row(output: str, field: str) -> list[str]:
    """The cells of the status table's row for ``field``."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line) if c.strip()]
        if cells and cells[0] == field:
            return cells
    raise AssertionError(f"no row for {field} in:\n{output}")


@pytest.mark.usefixtures("prefect_harness")
def test_flow_cli_and_maintenance_load_the_same_policy(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stack, home = f"one-{uuid.uuid4().hex[:8]}", tmp_path / "home"
    history, textfile = home / "data" / "history.sqlite", home / "metrics" / "autoscaler.prom"
    config = tmp_path / "autoscale.yaml"
    config.write_text(
        "policy:\n  min_instances: 2\n  max_instances: 9\n  target_rps_per_instance: 55\n"
        "  dry_run: true\n"
        "prometheus: {url: 'http://127.0.0.1:9', timeout_seconds: 0.5}\n"
        f"pool: {{stack: {stack}, driver: process, gateway: nginx, local: {{home: '{home}'}}}}\n"
        f"record: {{stack: {stack}, scaling_log_path: '{history}', textfile_path: '{textfile}',"
        " artifacts: false, events: false}\n"
        f"memory_block: {stack}\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    monkeypatch.setenv("KONGSTACK_AUTOSCALE_SCALE_DOWN_STABILIZATION_SECONDS", "120")
    monkeypatch.setenv("KONGSTACK_HOME", str(home))

    tick = asyncio.run(autoscale(trigger="test"))  # no config parameter: the loader's
    assert (tick["current"], tick["desired"]) == (0, 2) and "[dry run]" in tick["reason"]
    gauges = textfile.read_text()
    assert "kongstack_autoscaler_min_instances 2" in gauges
    assert "kongstack_autoscaler_max_instances 9" in gauges

    status = CliRunner().invoke(app, ["status"], env={"COLUMNS": "240"})  # a row per line
    assert status.exit_code == 0, status.output
    assert str(config) in status.output
    assert _row(status.output, "max_instances") == ["max_instances", "9", "file"]
    assert _row(status.output, "target_rps_per_instance") == [
        "target_rps_per_instance", "55.0", "file"]
    assert _row(status.output, "scale_down_stabilization_seconds") == [
        "scale_down_stabilization_seconds", "120.0", "environment"]
    assert _row(status.output, "strategy") == ["strategy", "proportional", "default"]

    report = maintenance(prune_prometheus=False, prune_prefect_runs=False, home=str(home),
                         scaling_log_path=str(history))
    assert report["policy"] == {
        "file": str(config), "min_instances": 2, "max_instances": 9,
        "target_rps_per_instance": 55.0, "scale_down_stabilization_seconds": 120.0}
    assert report["events"] >= 1  # the tick above, recorded where the config says

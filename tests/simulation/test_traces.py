"""The replay's edge: trace CSV files in; ``kongstack simulate`` writes a table, JSON and a
PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from kongstack.cli.simulate import register
from kongstack.core.errors import ConfigError
from tasks.simulation.traces import read_trace

STEPS = Path(__file__).parents[2] / "benchmarks" / "traces" / "steps.csv"


def test_read_trace_checks_header_and_numbers(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("t_seconds,rps\n0,1.5\n60,2\n")
    assert read_trace(good).rps == (1.5, 2.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,value\n0,1\n")
    with pytest.raises(ConfigError, match="header must be 't_seconds,rps'"):
        read_trace(bad)
    worse = tmp_path / "worse.csv"
    worse.write_text("t_seconds,rps\n0,abc\n")
    with pytest.raises(ConfigError, match="worse.csv:2: not a number"):
        read_trace(worse)


def test_cli_writes_table_json_and_png(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    runner = CliRunner()
    help_text = runner.invoke(app, ["simulate", "--help"]).output
    assert "t_seconds,rps" in help_text and "--capacity-rps" in help_text
    policy_file = tmp_path / "eager.yaml"
    policy_file.write_text("policy:\n  target_rps_per_instance: 50\n  forecast_seconds: 0\n")
    result = runner.invoke(
        app,
        [
            "simulate",
            str(STEPS),
            "-c",
            "default",
            "-c",
            "hpa",
            "-c",
            str(policy_file),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| SLO-violation s |" in result.output and "eager" in result.output
    payload = json.loads((tmp_path / "out" / "steps.json").read_text())
    names = [row["name"] for row in payload["results"]]
    assert names == ["default", "hpa", "eager", "oracle"]
    assert payload["policies"]["eager"]["max_instances"] == 20
    png = (tmp_path / "out" / "steps.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    bad = runner.invoke(app, ["simulate", str(STEPS), "-c", "nonsense"])
    assert bad.exit_code == 2 and "neither a preset" in bad.output

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
    assert "| x oracle |" in result.output and "| x oracle/tick |" in result.output
    payload = json.loads((tmp_path / "out" / "steps.json").read_text())
    names = [row["name"] for row in payload["results"]]
    assert names == ["default", "hpa", "eager", "oracle/30s", "oracle"]
    by_name = {row["name"]: row for row in payload["results"]}
    assert by_name["oracle"]["x_oracle"] == 1.0 and by_name["oracle/30s"]["x_oracle_tick"] == 1.0
    assert by_name["hpa"]["x_oracle"] == pytest.approx(
        by_name["hpa"]["instance_seconds"] / by_name["oracle"]["instance_seconds"]
    )
    # The shipped default learns the capacity (the model's 100/s per instance) as it runs.
    assert by_name["default"]["learned_capacity_rps"] == pytest.approx(100, rel=0.15)
    assert "learned_capacity_rps" not in by_name["hpa"]
    assert payload["policies"]["eager"]["max_instances"] == 20
    png = (tmp_path / "out" / "steps.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    bad = runner.invoke(app, ["simulate", str(STEPS), "-c", "nonsense"])
    assert bad.exit_code == 2 and "neither a preset" in bad.output
    bad = runner.invoke(app, ["simulate", str(STEPS), "--oracle-tick", "0"])
    assert bad.exit_code == 2 and "--oracle-tick" in bad.output


def test_cli_sums_several_traces(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    flat = tmp_path / "flat.csv"
    flat.write_text("t_seconds,rps\n0,300\n1800,300\n")
    result = CliRunner().invoke(
        app,
        ["simulate", str(STEPS), str(flat), "-c", "hpa", "--out", str(tmp_path), "--no-plot"],
    )
    assert result.exit_code == 0, result.output
    assert "Summed over 2 traces" in result.output
    summed = json.loads((tmp_path / "summed.json").read_text())["results"]
    each = [json.loads((tmp_path / f"{n}.json").read_text())["results"] for n in ("steps", "flat")]
    hpa = next(r for r in summed if r["name"] == "hpa")
    assert hpa["instance_seconds"] == pytest.approx(
        sum(rows[0]["instance_seconds"] for rows in each), rel=1e-6
    )
    oracle_cost = sum(rows[-1]["instance_seconds"] for rows in each)
    assert hpa["x_oracle"] == pytest.approx(hpa["instance_seconds"] / oracle_cost)

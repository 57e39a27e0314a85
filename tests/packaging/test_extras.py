"""A base install (no extras) runs everything that does not need an extra; what does need one
fails with an error that names the extra to install. Each case runs in a fresh interpreter
whose import system refuses the extras' modules (tests/support/block_extras.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kongstack.core.extras import EXTRAS
from kongstack.core.settings import REPO_ROOT

ALL = ",".join(EXTRAS)
# The modules that are the extra's own code: without the extra they raise MissingExtra.
NEEDS: dict[str, set[str]] = {
    "azure": {"tasks.providers.ssh", "tasks.providers.ssh_tunnel", "tasks.providers.azure.clients",
              "tasks.providers.azure.provision", "tasks.providers.azure.teardown",
              "tasks.providers.azure.staging", "tasks.providers.azure.hostvm",
              "tasks.providers.azure.remote", "tasks.instances.ssh_client"},
    "analysis": {"tasks.maintenance.analysis", "tasks.maintenance.report",
                 "tasks.maintenance.steps", "flows.maintenance"},
    "api": set(),  # stock_api itself is the [api] extra's code; nothing else imports it eagerly
}

WALK = """
import importlib, json, pkgutil
failed = {}
for pkg in ("autoscaler", "kongstack", "flows", "tasks"):
    for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failed))
"""


def run_without(extras: str, code: str, *,
                tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    if tmp is not None:
        env["KONGSTACK_HOME"] = str(tmp)
    return subprocess.run(
        [sys.executable, "-m", "tests.support.block_extras", extras, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=240, cwd=REPO_ROOT, env=env, check=False)


@pytest.mark.parametrize("extra", [*EXTRAS, ALL], ids=[*EXTRAS, "no-extras"])
def test_every_module_imports_without_an_extra_except_that_extras_own(extra: str) -> None:
    result = run_without(extra, WALK)
    assert result.returncode == 0, result.stderr
    failed: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    missing = [e for e in extra.split(",")]
    assert set(failed) == set().union(*(NEEDS[e] for e in missing)), failed
    for module, error in failed.items():
        assert error.startswith("MissingExtra: "), (module, error)
        assert any(f"pip install 'kongstack[{e}]'" in error for e in missing), error


def test_cli_help_of_every_command_works_without_extras() -> None:
    result = run_without(ALL, """
        from typer.testing import CliRunner
        from kongstack.cli.app import app
        runner = CliRunner()
        top = runner.invoke(app, ["--help"])
        assert top.exit_code == 0, top.output
        import click, typer

        def paths(group, prefix):
            # list_commands/get_command: the app loads a command's module on demand.
            for name in group.list_commands(None):
                command = group.get_command(None, name)
                yield [*prefix, name]
                if isinstance(command, click.Group):
                    yield from paths(command, [*prefix, name])

        names = list(paths(typer.main.get_command(app), []))
        for name in names:
            r = runner.invoke(app, [*name, "--help"])
            assert r.exit_code == 0, (name, r.output)
        print(len(names), "commands")
    """)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[0]) >= 5


def test_simulate_runs_without_extras_and_the_chart_names_the_analysis_extra(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("t_seconds,rps\n" + "".join(f"{t},{50 + t % 7}\n" for t in range(600)))
    result = run_without(ALL, f"""
        from typer.testing import CliRunner
        from kongstack.cli.app import app
        runner = CliRunner()
        args = ["simulate", {str(trace)!r}, "--out", {str(tmp_path / "out")!r}]
        plain = runner.invoke(app, [*args, "--no-plot"])
        assert plain.exit_code == 0, plain.output
        chart = runner.invoke(app, args)
        print(chart.exit_code)
        print(chart.output)
    """)
    assert result.returncode == 0, result.stderr
    code, output = result.stdout.split("\n", 1)
    assert code == "2"
    assert "pip install 'kongstack[analysis]'" in output and "--no-plot" in output


def test_serving_without_analysis_leaves_out_only_maintenance() -> None:
    result = run_without("analysis", """
        from kongstack.cli.serve import build_deployments
        print(sorted(d.name for d in build_deployments()))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['autoscale', 'cleanup', 'deploy-stack']"
    assert "pip install 'kongstack[analysis]'" in result.stderr


def test_what_needs_an_extra_says_which_before_doing_anything(tmp_path: Path) -> None:
    result = run_without(ALL, f"""
        from pathlib import Path
        import yaml
        from kongstack.core.extras import MissingExtra
        from kongstack.core.settings import LocalSettings
        from kongstack.core.topology import parse_topology
        from tasks.instances.common import ProcessSettings
        from tasks.instances.process import ProcessDriver
        from tasks.providers.deploy import provider_for

        home = Path({str(tmp_path)!r})
        driver = ProcessDriver(ProcessSettings(stack="blocked", run_dir=home / "run",
                                               log_dir=home / "log"))
        try:
            driver.start()
        except MissingExtra as exc:
            print("process:", exc)
        data = yaml.safe_load(open("deployments/stack.yaml"))
        data.update(provider="azure", allowed_admin_cidr="198.51.100.0/24",
                    api_key_secret="api-key", instance_secret="instance-secret",
                    log_token_secret="log-token")
        topo = parse_topology(data)
        provider = provider_for(topo, LocalSettings(home=home), log=print)
        print("plan:", len(provider.plan().actions("provision")))
        try:
            provider.provision()
        except MissingExtra as exc:
            print("azure:", exc)
    """, tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert "pip install 'kongstack[api]'" in lines["process"]
    assert "pip install 'kongstack[azure]'" in lines["azure"]
    assert int(lines["plan"]) > 0, "the dry-run plan of an Azure deploy needs no SDK"
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())

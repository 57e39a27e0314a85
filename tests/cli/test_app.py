"""The CLI's shape: a cheap startup (no Prefect, SDKs or pandas for --help), the command table
equal to what the modules register, --version, completion, exit codes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from importlib.metadata import version

import httpx
import pytest
import typer
from typer.testing import CliRunner

from kongstack.cli.app import COMMAND_MODULES, COMMANDS, app, load_module
from kongstack.cli.exits import BAD_INPUT, FAILED, UNREACHABLE, exit_code_for
from kongstack.cli.health import Check, health_exit_code
from kongstack.core.errors import ConfigError, GatewayError, InstanceError, UnreachableError
from kongstack.core.settings import REPO_ROOT

runner = CliRunner()
HEAVY = ("prefect", "azure", "pandas", "matplotlib", "docker", "paramiko")


def _imported_after(code: str) -> list[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = (f"{code}\nimport sys, json\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    names: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return names


def test_importing_the_cli_app_imports_no_prefect_sdk_or_pandas() -> None:
    loaded = _imported_after("import kongstack.cli.app")
    assert not [m for m in HEAVY if m in loaded], loaded


def test_help_and_version_run_without_importing_prefect() -> None:
    code = ("import sys\nfrom kongstack.cli.app import app\n"
            "for args in (['--help'], ['--version']):\n"
            "    try:\n        app(args)\n    except SystemExit:\n        pass")
    loaded = _imported_after(code)
    assert not [m for m in HEAVY if m in loaded], loaded


def test_a_command_imports_its_own_dependencies_only_when_it_runs() -> None:
    # Resolving `scale` (here for its --help) loads the ops module, which needs Prefect.
    loaded = _imported_after("from kongstack.cli.app import app\ntry:\n"
                             "    app(['scale', '--help'])\nexcept SystemExit:\n    pass")
    assert "prefect" in loaded and "pandas" not in loaded


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_command_table_matches_what_each_module_registers(module: str) -> None:
    registered = load_module(module)
    listed = {name: text for name, (mod, text) in COMMANDS.items() if mod == module}
    assert set(registered) == set(listed)
    for name, command in registered.items():
        assert command.get_short_help_str(limit=1000) == listed[name], name


def test_every_command_module_is_in_the_table() -> None:
    """A new module with commands (``def register(app)``) must be listed in COMMANDS, or its
    commands would never be found."""
    cli = REPO_ROOT / "kongstack" / "cli"
    registering = {p.stem for p in cli.glob("*.py") if "\ndef register(" in p.read_text()}
    assert registering == set(COMMAND_MODULES)


def test_help_lists_every_command_and_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in result.output
    for code in ("0 ok", "1 a requested action", "2 bad input", "3 a dependency did not answer"):
        assert code in result.output
    assert "--install-completion" in result.output


def test_version_is_the_package_metadata_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"kongstack {version('kongstack')}"


def test_completion_offers_commands_and_choices() -> None:
    env = {"_KONGSTACK_COMPLETE": "complete_bash", "COMP_WORDS": "kongstack sta",
           "COMP_CWORD": "1"}
    words = runner.invoke(app, [], prog_name="kongstack", env=env).output.split()
    assert "status" in words and "deploy" not in words
    env |= {"COMP_WORDS": "kongstack status --driver ", "COMP_CWORD": "3"}
    words = runner.invoke(app, [], prog_name="kongstack", env=env).output.split()
    assert sorted(words) == ["auto", "docker", "process"]


@pytest.mark.parametrize(("args", "hint"), [
    (["status", "--driver", "vm"], "--driver"),
    (["health", "--gateway", "apisix"], "--gateway"),
    (["deploy", "--until", "reboot"], "--until"),
])
def test_choices_are_checked_by_typer_before_anything_runs(args: list[str], hint: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == BAD_INPUT and hint in result.output
    assert "is not one of" in result.output  # click's message lists the choices


def test_deploy_steps_are_deploy_stacks_steps() -> None:
    from kongstack.cli.deploy import Step
    from tasks.providers.protocol import STEPS

    assert tuple(Step) == STEPS


def test_an_unknown_command_is_bad_input() -> None:
    result = runner.invoke(app, ["statsu"])
    assert result.exit_code == BAD_INPUT and "status" in result.output  # "Did you mean"


def _caused_by(error: Exception, cause: BaseException) -> Exception:
    try:
        raise error from cause
    except Exception as exc:
        return exc


@pytest.mark.parametrize(("error", "code"), [
    (ConfigError("policy.max_instances: 0 < min_instances"), BAD_INPUT),
    (UnreachableError("no Prefect server"), UNREACHABLE),
    (_caused_by(InstanceError("engine: list failed"), ConnectionRefusedError(111, "refused")),
     UNREACHABLE),
    (_caused_by(GatewayError("admin API"), httpx.ConnectError("connection refused")),
     UNREACHABLE),
    (GatewayError("admin API answered 409: target exists"), FAILED),
    (_caused_by(InstanceError("start failed"), RuntimeError("exit 1")), FAILED),
])
def test_exit_code_for_an_error(error: Exception, code: int) -> None:
    assert exit_code_for(error) == code


def test_health_exit_code_separates_unhealthy_from_unreachable() -> None:
    ok = Check("redis", True, "PONG")
    optional_down = Check("prometheus", False, "closed", core=False, answered=False)
    unhealthy = Check("instance a", False, "HTTP 503")
    unreachable = Check("instance b", False, "ConnectError", answered=False)
    assert health_exit_code([ok, optional_down]) == 0
    assert health_exit_code([ok, unhealthy]) == FAILED
    assert health_exit_code([ok, unhealthy, unreachable]) == UNREACHABLE


def test_exit_raised_by_fail_in_json_mode_prints_a_json_error() -> None:
    from kongstack.cli.exits import fail

    probe = typer.Typer()

    @probe.command()
    def broken() -> None:
        raise fail(UnreachableError("gateway admin API did not answer"), as_json=True)

    result = runner.invoke(probe, [])
    assert result.exit_code == UNREACHABLE
    assert json.loads(result.stdout) == {"error": "gateway admin API did not answer",
                                         "exit_code": UNREACHABLE}


def test_no_events_worker_note_on_stderr_at_exit(prefect_harness: None) -> None:
    """Prefect notes "Still processing items" on stderr at exit while it sends the events a
    process emitted (reproduced against this real server); a CLI command does not."""
    from prefect.settings import PREFECT_API_URL

    probe = ("import logging\nfrom kongstack.cli.app import load_module\nload_module('deploy')\n"
             "from prefect.events import emit_event\n"
             "for n in range(20):\n"
             "    emit_event(event='kongstack.test', resource={'prefect.resource.id': f'x.{n}'})\n"
             "print(logging.getLogger('EventsWorker').getEffectiveLevel())\n")
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    assert int(done.stdout.strip()) >= logging.ERROR  # the sender's notes are quiet
    assert "Still processing items" not in done.stderr and "EventsWorker" not in done.stderr

"""Bad input to the CLI ends with a message naming the field and exit code 2 (issue 16):
never a traceback, never exit code 1. The commands run in-process through the real entry
point (``app(...)``, as the ``kongstack`` script calls it), not CliRunner, so the top-level
handling is what is tested."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from kongstack.cli.app import app
from kongstack.core.errors import ConfigError


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        app(args=args, prog_name="kongstack")
    out = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out.out + out.err


@pytest.fixture(autouse=True)
def no_prefect_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


@pytest.mark.parametrize(("make", "args", "named"), [
    pytest.param(lambda d: d, ["deploy", "--dry-run", "--config", "{}"], "is a directory",
                 id="deploy: a directory as the stack file"),
    pytest.param(lambda d: (d / "u.yaml", (d / "u.yaml").write_bytes(
        "name: x\n".encode("utf-16")))[0], ["deploy", "--dry-run", "--config", "{}"],
        "not UTF-8", id="deploy: a UTF-16 stack file"),
    pytest.param(lambda d: (d / "e.yaml", (d / "e.yaml").write_text(""))[0],
                 ["deploy", "--dry-run", "--config", "{}"], "is empty",
                 id="deploy: an empty stack file"),
    pytest.param(lambda d: d, ["status", "--config", "{}"], "directory:",
                 id="status: a directory as the config file"),
    pytest.param(lambda d: d / "absent.yaml", ["status", "--config", "{}"], "absent.yaml:",
                 id="status: a config file that is not there"),
    pytest.param(lambda d: (d / "a.yaml", (d / "a.yaml").write_text(
        "policy: {max_instances: 1001}\n"))[0], ["status", "--config", "{}"],
        "max_instances", id="status: max_instances above the hard cap"),
    pytest.param(lambda d: (d / "a.yaml", (d / "a.yaml").write_text(
        "policy: {cooldown_seconds: .inf}\n"))[0], ["status", "--config", "{}"],
        "cooldown_seconds", id="status: an infinite cooldown"),
    pytest.param(lambda d: d, ["scale", "1001", "--force"], "less than or equal to 1000",
                 id="scale: above the hard cap even with --force"),
    pytest.param(lambda d: d, ["simulate", "--tick", "0", "trace.csv"], "--tick",
                 id="simulate: --tick 0 is refused, not clamped"),
])
def test_bad_input_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           make: object, args: list[str], named: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    code, output = run([a.replace("{}", str(path)) for a in args], capsys)
    assert code == 2, output
    assert named in " ".join(output.split()), output
    assert "Traceback" not in output


def test_a_config_error_escaping_any_command_is_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The entry point's safety net: a command that lets a ConfigError escape."""
    cli = type(app)()

    @cli.command()
    def broken() -> None:
        raise ConfigError("lock_path: /etc/passwd is outside the stack's home")

    @cli.command()
    def other() -> None:
        typer.echo("unused: a second command makes the first a subcommand")

    with pytest.raises(SystemExit) as exited:
        cli(args=["broken"], prog_name="kongstack")
    assert exited.value.code == 2
    assert "lock_path: /etc/passwd" in capsys.readouterr().err

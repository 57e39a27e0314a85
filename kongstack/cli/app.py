"""The ``kongstack`` operator CLI (typer + rich). Commands live in ``kongstack.cli``.

Startup is kept cheap: this module imports typer only. The commands are listed from the table
below (name, module, one-line help) and a command's module, with Prefect, the cloud SDKs and
pandas behind it, is imported only when that command runs (or completes its options). So
``kongstack --help`` and ``kongstack --version`` never pay for Prefect (~0.7 s).
tests/cli/test_app.py keeps the table equal to what the modules register.
"""

from __future__ import annotations

import importlib
import logging
import sys
from difflib import get_close_matches
from typing import Annotated, Any

import typer
from typer._click import Command, Context  # typer 0.29 vendors click: its classes, not click's
from typer._click.exceptions import UsageError
from typer.core import TyperCommand, TyperGroup

from kongstack.cli.exits import BAD_INPUT, EXIT_CODES_HELP
from kongstack.core.errors import ConfigError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module in kongstack.cli, one-line help = the command's own short help)
    "up": ("stack", "Bring up the whole local stack and the autoscaler (no cloud account "
                    "needed)."),
    "down": ("stack", "Stop everything `kongstack up` started (containers, processes, "
                      "services)."),
    "deploy": ("deploy", "Deploy the stack described by --config (default "
                         "deployments/stack.yaml)."),
    "status": ("status", "Instances, gateway targets with health, the last decisions, cooldown "
                      "remaining."),
    "health": ("health", "Check every component; exit 1 if the gateway, an instance or Redis "
                         "is unhealthy, 3 if one does not answer."),
    "monitor": ("monitor", "Live view of every instance; values above a threshold are shown "
                           "in red."),
    "logs": ("health", "Show an instance's or a service's log."),
    "scale": ("ops", 'Scale the pool to COUNT instances by hand (recorded in the history as '
                     '"manual").'),
    "restart": ("ops", "Rolling restart: start a replacement, wait until it serves, then "
                       "drain the old one."),
    "approve": ("ops", "Approve a cleanup run waiting for approval (removes exactly its "
                       "plan)."),
    "deny": ("ops", "Deny a cleanup run waiting for approval (nothing is removed)."),
    "keys": ("keys", "List the API's consumers: access, rate limit and the Secret block of "
                     "each key."),
    "key": ("keys", "Print one consumer's API key (for `curl -H \"apikey: $(kongstack key "
                    "reader)\"`)."),
    "load": ("load", "Offer a steady request rate to the gateway and watch the pool react."),
    "simulate": ("simulate", "Replay request-rate traces through autoscaling configurations "
                             "and score them."),
}
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def load_module(module: str) -> dict[str, Command]:
    """Import ``kongstack.cli.<module>`` and return the click commands it registers."""
    from pydantic import ValidationError

    from kongstack.cli.localprefect import use_local_prefect
    from kongstack.core.settings import LocalSettings

    # At exit Prefect's event sender reports "Still processing items: N items remaining..."
    # on stderr while it delivers what a command emitted; the events are still delivered,
    # the note is not for CLI users (nor for scripts reading stderr).
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)
    # Prefect reads its settings when first imported, so point this process at the local
    # server started by `kongstack up` (or, when it is not running, at its database through
    # Prefect's ephemeral API) before a command module imports prefect.
    try:
        settings = LocalSettings()
    except ValidationError:
        return _register(module)  # the command reports the bad setting itself (exit 2)
    use_local_prefect(settings)
    return _register(module)


def _register(module: str) -> dict[str, Command]:
    holder = typer.Typer()
    importlib.import_module(f"kongstack.cli.{module}").register(holder)
    return dict(typer.main.get_group(holder).commands)


class LazyCommands(TyperGroup):
    """Lists every command from ``COMMANDS``; imports a command's module when it is resolved
    (to run it, show its own --help, or complete its options)."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name in COMMANDS:  # for listings: name and help only, nothing imported
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        return None

    def resolve_command(self, ctx: Context,
                        args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] in COMMANDS and args[0] not in self.commands:
            self.commands.update(load_module(COMMANDS[args[0]][0]))
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:  # typer suggests from loaded commands only
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches and "Did you mean" not in exc.message:
                exc.message = (f"{exc.message.rstrip('.')}. Did you mean "
                               f"{', '.join(repr(m) for m in matches)}?")
            raise


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"kongstack {version('kongstack')}")
        raise typer.Exit()


def _bad_input(exc: Exception) -> bool:
    """A configuration error (the project's ConfigError, the decision core's PolicyError)?
    The core's module is looked up only if it was imported: --help never pays for it."""
    policy = sys.modules.get("autoscaler.errors")
    return isinstance(exc, ConfigError) or (
        policy is not None and isinstance(exc, policy.PolicyError))


class _App(typer.Typer):
    """The CLI; a configuration error anywhere ends it with the message and exit code 2
    (bad input), never a traceback with exit code 1."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if not _bad_input(exc):
                raise
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise SystemExit(BAD_INPUT) from None


app = _App(
    name="kongstack",
    cls=LazyCommands,
    help=(
        "Deploy and autoscale a Kong-fronted stock-quote API with Prefect.\n\n"
        "The local default runs everything on this machine (nginx as the gateway, "
        "containers through the Docker API when an engine is available, otherwise "
        "processes); Azure and Kong are used when configured.\n\n"
        "Most reading commands take --json for scripts (status, health, monitor --once, "
        "deploy, scale)."
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Only --version lives here; the commands are the group's (LazyCommands)."""


if __name__ == "__main__":
    app()

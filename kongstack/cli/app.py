"""The ``kongstack`` operator CLI (typer + rich). Commands live in ``kongstack.cli``."""

from __future__ import annotations

import importlib
from typing import Any

import typer

from autoscaler.errors import PolicyError
from kongstack.cli.localprefect import use_local_prefect
from kongstack.core.errors import ConfigError
from kongstack.core.settings import LocalSettings


class _App(typer.Typer):
    """The CLI; a configuration error anywhere ends it with the message and exit code 2
    (bad input), never a traceback with exit code 1."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (ConfigError, PolicyError) as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise SystemExit(2) from None


app = _App(
    name="kongstack",
    help=(
        "Deploy and autoscale a Kong-fronted stock-quote API with Prefect.\n\n"
        "The local default runs everything on this machine (nginx as the gateway, "
        "containers through the Docker API when an engine is available, otherwise "
        "processes); Azure and Kong are used when configured."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


COMMAND_MODULES = ("deploy", "health", "keys", "load", "monitor", "ops", "simulate", "stack")


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"kongstack.cli.{name}").register(app)


# Prefect reads its settings when first imported, so point this process at the local server
# started by `kongstack up` (or, when it is not running, at its database through Prefect's
# ephemeral API) before any command module imports prefect.
use_local_prefect(LocalSettings())
_register_commands()

if __name__ == "__main__":
    app()

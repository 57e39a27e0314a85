"""The ``kongstack`` operator CLI (typer + rich). Commands live in ``kongstack.cli``."""

from __future__ import annotations

import importlib

import typer

from kongstack.cli.localprefect import use_local_server_if_running
from kongstack.core.settings import LocalSettings

app = typer.Typer(
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


COMMAND_MODULES = ("deploy", "health", "load", "monitor", "ops", "simulate", "stack")


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"kongstack.cli.{name}").register(app)


# Prefect reads its settings when first imported, so point this process at the local server
# started by `kongstack up` (if it runs) before any command module imports prefect.
use_local_server_if_running(LocalSettings())
_register_commands()

if __name__ == "__main__":
    app()

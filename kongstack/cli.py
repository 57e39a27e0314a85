"""The ``kongstack`` operator CLI (typer + rich). Commands live in ``kongstack.commands``."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import kongstack.commands as commands_pkg
from kongstack.localprefect import use_local_server_if_running
from kongstack.settings import LocalSettings

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


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


# Prefect reads its settings when first imported, so point this process at the local server
# started by `kongstack up` (if it runs) before any command module imports prefect.
use_local_server_if_running(LocalSettings())
_register_commands()

if __name__ == "__main__":
    app()

"""The CLI's exit codes, one meaning each (shown in ``kongstack --help``), and the mapping
from an error to its code."""

from __future__ import annotations

import socket

import typer

from kongstack.core.errors import ConfigError, UnreachableError

OK = 0
FAILED = 1
"""A requested action (or a health check) failed."""
BAD_INPUT = 2
"""Bad input: a usage error (typer/click's own code), an invalid value or config."""
UNREACHABLE = 3
"""A dependency did not answer: the container engine, the gateway, Redis, the Prefect server."""

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 a requested action or check failed; 2 bad input (usage, values, "
    "config); 3 a dependency did not answer (container engine, gateway, Redis, Prefect server)."
)

_UNREACHABLE_NAMES = {"ConnectError", "ConnectTimeout", "TransportError", "ConnectionError",
                      "Timeout", "ReadTimeout", "TimeoutException", "NewConnectionError",
                      "MaxRetryError"}
"""Connection failures of httpx, requests/urllib3 and docker's SDK, matched by class name so
this module does not import those libraries."""


def _is_connection_failure(exc: BaseException) -> bool:
    if isinstance(exc, UnreachableError | ConnectionError | TimeoutError | socket.gaierror):
        return True
    return any(cls.__name__ in _UNREACHABLE_NAMES for cls in type(exc).__mro__)


def exit_code_for(exc: BaseException) -> int:
    """BAD_INPUT for a config error, UNREACHABLE when a connection failure caused it (anywhere
    in its cause chain), else FAILED."""
    if isinstance(exc, ConfigError):
        return BAD_INPUT
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _is_connection_failure(current):
            return UNREACHABLE
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return FAILED


def fail(problem: str | BaseException, code: int | None = None, *,
         as_json: bool = False) -> typer.Exit:
    """Say what went wrong on stderr (as ``{"error": ..., "exit_code": ...}`` with --json on
    stdout) and return the Exit to raise; the code comes from ``exit_code_for`` unless given."""
    if code is None:
        code = exit_code_for(problem) if isinstance(problem, BaseException) else FAILED
    message = str(problem)
    if as_json:
        import json

        typer.echo(json.dumps({"error": message, "exit_code": code}))
    else:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


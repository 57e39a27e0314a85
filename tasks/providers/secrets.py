"""Secrets the providers read from Prefect Secret blocks (never logged)."""

from __future__ import annotations

from typing import Any

from kongstack.core.errors import ConfigError


def read_secret(block_name: str | None, field: str) -> str:
    """The value of a Prefect Secret block; ``field`` names the config key in errors."""
    if not block_name:
        raise ConfigError(f"{field}: no Secret block configured")
    from prefect.blocks.system import Secret

    try:
        block: Any = Secret.load(block_name)
        value = block.get()
    except ValueError as exc:
        raise ConfigError(f"{field}: Secret block {block_name!r} not found ({exc})") from None
    return str(value)

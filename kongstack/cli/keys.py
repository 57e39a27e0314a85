"""``kongstack keys`` and ``kongstack key NAME``: the API's consumers and their keys.

``keys`` lists the consumers of the stack file (access, rate limit, Secret block) without a
key; ``key NAME`` prints one consumer's key and nothing else, for ``$(kongstack key reader)``
in a shell. Keys come from ``KONGSTACK_KEY_<NAME>`` or the consumer's Prefect Secret block
(``kongstack up`` and deploy create them); these commands never create one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kongstack.core.errors import ConfigError
from kongstack.core.topology import Topology, load_topology


def _topology(config: Path | None) -> Topology:
    try:
        return load_topology(config)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc


def consumer_key(topo: Topology, name: str | None = None) -> tuple[str, str]:
    """(consumer name, key) of ``name``, or of the first read-only consumer (the least
    privilege that reads); ConfigError naming what is missing."""
    from tasks.gateway.consumers import resolve_keys

    consumers = {c.name: c for c in topo.consumers}
    if name is None:
        name = next((c.name for c in topo.consumers if c.access == "read"),
                    topo.consumers[0].name)
    if name not in consumers:
        raise ConfigError(f"consumer: {name!r} is not one of the stack file's consumers "
                          f"({', '.join(consumers)})")
    single = topo.model_copy(update={"consumers": [consumers[name]]})
    key = resolve_keys(single, create=False)[0]
    return name, key.key.get_secret_value()


def register(app: typer.Typer) -> None:
    @app.command("keys")
    def keys(config: Annotated[Path | None, typer.Option(help="stack file")] = None) -> None:
        """List the API's consumers: access, rate limit and the Secret block of each key."""
        from tasks.gateway.consumers import key_env

        topo = _topology(config)
        typer.echo(f"consumers of stack {topo.name} (keys in Prefect Secret blocks):")
        for c in topo.consumers:
            access = "read and write" if c.access == "write" else "read only"
            typer.echo(f"  {c.name:<12} {access:<15} {c.rate_limit_per_minute:>10,}/min  "
                       f"block {topo.key_secret(c)}  (or ${key_env(c.name)})")

    @app.command("key")
    def key(name: str = typer.Argument(..., help="consumer name (see `kongstack keys`)"),
            config: Annotated[Path | None, typer.Option(help="stack file")] = None) -> None:
        """Print one consumer's API key (for `curl -H "apikey: $(kongstack key reader)"`)."""
        try:
            _, value = consumer_key(_topology(config), name)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="NAME") from exc
        typer.echo(value)

"""The API's consumers: one per client application, keys in Prefect Secret blocks.

The stack file names the consumers (access and rate limit each, ``kongstack.core.topology``);
their keys are never in a file. A key is found, in order, in ``KONGSTACK_KEY_<NAME>`` (the
environment: CI, a one-off run) or in the consumer's Secret block (``<stack>-key-<name>``
unless the stack file names another); ``create=True`` (deploy, ``kongstack up``) generates a
random key for a consumer that has none and saves it in that block, so both the local and
the Azure path read the same place. Nothing here logs or returns a key in a message.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from kongstack.core.errors import ConfigError
from kongstack.core.topology import ConsumerSettings, Topology
from tasks.gateway.desired import ConsumerConfig

KEY_BYTES = 32  # 256 random bits, URL-safe: 43 characters


def key_env(consumer: str) -> str:
    return "KONGSTACK_KEY_" + "".join(c if c.isalnum() else "_" for c in consumer).upper()


@dataclass(frozen=True)
class ConsumerKey:
    consumer: ConsumerSettings
    key: SecretStr
    source: str  # "environment" | "secret block" | "created"
    block: str

    def __repr__(self) -> str:
        return f"ConsumerKey({self.consumer.name!r}, source={self.source!r}, key=***)"


class SecretStore:
    """Prefect Secret blocks (the seam tests replace with a dict)."""

    def load(self, name: str) -> str | None:
        from prefect.blocks.system import Secret

        try:
            block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
        except ValueError:  # Prefect: "Unable to find block document named ..."
            return None
        return str(block.get())

    def create(self, name: str, value: str) -> bool:
        """Save a new block; False when one of that name appeared meanwhile (a concurrent
        deploy created it first: its key wins)."""
        from prefect.blocks.system import Secret

        block: Any = Secret(value=value)  # type: ignore[arg-type]
        try:
            block.save(name, overwrite=False, _sync=True)
        except ValueError:
            return False
        return True


def resolve_keys(topo: Topology, *, create: bool, store: SecretStore | None = None,
                 environ: Mapping[str, str] | None = None,
                 new_key: Callable[[], str] = lambda: secrets.token_urlsafe(KEY_BYTES),
                 ) -> list[ConsumerKey]:
    """Every consumer's key; raises ConfigError naming the consumers without one (when
    ``create`` is false) before anything is changed."""
    store = store or SecretStore()
    env = os.environ if environ is None else environ
    found: list[ConsumerKey] = []
    missing: list[ConsumerSettings] = []
    for consumer in topo.consumers:
        block = topo.key_secret(consumer)
        value = env.get(key_env(consumer.name)) or None
        source = "environment"
        if value is None:
            value, source = store.load(block), "secret block"
        if value is None:
            missing.append(consumer)
            continue
        found.append(ConsumerKey(consumer, SecretStr(value), source, block))
    if missing and not create:
        names = ", ".join(f"{c.name} (Secret block {topo.key_secret(c)!r} or "
                          f"${key_env(c.name)})" for c in missing)
        raise ConfigError(f"consumers: no key for {names}; `kongstack up` or a deploy "
                          "creates them")
    for consumer in missing:
        block, value = topo.key_secret(consumer), new_key()
        if store.create(block, value):
            found.append(ConsumerKey(consumer, SecretStr(value), "created", block))
            continue
        existing = store.load(block)
        if existing is None:
            raise ConfigError(f"consumers: Secret block {block!r} for {consumer.name} could "
                              "neither be created nor read")
        found.append(ConsumerKey(consumer, SecretStr(existing), "secret block", block))
    order = [c.name for c in topo.consumers]
    return sorted(found, key=lambda k: order.index(k.consumer.name))


def consumer_configs(keys: list[ConsumerKey]) -> tuple[ConsumerConfig, ...]:
    """The gateway's consumers (tasks.gateway.desired) from the stack file and the keys."""
    return tuple(ConsumerConfig(username=k.consumer.name, key=k.key, access=k.consumer.access,
                                rate_limit_per_minute=k.consumer.rate_limit_per_minute)
                 for k in keys)


def limit_warnings(consumers: list[ConsumerSettings], *, max_instances: int,
                   rps_per_instance: float) -> list[str]:
    """Pure: a warning for each consumer whose limit is below what the pool is planned to
    serve at its largest (``max_instances`` × ``rps_per_instance``)."""
    planned = max_instances * rps_per_instance
    out = []
    for n, consumer in enumerate(consumers):
        per_second = consumer.rate_limit_per_minute / 60
        if per_second < planned:
            out.append(
                f"consumers[{n}].rate_limit_per_minute: {consumer.name} may send "
                f"{consumer.rate_limit_per_minute:,}/min ({per_second:,.0f} req/s), below the "
                f"pool's planned capacity of {planned:,.0f} req/s ({max_instances} instances "
                f"× {rps_per_instance:g} req/s): this client is rate limited (429) before the "
                "pool is full")
    return out


def usage_hint(keys: list[ConsumerKey], gateway_url: str, *,
               config: str | None = None) -> list[str]:
    """How to use the keys, for `kongstack up` (names and commands only, never a key);
    ``config``: the stack file the commands must name (not the default one)."""
    stack_file = f" --config {config}" if config else ""
    lines = ["API keys (key-auth, header `apikey`; kept in Prefect Secret blocks):"]
    for k in keys:
        what = "read and write" if k.consumer.access == "write" else "read only"
        lines.append(f"  {k.consumer.name:<10} {what:<15} "
                     f"{k.consumer.rate_limit_per_minute:,}/min  block {k.block}"
                     + ("  (new)" if k.source == "created" else ""))
    reader = next((k for k in keys if k.consumer.access == "read"), keys[0])
    lines += [
        "  use one:",
        f'    curl -H "apikey: $(.venv/bin/kongstack key {reader.consumer.name}{stack_file})" '
        f"{gateway_url}/api/stocks",
        f"    .venv/bin/kongstack load --consumer {reader.consumer.name}{stack_file} "
        "--rps 100 --duration 60"]
    return lines

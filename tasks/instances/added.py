"""Hosts the autoscaler adds to a full pool: their configuration, their write-ahead records and
the factories that make them.

A host takes minutes to make (an Azure VM: public IP, NIC, VM, host key, install), so a
factory never waits for it: ``advance`` starts or continues the next step and returns at once
with the host's progress; the tick (tasks/tick/grow.py) calls it again on later ticks until the
host is ready or failed. Every step re-reads what exists, so a re-run after a crash converges.

``AddedHostStore`` is the write-ahead record: a host is written as ``pending`` *before* the
factory is first asked to make it, and as ``removing`` before it is first asked to remove it,
so a tick that dies in between leaves a record the next tick continues from. A factory also
lists the hosts it made (by their tags), and hosts found that no record names are adopted.

Factories are registered by name (``FACTORIES``): "azure" (tasks/providers/azure/hostvm.py);
the tests register one that makes network-namespace hosts (tests/support/hostfactory.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from kongstack.core.errors import ConfigError
from kongstack.core.files import write_atomic
from tasks.instances.hosts import HostConfig

ADDED_BY_TAG = "kongstack.added-by"
"""Tag (Azure) / label on every host the autoscaler made; its value is ``autoscaler``. Only
hosts carrying it are ever removed by the autoscaler, never the deploy-stack's own VMs."""
ADDED_BY = "autoscaler"
POOL_TAG = "kongstack.pool"
"""Tag naming the pool (its stack) an added host belongs to."""

RecordState = Literal["pending", "ready", "failed", "removing"]
ProgressState = Literal["pending", "ready", "failed", "removing", "gone"]


class HostGrowthConfig(BaseModel):
    """``pool.growth``: add hosts when every host is full (see docs/scaling-out.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$",
                          description="the host factory: azure (tests register their own)")
    max_added_hosts: int = Field(default=2, ge=0, le=50,
                                 description="hosts the autoscaler may add at most (0: off)")
    capacity: int = Field(ge=1, le=10_000, description="instances one added host may run")
    idle_cooldown_seconds: float = Field(default=900.0, ge=0, le=86_400,
                                         description="an added host idle this long is removed")
    retry_seconds: float = Field(default=600.0, ge=0, le=86_400,
                                 description="wait after a failed add before the next try")
    provision_timeout_seconds: float = Field(
        default=1800.0, gt=0, le=86_400,
        description="an added host still not ready after this counts as failed")
    name_prefix: str = Field(default="added", pattern=r"^[a-z][a-z0-9-]{0,20}$")
    stack_file: Path | None = Field(
        default=None, description="azure: the deploy-stack topology whose stock API VM is the "
        "plan of an added VM (default deployments/stack.yaml)")
    ssh_key_file: Path | None = Field(default=None, description="engine access to added hosts")
    known_hosts_file: Path | None = Field(
        default=None, description="where added hosts' pinned host keys are kept and read")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120,
                                   description="bound on every engine call to an added host")


@dataclass
class AddedHostRecord:
    name: str
    state: RecordState
    since: str
    """When the add started (ISO 8601)."""
    changed_at: str
    """When it entered its state."""
    detail: str = ""
    """The factory's last word on it (the step it is at, or why it failed)."""
    host: dict[str, Any] | None = None
    """Its HostConfig once ready."""
    idle_since: str | None = None
    memo: dict[str, str] = field(default_factory=dict)
    """The factory's own notes between ticks (e.g. an ARM operation's status URL)."""

    def host_config(self) -> HostConfig | None:
        return HostConfig.model_validate(self.host) if self.host else None


class AddedHostStore:
    """``[AddedHostRecord]`` in one JSON file, written atomically (ticks are exclusive)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[AddedHostRecord]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [AddedHostRecord(**r) for r in raw]

    def save(self, records: list[AddedHostRecord]) -> None:
        write_atomic(self.path, json.dumps([asdict(r) for r in records], indent=1))

    def ready_hosts(self) -> list[HostConfig]:
        """The added hosts the pool places instances on."""
        return [h for r in self.load() if r.state == "ready" and (h := r.host_config())]


@dataclass(frozen=True)
class Progress:
    state: ProgressState
    detail: str
    host: HostConfig | None = None
    memo: dict[str, str] = field(default_factory=dict)


class HostFactory(Protocol):
    """Makes and removes hosts without waiting for them (see the module docstring)."""

    def advance(self, record: AddedHostRecord) -> Progress:
        """Start or continue making ``record.name``; "ready" comes with its HostConfig."""
        ...

    def remove(self, record: AddedHostRecord) -> Progress:
        """Start or continue removing it; "gone" once nothing of it is left."""
        ...

    def existing(self) -> list[str]:
        """Names of the hosts this factory made for the pool that exist now (by their tags)."""
        ...

    def close(self) -> None: ...


FactoryBuilder = Callable[[HostGrowthConfig, str], HostFactory]
"""(growth config, pool stack) -> factory."""

FACTORIES: dict[str, FactoryBuilder] = {}


def _azure(config: HostGrowthConfig, stack: str) -> HostFactory:
    from tasks.providers.azure.hostvm import azure_host_factory

    return azure_host_factory(config, stack)


FACTORIES["azure"] = _azure


def make_factory(config: HostGrowthConfig, stack: str) -> HostFactory:
    builder = FACTORIES.get(config.provider)
    if builder is None:
        raise ConfigError(f"pool.growth.provider: {config.provider!r} is not a host factory "
                          f"(known: {', '.join(sorted(FACTORIES))})")
    return builder(config, stack)


def added_host_lines(growth: HostGrowthConfig | None, path: Path) -> list[str]:
    """Status lines of the added hosts that are not (or no longer) in the pool: being made,
    being removed, failed (the ready ones are the driver's own host lines)."""
    if growth is None:
        return []
    return [f"{r.name} (added): {r.state} since {r.changed_at} ({r.detail})"
            for r in AddedHostStore(path).load() if r.state != "ready"]


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None

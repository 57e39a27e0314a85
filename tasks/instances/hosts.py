"""The hosts of a pool that spans machines, and what is remembered about them between ticks.

A pool lists its engines (``pool.hosts``): the local socket and ``ssh://`` Docker/Podman
hosts, each with its capacity. ``HostStateStore`` keeps, per host, the instances last seen on
it, since when it has been down and which of its containers were given up (replaced while it
was down): when the host answers again those leftovers are found by id and owner label and
removed. The store is one small JSON file, written atomically; ticks are exclusive (the tick
lock), so there is one writer at a time.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kongstack.core.files import write_atomic
from tasks.instances.base import Instance, InstanceState

HOST_LABEL = "kongstack.host"
"""Label on every instance a multi-host pool reports: the name of the host it runs on."""
LOST_LABEL = "kongstack.lost"
"""Label on an instance of a host that stopped answering: why it counts as lost."""


class HostConfig(BaseModel):
    """One engine of a pool: where it is and how many instances it may run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    docker_host: str = Field(description="unix:///path/to/engine.sock or ssh://user@host[:port]")
    capacity: int = Field(ge=1, le=10_000, description="instances this host may run")
    cpus: float | None = Field(
        default=None, gt=0,
        description="CPUs the host gives instances; with the pool's per-instance cpus limit "
        "the capacity is at most cpus / per-instance cpus",
    )
    advertise_host: str | None = Field(
        default=None, description="address the gateway reaches instances on (default: the "
        "ssh:// host, or 127.0.0.1 for a local socket)")
    ssh_key_file: Path | None = Field(default=None, description="default: ~/.ssh keys")
    ssh_key_secret: str | None = Field(
        default=None, min_length=1,
        description="Prefect Secret block holding the private key (instead of ssh_key_file)")
    known_hosts_file: Path | None = Field(default=None, description="default: ~/.ssh/known_hosts")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120,
                                   description="bound on every engine call, SSH waits included")
    added: bool = Field(default=False, description="made by the autoscaler (pool.growth); "
                        "removed by it when idle")

    @field_validator("docker_host")
    @classmethod
    def _engine_url(cls, value: str) -> str:
        if value.startswith("unix:///"):
            return value
        if value.startswith("ssh://"):
            rest = value.removeprefix("ssh://")
            user, _, host = rest.partition("@")
            if not user or not host or "/" in host:
                raise ValueError(f"{value!r}: an ssh:// engine is ssh://user@host[:port]")
            return value
        raise ValueError(f"{value!r}: must be unix:///path or ssh://user@host[:port]")

    @model_validator(mode="after")
    def _one_key(self) -> HostConfig:
        if self.ssh_key_file is not None and self.ssh_key_secret is not None:
            raise ValueError(f"host {self.name}: set ssh_key_file or ssh_key_secret, not both")
        return self

    @property
    def remote(self) -> bool:
        return self.docker_host.startswith("ssh://")

    def effective_capacity(self, instance_cpus: float | None) -> int:
        if self.cpus is None or instance_cpus is None:
            return self.capacity
        return max(0, min(self.capacity, math.floor(self.cpus / instance_cpus + 1e-9)))


def check_unique(hosts: list[HostConfig]) -> None:
    """A host listed twice (same name, or the same engine under two names) is an error."""
    seen_names: dict[str, int] = {}
    seen_urls: dict[str, str] = {}
    for index, host in enumerate(hosts):
        if host.name in seen_names:
            raise ValueError(f"hosts[{index}]: host name {host.name!r} is listed twice "
                             f"(also hosts[{seen_names[host.name]}])")
        if host.docker_host in seen_urls:
            raise ValueError(f"hosts[{index}] ({host.name}): engine {host.docker_host} is "
                             f"already host {seen_urls[host.docker_host]!r}")
        seen_names[host.name] = index
        seen_urls[host.docker_host] = host.name


# -- what is remembered between ticks ----------------------------------------------------------


@dataclass
class KnownInstance:
    id: str
    name: str
    address: str
    started_at: str

    @classmethod
    def of(cls, inst: Instance) -> KnownInstance:
        return cls(inst.id, inst.name, inst.address, inst.started_at.isoformat())

    def lost(self, host: str, reason: str) -> Instance:
        return Instance(id=self.id, name=self.name, address=self.address,
                        state=InstanceState.EXITED,
                        started_at=datetime.fromisoformat(self.started_at),
                        labels={HOST_LABEL: host, LOST_LABEL: reason})


@dataclass
class HostRecord:
    instances: list[KnownInstance] = field(default_factory=list)
    """Seen on the host at its last answer."""
    down_since: str | None = None
    reason: str | None = None
    leftovers: list[str] = field(default_factory=list)
    """Container ids given up while the host was down; removed when it answers again."""


class HostStateStore:
    """``{host: HostRecord}`` in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, HostRecord]:
        try:
            raw: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        records = {}
        for name, rec in raw.items():
            records[name] = HostRecord(
                instances=[KnownInstance(**i) for i in rec.get("instances", [])],
                down_since=rec.get("down_since"), reason=rec.get("reason"),
                leftovers=list(rec.get("leftovers", [])))
        return records

    def save(self, records: dict[str, HostRecord]) -> None:
        text = json.dumps({k: asdict(v) for k, v in sorted(records.items())}, indent=1)
        write_atomic(self.path, text)

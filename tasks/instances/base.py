"""The instance-driver interface: backend stock-API instances the autoscaler starts and stops.

Implementations: ``tasks.instances.docker.DockerDriver`` (Docker Engine API via the docker SDK: a
local socket, the Podman socket here, or a remote engine over ``ssh://``) and
``tasks.instances.process.ProcessDriver`` (gunicorn processes, for machines with no engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from autoscaler.model import InstanceState as InstanceState  # the one definition


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    address: str  # host:port the gateway sends traffic to (loopback locally)
    state: InstanceState
    started_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    """What the instance runs (the image id; None when the driver cannot tell): a new one
    makes the autoscaler learn the capacity afresh."""


@dataclass(frozen=True)
class InstanceStats:
    instance_id: str
    cpu_percent: float | None
    memory_percent: float | None
    memory_bytes: int | None = None


@runtime_checkable
class InstanceDriver(Protocol):
    """Start/stop/inspect backend instances carrying the kongstack owner label."""

    def list(self) -> list[Instance]:
        """Every instance this driver owns (by label), running or exited."""
        ...

    def start(self, *, env: dict[str, str] | None = None) -> Instance:
        """Start one new instance on a free port; returns it in state STARTING."""
        ...

    def wait_ready(self, instance: Instance, timeout: float = 30.0) -> Instance:
        """Block until ``GET /ready`` answers 200; raise InstanceError on timeout."""
        ...

    def stop(self, instance_id: str, grace: float = 10.0) -> None:
        """SIGTERM, wait ``grace`` seconds, then kill and remove. Missing counts as done."""
        ...

    def stats(self, instance_id: str) -> InstanceStats:
        """CPU and memory now; None for a value that cannot be read."""
        ...

    def logs(self, instance_id: str, tail: int = 100) -> str: ...

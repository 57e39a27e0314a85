"""The gateway interface shared by deploy-stack and autoscale (DESIGN.md, decK/KIC model).

Two implementations: Kong (``tasks.gateway.kong``, the Admin API over httpx) and nginx
(``tasks.gateway.nginx``, the local default). Flows depend only on this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class TargetHealth(StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DNS_ERROR = "DNS_ERROR"
    HEALTHCHECKS_OFF = "HEALTHCHECKS_OFF"
    DRAINING = "DRAINING"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Target:
    """One backend address (``host:port``) registered in the gateway's upstream."""

    address: str
    weight: int = 100
    health: TargetHealth = TargetHealth.UNKNOWN
    tags: tuple[str, ...] = ()
    owned: bool = True
    """kongstack created it (Kong: it carries the stack's owner tags). Repairs touch only
    owned targets; an operator's own targets in the upstream are left alone."""


@dataclass(frozen=True)
class Operation:
    """One planned change: plain data, printed for a dry run and executed for a sync."""

    action: str  # "create" | "update" | "delete"
    kind: str  # "upstream" | "target" | "service" | "route" | "plugin" | "consumer" | ...
    name: str
    body: dict[str, Any] = field(default_factory=dict)
    # How the operation is carried out (e.g. "PUT", "/services/stock-api"); empty when the
    # gateway has no HTTP API (nginx). Plain data too, so a dry run shows the exact request.
    method: str = ""
    path: str = ""

    def describe(self) -> str:
        via = f" ({self.method} {self.path})" if self.method else ""
        return f"{self.action} {self.kind} {self.name}{via}"


def format_plan(operations: list[Operation]) -> str:
    """The plan as printed for a dry run: one line per operation (bodies are not shown,
    so secrets such as key-auth keys never reach the output)."""
    if not operations:
        return "no changes"
    return "\n".join(op.describe() for op in operations)


@dataclass
class ApplyResult:
    """What ``apply`` did (or, for a dry run, would do)."""

    operations: list[Operation]
    dry_run: bool
    reads: int = 0
    writes: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.operations)


@runtime_checkable
class Gateway(Protocol):
    """What the flows need from a gateway. Every method is idempotent."""

    upstream: str

    def apply(self, desired: Any, *, dry_run: bool = False) -> ApplyResult:
        """Reconcile the gateway to ``desired`` (a desired-state model); return the plan."""
        ...

    def list_targets(self) -> list[Target]:
        """Targets of ``upstream`` with their health."""
        ...

    def add_target(self, address: str, weight: int = 100) -> None:
        """Register ``address``; already present counts as done."""
        ...

    def drain_target(self, address: str) -> None:
        """Stop sending new requests to ``address``; in-flight requests finish."""
        ...

    def remove_target(self, address: str) -> None:
        """Remove ``address``; already absent counts as done."""
        ...

    def close(self) -> None: ...

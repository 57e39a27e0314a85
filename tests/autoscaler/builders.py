"""Builders for observations used across the autoscaler tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autoscaler import InstanceState, InstanceView, Metrics, Observation
from autoscaler.capacity import CapacityEstimate, SloPoint

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def pool(
    *cpus: float | None,
    memory: float | None = 40.0,
    starting: int = 0,
    warming: int = 0,
    draining: int = 0,
    rps: float | None = None,
    p95_ms: float | None = None,
    sampled_at: datetime | None = None,
) -> Observation:
    """Warm ready instances with the given CPU % (None = no metrics from that instance),
    plus starting, warming-up (ready but recent) and draining ones."""
    instances: list[InstanceView] = []
    for k, cpu in enumerate(cpus):
        metrics = (
            None
            if cpu is None
            else Metrics(cpu_percent=cpu, memory_percent=memory, sampled_at=sampled_at)
        )
        instances.append(InstanceView(id=f"warm{k}", started_at=LONG_AGO, metrics=metrics))
    for k in range(starting):
        instances.append(
            InstanceView(id=f"start{k}", state=InstanceState.STARTING, started_at=ago(5))
        )
    for k in range(warming):
        instances.append(
            InstanceView(
                id=f"warmup{k}",
                started_at=ago(10),
                metrics=Metrics(cpu_percent=100.0, memory_percent=memory),
            )
        )
    for k in range(draining):
        instances.append(
            InstanceView(id=f"drain{k}", state=InstanceState.DRAINING, started_at=LONG_AGO)
        )
    aggregate = Metrics(rps=rps, p95_latency_ms=p95_ms, sampled_at=sampled_at)
    return Observation(instances=tuple(instances), aggregate=aggregate)


def slow_at(rps: float, at: datetime) -> CapacityEstimate:
    """A learned estimate that saw p95 over its threshold at ``rps`` per instance at ``at``."""
    return CapacityEstimate(slow=(SloPoint(at=at, rps=rps),))

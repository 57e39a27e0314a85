"""Turn an Observation into the numbers the strategies use, handling missing, stale and
warming-up data the way the HPA does (replica_calculator.go).

* A *warm* instance is ready and started at least ``warmup_seconds`` ago; only warm instances
  enter per-instance averages (cold-start CPU spikes must not trigger scale-ups).
* A sample older than ``metric_max_age_seconds`` counts as missing.
* Pool-wide values prefer the gateway's aggregate and fall back to per-instance values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from autoscaler.config import AutoscalePolicy
from autoscaler.model import InstanceState, InstanceView, Metrics, Observation


@dataclass(frozen=True)
class UtilisationReading:
    """A per-instance percentage (CPU or memory) over the active pool."""

    values: tuple[float, ...]
    """Fresh values of warm instances."""
    missing: int
    """Warm instances without a fresh value."""
    warming: int
    """Starting instances and ready ones still inside the warm-up period."""

    @property
    def average(self) -> float:
        return sum(self.values) / len(self.values)


def is_warm(instance: InstanceView, policy: AutoscalePolicy, now: datetime) -> bool:
    if instance.state is not InstanceState.READY:
        return False
    return (now - instance.started_at).total_seconds() >= policy.warmup_seconds


def fresh_metrics(
    metrics: Metrics | None, policy: AutoscalePolicy, now: datetime
) -> Metrics | None:
    """``metrics`` if present and not older than ``metric_max_age_seconds``, else None."""
    if metrics is None or not metrics.is_fresh(now, policy.metric_max_age_seconds):
        return None
    return metrics


_UTIL_FIELDS: dict[str, Callable[[Metrics], float | None]] = {
    "cpu": lambda m: m.cpu_percent,
    "memory": lambda m: m.memory_percent,
}


def utilisation(
    name: str, observation: Observation, policy: AutoscalePolicy, now: datetime
) -> UtilisationReading | None:
    """Per-instance utilisation; ``None`` when no warm instance (nor the aggregate) has it."""
    pick = _UTIL_FIELDS[name]
    values: list[float] = []
    missing = warming = 0
    for inst in observation.active:
        if not is_warm(inst, policy, now):
            warming += 1
            continue
        fresh = fresh_metrics(inst.metrics, policy, now)
        value = pick(fresh) if fresh is not None else None
        if value is None:
            missing += 1
        else:
            values.append(value)
    if not values:
        agg = fresh_metrics(observation.aggregate, policy, now)
        value = pick(agg) if agg is not None else None
        warm = missing
        if value is None or warm == 0:
            return None
        # The gateway/engine gave a pool average only: it stands for every warm instance.
        return UtilisationReading(values=(value,) * warm, missing=0, warming=warming)
    return UtilisationReading(values=tuple(values), missing=missing, warming=warming)


def total_rps(observation: Observation, policy: AutoscalePolicy, now: datetime) -> float | None:
    """Requests per second offered to the pool: the gateway's count (it sees every request,
    also those the pool fails), else the sum over instances if every warm one reported."""
    agg = fresh_metrics(observation.aggregate, policy, now)
    if agg is not None and agg.rps is not None:
        return agg.rps
    total = 0.0
    seen = False
    for inst in observation.active:
        fresh = fresh_metrics(inst.metrics, policy, now)
        if fresh is not None and fresh.rps is not None:
            total += fresh.rps
            seen = True
        elif is_warm(inst, policy, now):
            return None  # a warm instance is silent: the sum would understate the load
    return total if seen else None


def _pool_max(
    observation: Observation,
    policy: AutoscalePolicy,
    now: datetime,
    pick: Callable[[Metrics], float | None],
) -> float | None:
    agg = fresh_metrics(observation.aggregate, policy, now)
    if agg is not None and pick(agg) is not None:
        return pick(agg)
    seen = [
        v
        for inst in observation.active
        if is_warm(inst, policy, now)
        and (fresh := fresh_metrics(inst.metrics, policy, now)) is not None
        and (v := pick(fresh)) is not None
    ]
    return max(seen) if seen else None


def p95_latency_ms(
    observation: Observation, policy: AutoscalePolicy, now: datetime
) -> float | None:
    """The gateway's p95, else the worst warm instance's p95."""
    return _pool_max(observation, policy, now, lambda m: m.p95_latency_ms)


def error_rate(observation: Observation, policy: AutoscalePolicy, now: datetime) -> float | None:
    return _pool_max(observation, policy, now, lambda m: m.error_rate)

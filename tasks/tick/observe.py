"""Observe: the world as the decision core sees it.

    Prometheus (pool-wide rps, p95 latency, error rate)  ┐
    engine stats (CPU, memory per ready instance)        ├─> autoscaler.Observation
    the repaired pool (instances and their states)       ┘

Engine stats take ~0.5 s (two CPU samples), so they are read only when the policy uses CPU
or memory, and in parallel with the Prometheus queries. Prometheus down after the retries
means every metric is missing (never zero): the policy then never scales in on it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from autoscaler import AutoscalePolicy, Decision, InstanceState, InstanceView, Metrics, Observation
from kongstack.core.errors import StackError
from kongstack.core.retry import retry_on
from tasks.instances.base import InstanceStats
from tasks.instances.hosts import HOST_LABEL
from tasks.runlog import run_logger
from tasks.tick.pool import PoolConfig, PoolView, pool_clients
from tasks.tick.prometheus import (
    MetricsSnapshot,
    PrometheusConfig,
    PrometheusReader,
    PrometheusUnavailable,
    unavailable_snapshot,
)


@dataclass(frozen=True)
class Seen:
    """What one tick saw: the raw metric readings and the core's view of them."""

    snapshot: MetricsSnapshot
    observation: Observation
    at: datetime

    @property
    def active(self) -> int:
        return len(self.observation.active)

    def metrics(self, decision: Decision) -> dict[str, Any]:
        """The values a decision was based on, for the history (missing ones with why)."""
        data: dict[str, Any] = dict(decision.metric_values)
        data.update({k: v for k, v in self.snapshot.as_dict().items() if v is not None})
        if self.snapshot.missing:
            data["missing"] = self.snapshot.missing
        return data


def observe(prometheus: PrometheusConfig, pool: PoolConfig, view: PoolView,
            policy: AutoscalePolicy) -> Seen:
    """Read the metrics (and the engine stats the policy needs) and map them, with the pool,
    onto the decision core's types."""
    ready = [i.id for i in view.instances if i.state is InstanceState.READY]
    stats_run = (observe_instance_stats.submit(pool, ready)
                 if ready and uses_utilisation(policy) else None)
    try:
        snapshot = observe_metrics(prometheus)
    except Exception as exc:  # Prometheus down after the retries: every metric missing
        snapshot = unavailable_snapshot(prometheus, f"prometheus unavailable: {exc}")
    log = run_logger("kongstack.autoscale")
    for name, why in snapshot.missing.items():
        log.info("metric %s missing: %s", name, why)
    stats = stats_run.result() if stats_run is not None else {}
    now = datetime.now(UTC)
    return Seen(snapshot, build_observation(view, snapshot, stats, now), now)


def uses_utilisation(policy: AutoscalePolicy) -> bool:
    return policy.strategy == "threshold" or bool({"cpu", "memory"} & set(policy.target_metrics))


LIVE = (InstanceState.STARTING, InstanceState.READY, InstanceState.DEGRADED,
        InstanceState.DRAINING)
"""What the decision core is shown; exited and unhealthy instances are the repair's."""


def build_observation(view: PoolView, snapshot: MetricsSnapshot,
                      stats: dict[str, InstanceStats], now: datetime) -> Observation:
    """The engine's instances and Prometheus' readings as an ``autoscaler.Observation``."""
    views = []
    for inst in view.instances:
        if inst.state not in LIVE:
            continue  # exited/unhealthy: the repair's business, not the pool's size
        s = stats.get(inst.id)
        metrics = Metrics(cpu_percent=s.cpu_percent, memory_percent=s.memory_percent,
                          sampled_at=now) if s is not None else None
        views.append(InstanceView(id=inst.id, state=inst.state, started_at=inst.started_at,
                                  metrics=metrics, host=inst.labels.get(HOST_LABEL)))
    aggregate = Metrics(
        rps=snapshot.value("rps"),
        cpu_percent=snapshot.value("cpu_percent"),
        p95_latency_ms=snapshot.value("p95_latency_ms"),
        error_rate=snapshot.value("error_rate"),
        sampled_at=snapshot.sampled_at,
    )
    return Observation(instances=tuple(views), aggregate=aggregate, version=serving_version(view))


def serving_version(view: PoolView) -> str | None:
    """The image the ready instances run, when they all run the same one (during a rollout,
    or when the driver cannot tell, None: the capacity learner keeps its estimate)."""
    versions = {i.version for i in view.instances if i.state is InstanceState.READY}
    return versions.pop() if len(versions) == 1 else None


@task(
    name="observe-metrics",
    retries=2,
    retry_delay_seconds=[0.5, 1.5],
    retry_jitter_factor=0.2,
    # only Prometheus being unreachable is worth a retry; bad data will not improve
    retry_condition_fn=retry_on(PrometheusUnavailable),
    cache_policy=NO_CACHE,
    timeout_seconds=30,
)
def observe_metrics(config: PrometheusConfig) -> MetricsSnapshot:
    """Read the pool-wide metrics; raises PrometheusUnavailable when Prometheus is down."""
    with PrometheusReader(config) as reader:
        return reader.snapshot()


# No Prefect timeout: this task runs in a worker thread beside observe-metrics, where Prefect
# cannot interrupt it (it only warns); every engine call has its own client timeout instead.
@task(name="observe-instances", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def observe_instance_stats(config: PoolConfig, instance_ids: list[str]) -> dict[str, InstanceStats]:
    """CPU and memory per instance, read in parallel (a Docker stats call can take ~0.5 s).

    An instance whose stats cannot be read is simply absent: its values count as missing.
    """
    if not instance_ids:
        return {}
    with pool_clients(config) as clients:
        driver = clients.driver

        def one(instance_id: str) -> InstanceStats | None:
            try:
                return driver.stats(instance_id)
            except StackError as exc:
                run_logger("kongstack.autoscale").info("stats of %s unavailable: %s",
                                                       instance_id, exc)
                return None

        with ThreadPoolExecutor(max_workers=min(8, len(instance_ids))) as workers:
            results = list(workers.map(one, instance_ids))
    return {s.instance_id: s for s in results if s is not None}

"""The live tick learns the capacity as the replay does: the image the ready instances run,
a sample per tick folded in before the decision, and the estimate kept in the tick memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autoscaler import AutoscalePolicy, ScalingHistory
from tasks.instances.base import Instance, InstanceState, InstanceStats
from tasks.tick.decide import decide_tick
from tasks.tick.memory import TickMemory
from tasks.tick.observe import Seen, build_observation, serving_version
from tasks.tick.pool import PoolView
from tasks.tick.prometheus import MetricReading, MetricsSnapshot

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)


def instance(k: int, version: str | None, state: InstanceState = InstanceState.READY) -> Instance:
    return Instance(id=f"i{k}", name=f"i{k}", address=f"127.0.0.1:{9000 + k}", state=state,
                    started_at=LONG_AGO, version=version)


@pytest.mark.parametrize(
    ("why", "instances", "expected"),
    [
        ("all ready instances run one image: that is the version",
         [instance(0, "sha256:a"), instance(1, "sha256:a")], "sha256:a"),
        ("a rollout in progress: no version, the estimate is kept until it is over",
         [instance(0, "sha256:a"), instance(1, "sha256:b")], None),
        ("a starting instance of a new image does not count until it serves",
         [instance(0, "sha256:a"), instance(1, "sha256:b", InstanceState.STARTING)], "sha256:a"),
        ("a driver that cannot tell (processes)", [instance(0, None)], None),
    ],
)
def test_serving_version(why: str, instances: list[Instance], expected: str | None) -> None:
    assert serving_version(PoolView(instances=instances, targets=[])) == expected, why


def seen(at: datetime, per_instance: float, version: str = "sha256:a") -> Seen:
    view = PoolView(instances=[instance(k, version) for k in range(3)], targets=[])
    snapshot = MetricsSnapshot(sampled_at=at, readings={
        "rps": MetricReading("rps", 3 * per_instance, ""),
        "p95_latency_ms": MetricReading("p95_latency_ms", 150.0, ""),
        "error_rate": MetricReading("error_rate", 0.0, ""),
    })
    # This service: 4 % CPU idle, 100 % at 80 requests/s per instance.
    cpu = 4 + 96 * per_instance / 80
    stats = {f"i{k}": InstanceStats(f"i{k}", cpu, 30.0) for k in range(3)}
    return Seen(snapshot, build_observation(view, snapshot, stats, at), at)


def test_decide_tick_learns_before_deciding_and_a_new_image_starts_again() -> None:
    policy = AutoscalePolicy(min_instances=1, max_instances=10)
    memory = TickMemory(ScalingHistory(), 1, 3)
    view = PoolView(instances=[instance(k, "sha256:a") for k in range(3)], targets=[])
    plan = None
    for k in range(30):
        at = NOW + timedelta(seconds=30 * k)
        plan = decide_tick(policy, memory, view, seen(at, 15.0 + 1.5 * k))
        memory = TickMemory(plan.history.record(plan.decision), 1, 3)
    assert plan is not None
    learnt = plan.history.capacity
    assert learnt.capacity_rps == pytest.approx(80, rel=0.05) and learnt.version == "sha256:a"
    assert learnt.confident(policy.capacity_confidence)
    # Confident: the rate target (80/s x (72 - 4) / 96 = 56.7/s) drives the decision.
    assert plan.decision.driving_metric == "rps" and "(learned: 8" in plan.decision.reason
    later = NOW + timedelta(seconds=30 * 31)
    fresh = decide_tick(policy, memory, view, seen(later, 30.0, version="sha256:b"))
    assert fresh.history.capacity.version == "sha256:b"
    assert fresh.history.capacity.capacity_rps is None and fresh.history.capacity.resets == 1

"""The capacity learner (autoscaler/capacity.py, autoscaler/learning.py), table-driven: each
row says why."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from autoscaler import (
    AutoscalePolicy,
    CapacityEstimate,
    CapacitySample,
    InstanceState,
    InstanceView,
    Metrics,
    Observation,
    ScalingHistory,
    capacity_sample,
    learn,
    observe,
    rps_target,
)

from .builders import LONG_AGO, NOW, ago

TRUE_CAPACITY = 100.0
IDLE = 3.0


def cpu_at(rps: float, capacity: float = TRUE_CAPACITY) -> float:
    return IDLE + (100.0 - IDLE) * rps / capacity


def jitter(k: int) -> float:
    """A repeatable +-2 % CPU wobble."""
    return 2.0 * math.sin(k * 2.399)


def varied(k: int) -> float:
    """Per-instance rates that wander between 20 and 80 /s (a day's varied load)."""
    return 50.0 + 30.0 * math.sin(k * 0.37)


def sample(
    k: int,
    rps: float,
    cpu: float | None,
    *,
    serving: int = 4,
    version: str | None = "v1",
    warm: bool = True,
    slow: bool | None = False,
    errors: float | None = 0.0,
) -> CapacitySample:
    return CapacitySample(
        at=NOW + timedelta(seconds=30 * k),
        rps_per_instance=rps,
        cpu_percent=cpu,
        slow=slow,
        error_rate=errors,
        serving=serving,
        version=version,
        warm=warm,
    )


def steady_pool(k: int) -> CapacitySample:
    rps = varied(k)
    return sample(k, rps, cpu_at(rps) + jitter(k))


def with_spikes(k: int) -> CapacitySample:
    # Every 7th reading is a neighbour's CPU spike (+25 %): not this service's load.
    rps = varied(k)
    return sample(k, rps, min(100.0, cpu_at(rps) + jitter(k) + (25.0 if k % 7 == 3 else 0.0)))


def warming(k: int) -> CapacitySample:
    # Every tick has an instance still in its warm-up (or one draining): nothing is learnt.
    rps = varied(k)
    return sample(k, rps, cpu_at(rps), warm=False)


def resizing(k: int) -> CapacitySample:
    # The pool changes size every other tick: the 60 s window mixes two sizes, never settles.
    rps = varied(k)
    return sample(k, rps, cpu_at(rps) + 30.0 * (k % 2), serving=3 + k % 2)


def one_level(k: int) -> CapacitySample:
    # Always the same load: the slope cannot be told from the noise.
    return sample(k, 50.0, cpu_at(50.0) + jitter(k))


def saturated(k: int) -> CapacitySample:
    # Overloaded ticks: CPU at 100 % and requests failing; the line cannot be read there.
    rps = 150.0 + 10 * (k % 5)
    return sample(k, rps, 100.0, errors=0.3, slow=True)


def new_image(k: int) -> CapacitySample:
    # 60 ticks of v1 (100/s per instance), then v2, which serves only half as much.
    rps = varied(k)
    if k < 60:
        return sample(k, rps, cpu_at(rps) + jitter(k))
    rps /= 2
    return sample(k, rps, cpu_at(rps, 50.0) + jitter(k), version="v2")


def silent_change(k: int) -> CapacitySample:
    # The same change without a new version: a run of agreeing outliers resets it.
    rps = varied(k)
    if k < 60:
        return sample(k, rps, cpu_at(rps) + jitter(k))
    return sample(k, rps / 2, cpu_at(rps / 2, 50.0) + jitter(k) / 4)


@dataclass
class Row:
    why: str
    samples: Callable[[int], CapacitySample]
    ticks: int
    capacity: float | None
    """Expected learned capacity (within 5 %), or None for "no estimate"."""
    confident: bool
    check: Callable[[CapacityEstimate], bool] = lambda e: True


ROWS = [
    Row("converges: 30 minutes of varied load learn 100/s within 5 %", steady_pool, 60, 100, True),
    Row(
        "rejects outliers: CPU spikes from a neighbour neither move nor widen the estimate",
        with_spikes,
        90,
        100,
        True,
        lambda e: e.rejected >= 5,
    ),
    Row(
        "ignores warming and draining instances: nothing is learnt while one is in the pool",
        warming,
        60,
        None,
        False,
        lambda e: e.points == (),
    ),
    Row(
        "a pool that never holds its size for the settle time teaches nothing",
        resizing,
        60,
        None,
        False,
        lambda e: e.points == (),
    ),
    Row("one load level: a guess, never confident", one_level, 60, None, False),
    Row(
        "saturated ticks (CPU 100 %, requests failing) are not fitted, but remembered as slow",
        saturated,
        30,
        None,
        False,
        lambda e: e.points == () and e.slo_rps is not None,
    ),
    Row(
        "decays on a new image: v2's half capacity replaces v1's, not averaged with it",
        new_image,
        120,
        50,
        True,
        lambda e: e.version == "v2" and e.resets == 1,
    ),
    Row(
        "the service changed without a new version: a run of agreeing outliers resets it",
        silent_change,
        150,
        50,
        True,
        lambda e: e.resets == 1,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.why for r in ROWS])
def test_learner(row: Row) -> None:
    estimate = CapacityEstimate()
    for k in range(row.ticks):
        estimate = observe(estimate, row.samples(k))
    if row.capacity is None:
        assert not estimate.confident(0.5), estimate.describe()
    else:
        assert estimate.capacity_rps == pytest.approx(row.capacity, rel=0.05), estimate.describe()
    assert estimate.confident(0.5) is row.confident, estimate.describe()
    assert row.check(estimate), estimate


def test_a_new_image_drops_confidence_at_once() -> None:
    estimate = CapacityEstimate()
    for k in range(60):
        estimate = observe(estimate, new_image(k))
    assert estimate.confident(0.5)
    estimate = observe(estimate, new_image(60))
    assert not estimate.confident(0.5) and estimate.points == ()


def test_the_estimate_survives_a_restart_as_json() -> None:
    estimate = CapacityEstimate()
    for k in range(40):
        estimate = observe(estimate, with_spikes(k))
    history = ScalingHistory(capacity=estimate)
    restored = ScalingHistory.model_validate_json(history.model_dump_json())
    assert restored.capacity == estimate
    assert restored.capacity.capacity_rps == pytest.approx(100, rel=0.05)


def test_the_fit_is_bounded_in_memory() -> None:
    estimate = CapacityEstimate()
    for k in range(500):
        estimate = observe(estimate, steady_pool(k))
    assert len(estimate.points) <= 64
    # The reservoir keeps the range of loads, not just the latest ones.
    assert min(p.rps for p in estimate.points) < 25 and max(p.rps for p in estimate.points) > 75


def test_slow_rates_are_remembered_for_an_hour() -> None:
    estimate = CapacityEstimate()
    for k in range(5):
        estimate = observe(estimate, sample(k, 40.0, 60.0, slow=k == 4))
    assert estimate.slow_rate(NOW + timedelta(seconds=120), 3600) == 40.0
    assert estimate.slow_rate(NOW + timedelta(seconds=120 + 3601), 3600) is None


def _observation(
    *, warming: bool = False, draining: bool = False, cpu: float = 51.5, rps: float = 200.0
) -> Observation:
    instances = [
        InstanceView(id=f"w{k}", started_at=LONG_AGO, metrics=Metrics(cpu_percent=cpu))
        for k in range(4)
    ]
    if warming:
        instances.append(
            InstanceView(id="new", started_at=ago(10), metrics=Metrics(cpu_percent=100.0))
        )
    if draining:
        instances.append(InstanceView(id="old", state=InstanceState.DRAINING, started_at=LONG_AGO))
    aggregate = Metrics(rps=rps, p95_latency_ms=150.0, error_rate=0.0)
    return Observation(instances=tuple(instances), aggregate=aggregate, version="img-1")


SAMPLE_ROWS = [
    ("a settled pool: rate per ready instance and their mean CPU", _observation(), True, 50.0),
    (
        "a warming instance is counted as serving but the tick is not learnt from",
        _observation(warming=True),
        False,
        40.0,
    ),
    ("a draining instance makes the tick unusable", _observation(draining=True), False, 50.0),
]


@pytest.mark.parametrize(("why", "obs", "warm", "per_instance"), SAMPLE_ROWS)
def test_capacity_sample(why: str, obs: Observation, warm: bool, per_instance: float) -> None:
    got = capacity_sample(obs, AutoscalePolicy(), NOW)
    assert got is not None, why
    assert got.warm is warm, why
    assert got.rps_per_instance == pytest.approx(per_instance), why
    assert got.cpu_percent == pytest.approx(51.5), why
    assert got.version == "img-1" and got.slow is False, why


CPU_SOURCE_ROWS = [
    ("the pool's CPU over the rate's window wins over the engine's one-second samples",
     [30.0, 70.0, 5.0, 55.0], 41.0, 41.0),
    ("no window CPU (no process metrics): the engine samples' mean", [30.0, 70.0, 5.0, 55.0],
     None, 40.0),
    ("an engine sample missing for a warm instance and no window CPU: no CPU this tick",
     [30.0, None, 5.0, 55.0], None, None),
    ("an engine sample missing does not matter when the window CPU is there",
     [30.0, None, 5.0, 55.0], 41.0, 41.0),
]


@pytest.mark.parametrize(("why", "engine", "window", "expected"), CPU_SOURCE_ROWS)
def test_capacity_sample_cpu_source(why: str, engine: list[float | None], window: float | None,
                                    expected: float | None) -> None:
    instances = tuple(
        InstanceView(id=f"w{k}", started_at=LONG_AGO,
                     metrics=None if cpu is None else Metrics(cpu_percent=cpu))
        for k, cpu in enumerate(engine))
    obs = Observation(instances=instances, aggregate=Metrics(rps=200.0, cpu_percent=window),
                      version="img-1")
    got = capacity_sample(obs, AutoscalePolicy(), NOW)
    assert got is not None, why
    assert got.cpu_percent == (None if expected is None else pytest.approx(expected)), why


def test_no_rate_no_sample() -> None:
    obs = _observation().model_copy(update={"aggregate": Metrics(p95_latency_ms=100.0)})
    assert capacity_sample(obs, AutoscalePolicy(), NOW) is None


def test_learn_through_the_history_and_the_target_it_gives() -> None:
    policy = AutoscalePolicy(min_instances=1, max_instances=10)
    history = ScalingHistory()
    for k in range(60):
        rps = varied(k)
        obs = Observation(
            instances=tuple(
                InstanceView(
                    id=f"i{j}",
                    started_at=LONG_AGO,
                    metrics=Metrics(cpu_percent=cpu_at(rps) + jitter(k)),
                )
                for j in range(4)
            ),
            aggregate=Metrics(rps=4 * rps, p95_latency_ms=100.0),
        )
        history = learn(policy, obs, history, NOW + timedelta(seconds=30 * k))
    target = rps_target(policy, history.capacity)
    assert target is not None and target.source == "learned"
    # The rate one instance serves at the 72 % CPU target: 100 x (72 - 3) / 97.
    assert target.rps == pytest.approx(100 * (72 - IDLE) / (100 - IDLE), rel=0.05)
    assert "learned" in target.why and "confidence" in target.why
    # A manually set target always wins; a policy that does not learn has none.
    manual = policy.with_overrides({"target_rps_per_instance": 42})
    assert rps_target(manual, history.capacity) == rps_target(manual, CapacityEstimate())
    assert rps_target(manual, history.capacity).rps == 42  # type: ignore[union-attr]
    assert rps_target(policy.with_overrides({"learn_capacity": False}), history.capacity) is None
    assert learn(policy.with_overrides({"learn_capacity": False}), obs, history, NOW) is history

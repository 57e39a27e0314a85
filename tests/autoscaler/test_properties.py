"""Property-based tests of decide() (hypothesis)."""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler import (
    AutoscalePolicy,
    CapacityEstimate,
    InstanceView,
    LatencySample,
    LoadProfile,
    Metrics,
    Observation,
    RateSample,
    ScalingHistory,
    decide,
)

from .builders import LONG_AGO, NOW, ago

percent = st.floats(min_value=0, max_value=100, allow_nan=False)
maybe_percent = st.one_of(st.none(), percent)
rates = st.one_of(st.none(), st.floats(min_value=0, max_value=1000, allow_nan=False))

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def policies(draw: st.DrawFn) -> AutoscalePolicy:
    lo = draw(st.integers(1, 5))
    hi = draw(st.integers(lo, 12))
    return AutoscalePolicy(
        strategy=draw(st.sampled_from(["proportional", "threshold"])),
        min_instances=lo,
        max_instances=hi,
        target_rps_per_instance=draw(st.one_of(st.none(), st.floats(1, 200))),
        forecast_seconds=draw(st.sampled_from([0.0, 60.0])),
        flapping_check=draw(st.booleans()),
        learn_capacity=draw(st.booleans()),
        seasonal_forecast=draw(st.booleans()),
        short_burst_seconds=draw(st.sampled_from([0.0, 150.0])),
    )


@st.composite
def observations(draw: st.DrawFn, count: st.SearchStrategy[int] | None = None) -> Observation:
    n = draw(count if count is not None else st.integers(0, 14))
    instances = []
    for k in range(n):
        has = draw(st.booleans()) or draw(st.booleans())  # mostly with metrics
        metrics = (
            Metrics(cpu_percent=draw(percent), memory_percent=draw(percent), rps=draw(rates))
            if has
            else None
        )
        started = draw(st.sampled_from([LONG_AGO, ago(5)]))
        instances.append(InstanceView(id=f"i{k}", started_at=started, metrics=metrics))
    aggregate = Metrics(
        rps=draw(rates),
        p95_latency_ms=draw(st.one_of(st.none(), st.floats(0, 5000))),
    )
    return Observation(instances=tuple(instances), aggregate=aggregate)


@st.composite
def histories(draw: st.DrawFn) -> ScalingHistory:
    """Memories a tick may start from: a learned capacity (confident or not), a seasonal
    profile, recent rates and latencies."""
    capacity = CapacityEstimate()
    if draw(st.booleans()):
        capacity = CapacityEstimate(
            capacity_rps=draw(st.floats(1, 1000)),
            idle_cpu_percent=draw(st.floats(0, 30)),
            samples=draw(st.integers(0, 64)),
            confidence=draw(st.floats(0, 1)),
        )
    profile = None
    if draw(st.booleans()):
        values = draw(st.lists(st.one_of(st.none(), st.floats(0, 2000)), min_size=96, max_size=96))
        profile = LoadProfile(day=tuple(values), days=3)
    ages = draw(st.lists(st.integers(1, 3600), max_size=30, unique=True))
    rates = tuple(
        RateSample(at=ago(age), rps=draw(st.floats(0, 2000))) for age in sorted(ages, reverse=True)
    )
    latencies = tuple(
        LatencySample(at=ago(30 * k), p95_ms=draw(st.floats(0, 60_000)))
        for k in range(draw(st.integers(0, 3)), 0, -1)
    )
    return ScalingHistory(capacity=capacity, profile=profile, rates=rates, latencies=latencies)


@SETTINGS
@given(policy=policies(), observation=observations(), history=histories())
def test_desired_always_within_min_and_max(
    policy: AutoscalePolicy, observation: Observation, history: ScalingHistory
) -> None:
    decision = decide(policy, observation, history, NOW)
    assert policy.min_instances <= decision.desired <= policy.max_instances


@SETTINGS
@given(
    policy=policies(),
    observation=observations(st.integers(1, 12)),
    history=histories(),
    data=st.data(),
)
def test_no_scale_down_while_a_metric_is_missing(
    policy: AutoscalePolicy, observation: Observation, history: ScalingHistory, data: st.DataObject
) -> None:
    # Make one warm instance silent (no sample at all, or a stale one).
    stale = data.draw(st.booleans())
    silent = InstanceView(
        id="silent",
        started_at=LONG_AGO,
        metrics=Metrics(cpu_percent=1, memory_percent=1, rps=0, sampled_at=ago(3600))
        if stale
        else None,
    )
    obs = Observation(instances=(*observation.instances, silent), aggregate=Metrics())
    current = len(obs.active)
    decision = decide(policy, obs, history, NOW)
    assert decision.missing_metrics or decision.limits or decision.desired >= current
    if current <= policy.max_instances:
        assert decision.desired >= current, decision.reason


@SETTINGS
@given(
    loads=st.lists(st.floats(0, 100), min_size=2, max_size=40),
    window=st.sampled_from([60.0, 120.0, 300.0]),
)
def test_no_scale_down_inside_the_window_after_a_scale_up(
    loads: list[float], window: float
) -> None:
    policy = AutoscalePolicy(
        min_instances=1,
        max_instances=20,
        target_memory_percent=None,
        scale_down_stabilization_seconds=window,
        warmup_seconds=0,
    )
    history = ScalingHistory()
    count = 3
    last_up = None
    for k, cpu in enumerate(loads):
        now = NOW + timedelta(seconds=30 * k)
        obs = Observation(
            instances=tuple(
                InstanceView(id=f"i{j}", started_at=LONG_AGO, metrics=Metrics(cpu_percent=cpu))
                for j in range(count)
            )
        )
        decision = decide(policy, obs, history, now)
        history = history.record(decision)
        if decision.desired < count and last_up is not None:
            assert (now - last_up).total_seconds() >= window, decision.reason
        if decision.desired > count:
            last_up = now
        count = decision.desired


def seed_rules(
    cpu: float,
    memory: float,
    rps: float,
    rt: float,
    current: int,
    since_last: float | None,
    lo: int = 3,
    hi: int = 6,
) -> int:
    """A direct transcription of the seed scripts' rules (kong-auto-scaling.ps1 README)."""
    cooled = since_last is None or since_last >= 300
    if cpu > 80 or memory > 80 or rps > 150 or rt > 1000:
        if current < hi and cooled:
            return current + 1
        return current
    if cpu < 30 and memory < 30 and rps < 50:
        if current > lo and cooled:
            return current - 1
    return current


@settings(max_examples=300, deadline=None)
@given(
    cpu=st.floats(0, 100),
    memory=st.floats(0, 100),
    rps=st.floats(0, 400),
    rt=st.floats(0, 3000),
    current=st.integers(3, 6),
    since_last=st.one_of(st.none(), st.floats(0, 900)),
)
def test_threshold_strategy_matches_the_seed(
    cpu: float, memory: float, rps: float, rt: float, current: int, since_last: float | None
) -> None:
    instances = tuple(
        InstanceView(
            id=f"i{k}", started_at=LONG_AGO, metrics=Metrics(cpu_percent=cpu, memory_percent=memory)
        )
        for k in range(current)
    )
    obs = Observation(instances=instances, aggregate=Metrics(rps=rps, p95_latency_ms=rt))
    history = ScalingHistory(
        last_scale_up_at=None if since_last is None else NOW - timedelta(seconds=since_last)
    )
    decision = decide(AutoscalePolicy(strategy="threshold"), obs, history, NOW)
    assert decision.desired == seed_rules(cpu, memory, rps, rt, current, since_last)


@SETTINGS
@given(
    n=st.integers(1, 12),
    now_rps=st.floats(0, 1000, allow_nan=False),
    past=st.lists(st.tuples(st.integers(1, 1200), st.floats(0, 1000, allow_nan=False)), max_size=8),
    target=st.floats(10, 200),
)
def test_scale_in_never_goes_below_what_the_window_peak_needs(
    n: int, now_rps: float, past: list[tuple[int, float]], target: float
) -> None:
    policy = AutoscalePolicy(
        min_instances=1,
        max_instances=20,
        target_rps_per_instance=target,
        target_cpu_percent=None,
        target_memory_percent=None,
        scale_down_peak_window_seconds=1200,
        scale_down_steady_spread=None,
    )
    samples = tuple(RateSample(at=ago(age), rps=rps) for age, rps in sorted(past, reverse=True))
    observation = Observation(
        instances=tuple(InstanceView(id=f"i{k}", started_at=LONG_AGO) for k in range(n)),
        aggregate=Metrics(rps=now_rps),
    )
    decision = decide(policy, observation, ScalingHistory(rates=samples), NOW)
    peak = max([now_rps, *(rps for _, rps in past)])
    if decision.desired < n:
        assert decision.desired >= math.ceil(round(peak / target, 9)), decision.reason


@SETTINGS
@given(p95=st.floats(1001, 60_000), ticks=st.integers(2, 5), earlier=st.integers(0, 4))
def test_a_latency_spike_shorter_than_the_trigger_ticks_never_adds(
    p95: float, ticks: int, earlier: int
) -> None:
    policy = AutoscalePolicy(latency_trigger_ticks=ticks, target_memory_percent=None)
    seen = min(earlier, ticks - 2)  # fewer slow ticks before this one than the rule needs
    history = ScalingHistory(
        latencies=tuple(LatencySample(at=ago(30 * (k + 1)), p95_ms=p95) for k in range(seen))
    )
    observation = Observation(
        instances=tuple(
            InstanceView(id=f"i{k}", started_at=LONG_AGO, metrics=Metrics(cpu_percent=60.0))
            for k in range(4)
        ),
        aggregate=Metrics(p95_latency_ms=p95),
    )
    decision = decide(policy, observation, history, NOW)
    assert "latency" not in decision.metric_recommendations
    assert decision.desired == 4, decision.reason

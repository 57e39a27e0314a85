"""Table-driven decide() cases, mirroring the HPA's tests: each row says why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from autoscaler import (
    AutoscalePolicy,
    Direction,
    LatencySample,
    Metrics,
    Observation,
    RateSample,
    Recommendation,
    ScaleEvent,
    ScalingHistory,
    decide,
    learn,
)

from .builders import NOW, ago, pool, slow_at


@dataclass
class Case:
    why: str
    observation: Observation
    expected: int
    policy: dict[str, Any] = field(default_factory=dict)
    history: ScalingHistory = field(default_factory=ScalingHistory)
    limits: tuple[str, ...] = ()
    driver: str | None = None


# The rows spell out their arithmetic against these values (not the shipped defaults).
BASE: dict[str, Any] = {
    "target_cpu_percent": 60,
    "scale_down_tolerance": None,
    "forecast_seconds": 0,
    "latency_trigger_ticks": 1,
    "scale_down_peak_window_seconds": 0,
}


def rps_peak_policy(*, spread: float | None, **extra: Any) -> dict[str, Any]:
    """The scale-in rows' policy: rate target 50/s per instance alone (no CPU or memory
    target), scale-in sized by the 1200 s peak, ``spread`` = the steady-load test's spread."""
    return {
        "min_instances": 1,
        "target_rps_per_instance": 50,
        "target_cpu_percent": None,
        "target_memory_percent": None,
        "scale_down_peak_window_seconds": 1200,
        "scale_down_steady_spread": spread,
        **extra,
    }


CASES = [
    Case("cpu 5% over target is inside the 0.1 tolerance band: hold", pool(63, 63, 63), 3),
    Case(
        "cpu 90% vs target 60% on 3 instances: ceil(3*90/60) = 5", pool(90, 90, 90), 5, driver="cpu"
    ),
    Case("cpu 67% is just outside the band: ceil(3*67/60) = 4", pool(67, 67, 67), 4),
    Case(
        "a separate scale-up tolerance of 0.2 absorbs 67%",
        pool(67, 67, 67),
        3,
        policy={"scale_up_tolerance": 0.2},
    ),
    Case(
        "a separate scale-down tolerance of 0.5 absorbs 40% on target 60%",
        pool(40, 40, 40, 40, memory=20),
        4,
        policy={"min_instances": 1, "scale_down_tolerance": 0.5},
    ),
    Case(
        "low cpu and memory on 4: ceil(4*20/60) = 2",
        pool(20, 20, 20, 20, memory=20),
        2,
        policy={"min_instances": 1},
        driver="cpu",
    ),
    Case(
        "one silent instance blocks a scale-down (missing metrics never scale in)",
        pool(20, 20, 20, None, memory=20),
        4,
        policy={"min_instances": 1},
        limits=("missing_metrics",),
    ),
    Case(
        "stale metrics (10 min old) count as missing: no recommendation, hold",
        pool(10, 10, 10, 10, memory=10, sampled_at=ago(600)),
        4,
        policy={"min_instances": 1},
    ),
    Case(
        "fresh rps says scale in but stale cpu blocks it",
        pool(10, 10, 10, 10, memory=10, sampled_at=ago(600)).model_copy(
            update={"aggregate": Metrics(rps=5)}
        ),
        4,
        policy={"min_instances": 1, "target_rps_per_instance": 50},
        limits=("missing_metrics",),
    ),
    Case("no metrics at all: hold", pool(None, None, None), 3, limits=()),
    Case(
        "a starting instance counts as 0% when scaling up: 2x90% over 3 is on target",
        pool(90, 90, starting=1),
        3,
    ),
    Case(
        "a warming-up instance's cold-start 100% CPU is left out of the average",
        pool(50, 50, 50, warming=1),
        4,
    ),
    Case("draining instances are not part of the pool", pool(63, 63, 63, draining=2), 3),
    Case(
        "scale-down uses the highest recommendation of the last 300 s",
        pool(20, 20, 20, 20, 20, 20, memory=20),
        6,
        policy={"min_instances": 1, "max_instances": 10},
        history=ScalingHistory(recommendations=(Recommendation(at=ago(100), desired=6),)),
        limits=("stabilization",),
    ),
    Case(
        "a recommendation older than the window no longer holds the pool up",
        pool(20, 20, 20, 20, 20, 20, memory=20),
        2,
        policy={"min_instances": 1, "max_instances": 10},
        history=ScalingHistory(recommendations=(Recommendation(at=ago(400), desired=6),)),
    ),
    Case(
        "scale-up is immediate: no up window by default",
        pool(90, 90, 90),
        5,
        history=ScalingHistory(recommendations=(Recommendation(at=ago(30), desired=3),)),
    ),
    Case(
        "rate limit: at most the larger of +4 or +100% per period (2 -> 6, not 20)",
        pool(50, 50, rps=200),
        6,
        policy={"min_instances": 1, "max_instances": 20, "target_rps_per_instance": 10},
        limits=("scale_up_rate",),
        driver="rps",
    ),
    Case(
        "rate limit counts instances added earlier in the same period",
        pool(50, 50, 50, 50, 50, 50, rps=200),
        6,
        policy={"min_instances": 1, "max_instances": 20, "target_rps_per_instance": 10},
        history=ScalingHistory(events=(ScaleEvent(at=ago(10), from_count=2, to_count=6),)),
        limits=("scale_up_rate",),
    ),
    Case(
        "+100% wins over +4 for a large pool (10 -> 20)",
        pool(*([50.0] * 10), rps=400),
        20,
        policy={"min_instances": 1, "max_instances": 40, "target_rps_per_instance": 10},
        limits=("scale_up_rate",),
    ),
    Case("clamped to max_instances", pool(100, 100, 100, 100), 6, limits=("clamp",)),
    Case(
        "a pool below min_instances (a crash) is brought back to min",
        pool(10),
        3,
        limits=("clamp",),
    ),
    Case(
        "p95 latency over 1000 ms adds one instance",
        pool(50, 50, 50, p95_ms=1500),
        4,
        driver="latency",
    ),
    Case(
        "low latency is never a reason to scale in",
        pool(62, 62, 62, 62, p95_ms=5),
        4,
        policy={"min_instances": 1},
    ),
    Case(
        "flapping check: scale-in stops short of the per-instance rate (40/s) at which latency "
        "was slow 10 minutes ago (3 would carry 40/s each; 4 carry 30/s)",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=120),
        4,
        policy={"min_instances": 1, "target_rps_per_instance": 50},
        history=ScalingHistory(capacity=slow_at(40, ago(600))),
        limits=("flapping_check",),
    ),
    Case(
        "a slow load older than slow_load_memory_seconds is forgotten",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=120),
        3,
        policy={"min_instances": 1, "target_rps_per_instance": 50},
        history=ScalingHistory(capacity=slow_at(40, ago(4000))),
    ),
    Case(
        "a latency spike seen at one tick only is noise when the trigger needs 3 ticks",
        pool(50, 50, 50, p95_ms=1500),
        3,
        policy={"latency_trigger_ticks": 3},
        history=ScalingHistory(latencies=(LatencySample(at=ago(30), p95_ms=1500),)),
    ),
    Case(
        "p95 over 1000 ms at this and the 2 previous ticks adds one instance",
        pool(50, 50, 50, p95_ms=1500),
        4,
        policy={"latency_trigger_ticks": 3},
        history=ScalingHistory(
            latencies=(
                LatencySample(at=ago(60), p95_ms=1200),
                LatencySample(at=ago(30), p95_ms=1500),
            )
        ),
        driver="latency",
    ),
    Case(
        "a fast tick in between breaks the run: no latency scale-up",
        pool(50, 50, 50, p95_ms=1500),
        3,
        policy={"latency_trigger_ticks": 3},
        history=ScalingHistory(
            latencies=(
                LatencySample(at=ago(60), p95_ms=1200),
                LatencySample(at=ago(30), p95_ms=300),
            )
        ),
    ),
    Case(
        "a gap of more than two check intervals breaks the run: no latency scale-up",
        pool(50, 50, 50, p95_ms=1500),
        3,
        policy={"latency_trigger_ticks": 3},
        history=ScalingHistory(
            latencies=(
                LatencySample(at=ago(200), p95_ms=1200),
                LatencySample(at=ago(30), p95_ms=1500),
            )
        ),
    ),
    Case(
        "scale-in is sized by the peak rate of the window: 250/s 10 min ago on target 50 "
        "needs 5 of 6, though 120/s now would need 3",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=120),
        5,
        policy=rps_peak_policy(spread=None),
        history=ScalingHistory(
            rates=(RateSample(at=ago(600), rps=250), RateSample(at=ago(30), rps=120))
        ),
        driver="rps",
    ),
    Case(
        "a peak inside the down band holds the pool: 280/s on 6 x 50 is 0.93",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=120),
        6,
        policy=rps_peak_policy(spread=None),
        history=ScalingHistory(rates=(RateSample(at=ago(900), rps=280),)),
    ),
    Case(
        "a peak older than the window is forgotten: 120/s needs ceil(120/50) = 3",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=120),
        3,
        policy=rps_peak_policy(spread=None),
        history=ScalingHistory(rates=(RateSample(at=ago(1500), rps=280),)),
    ),
    Case(
        "a step down that has settled: the last 300 s are steady (120-130/s, within 25 %), so "
        "the 250/s of 10 min ago no longer counts: ceil(130/50) = 3",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=120),
        3,
        policy=rps_peak_policy(spread=0.25),
        history=ScalingHistory(
            rates=(
                RateSample(at=ago(600), rps=250),
                RateSample(at=ago(240), rps=130),
                RateSample(at=ago(120), rps=125),
            )
        ),
        driver="rps",
    ),
    Case(
        "a settled load inside the wide down band sheds instances (changed in issue 12: it "
        "used to hold): 230-240/s steady for 300 s on 6 x 50 is 0.77-0.8, inside the 0.3 band "
        "but outside the plain 0.1 one; the rate to carry is known, so ceil(240/50) = 5",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=230),
        5,
        policy=rps_peak_policy(spread=0.25, scale_down_tolerance=0.3),
        history=ScalingHistory(
            rates=(RateSample(at=ago(240), rps=240), RateSample(at=ago(120), rps=235))
        ),
        driver="rps",
    ),
    Case(
        "the same level with noisy rates (180-260/s) keeps the wide band: the 260/s peak on "
        "6 x 50 is 0.87, inside 0.3: hold",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=230),
        6,
        policy=rps_peak_policy(spread=0.25, scale_down_tolerance=0.3),
        history=ScalingHistory(
            rates=(RateSample(at=ago(240), rps=260), RateSample(at=ago(120), rps=180))
        ),
    ),
    Case(
        "bursty recent rates (90-160/s, more than 25 % apart) keep the long peak: 250/s needs 5",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=120),
        5,
        policy=rps_peak_policy(spread=0.25),
        history=ScalingHistory(
            rates=(
                RateSample(at=ago(600), rps=250),
                RateSample(at=ago(240), rps=160),
                RateSample(at=ago(120), rps=90),
            )
        ),
        driver="rps",
    ),
    Case(
        "too few recent rates to call the load steady (none in the last 300 s): the 250/s "
        "peak still needs 5",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=120),
        5,
        policy=rps_peak_policy(spread=0.25),
        history=ScalingHistory(rates=(RateSample(at=ago(600), rps=250),)),
        driver="rps",
    ),
    Case(
        "the flapping check projects the peak rate: 140/s peak on target 50 asks for 3, "
        "but 140/3 = 47/s is over the 40/s slow-load limit, so 4 (90/s now would allow 3)",
        pool(20, 20, 20, 20, 20, 20, memory=20, rps=90),
        4,
        policy=rps_peak_policy(spread=None, scale_down_tolerance=0.5),
        history=ScalingHistory(
            rates=(RateSample(at=ago(600), rps=140),),
            capacity=slow_at(40, ago(600)),
        ),
        limits=("flapping_check",),
    ),
    Case(
        "no scale-in while p95 (700 ms) is above 0.6 x the 1000 ms latency trigger",
        pool(20, 20, 20, 20, memory=20, p95_ms=700),
        4,
        policy={"min_instances": 1},
        limits=("latency_guard",),
    ),
    Case(
        "scale-down cooldown: last action 400 s ago < 600 s",
        pool(20, 20, 20, 20, memory=20),
        4,
        policy={"min_instances": 1, "scale_down_cooldown_seconds": 600},
        history=ScalingHistory(last_scale_up_at=ago(400)),
        limits=("cooldown",),
    ),
    Case(
        "scale-up cooldown is separate (0 s by default): up right after a scale-up",
        pool(90, 90, 90),
        5,
        policy={"scale_down_cooldown_seconds": 600},
        history=ScalingHistory(last_scale_up_at=ago(30)),
    ),
    Case(
        "threshold strategy: one 5-minute cooldown blocks the step up",
        pool(90, 90, 90),
        3,
        policy={"strategy": "threshold"},
        history=ScalingHistory(last_scale_down_at=ago(100)),
        limits=("cooldown",),
    ),
    Case(
        "threshold strategy: cpu > 80% is one step up, not proportional",
        pool(95, 95, 95),
        4,
        policy={"strategy": "threshold"},
    ),
    Case(
        "threshold strategy: scale down needs rps too; missing rps holds",
        pool(10, 10, 10, 10, memory=10),
        4,
        policy={"strategy": "threshold"},
    ),
    Case(
        "threshold strategy: all of cpu, memory, rps low -> one step down",
        pool(10, 10, 10, 10, memory=10, rps=20),
        3,
        policy={"strategy": "threshold"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.why for c in CASES])
def test_decide(case: Case) -> None:
    policy = AutoscalePolicy.build({**BASE, **case.policy})
    decision = decide(policy, case.observation, case.history, NOW)
    assert decision.desired == case.expected, decision.reason
    assert tuple(limit.rule for limit in decision.limits) == case.limits, decision.reason
    if case.driver is not None:
        assert decision.driving_metric == case.driver
    expected_direction = (
        Direction.UP
        if case.expected > decision.current
        else Direction.DOWN
        if case.expected < decision.current
        else Direction.NONE
    )
    assert decision.direction is expected_direction
    assert decision.reason


def test_decision_is_ready_to_log_and_store() -> None:
    policy = AutoscalePolicy.build({**BASE, "dry_run": True})
    decision = decide(policy, pool(100, 100, 100, 100), ScalingHistory(), NOW)
    data = decision.to_dict()
    assert data["direction"] == "up"
    assert data["dry_run"] is True
    assert data["reason"].startswith("[dry run] scale up 4 -> 6")
    assert data["limits"] == [
        {"rule": "clamp", "before": 7, "after": 6, "reason": "capped at max_instances 6"}
    ]
    assert data["metric_values"]["cpu"] == 100.0
    # A dry run is remembered as a recommendation, not as an action (no cooldown starts).
    history = ScalingHistory().record(decision)
    assert history.last_scale_at is None and history.events == ()
    assert [r.desired for r in history.recommendations] == [7]


def test_history_round_trips_through_json() -> None:
    policy = AutoscalePolicy(min_instances=1, target_rps_per_instance=50)
    history = ScalingHistory()
    for k in range(5):
        decision = decide(policy, pool(90, 90, 90, rps=150 + 10 * k), history, ago(-30 * k))
        history = history.record(decision)
    restored = ScalingHistory.model_validate_json(history.model_dump_json())
    assert restored == history
    assert restored.last_scale_up_at is not None
    assert len(restored.rates) == 5


def test_failed_action_is_not_remembered_as_scaling() -> None:
    decision = decide(AutoscalePolicy.build(BASE), pool(90, 90, 90), ScalingHistory(), NOW)
    assert decision.changes
    history = ScalingHistory().record(decision, acted=False)
    assert history.last_scale_up_at is None


def test_slow_latency_is_remembered_per_instance_rate() -> None:
    # A settled pool of 3 (warm, unchanged for longer than the learner's settle time) whose
    # p95 is over the trigger at 90/s: the learner remembers 30/s per instance.
    policy = AutoscalePolicy.build({**BASE, "target_rps_per_instance": 50})
    history = ScalingHistory()
    for k in range(5):
        observation = pool(50, 50, 50, rps=90, p95_ms=1500 if k == 4 else 200)
        history = learn(policy, observation, history, ago(30 * (4 - k)))
    assert [s.rps for s in history.capacity.slow] == [30.0]
    assert history.capacity.slow_rate(NOW, 3600) == 30.0

"""Each safety rule on its own: (value, reason) tables."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autoscaler import AutoscalePolicy, Recommendation, ScaleEvent, ScalingHistory, rules

from .builders import NOW, ago

POLICY = AutoscalePolicy(min_instances=2, max_instances=10)


@pytest.mark.parametrize(
    ("desired", "expected", "changed"),
    [(1, 2, True), (2, 2, False), (7, 7, False), (10, 10, False), (11, 10, True)],
    ids=["below min is raised", "min itself", "inside", "max itself", "above max is capped"],
)
def test_clamp(desired: int, expected: int, changed: bool) -> None:
    value, reason = rules.clamp(desired, POLICY)
    assert value == expected and (reason is not None) == changed


@pytest.mark.parametrize(
    ("desired", "current", "missing", "expected"),
    [(2, 4, ["cpu"], 4), (2, 4, [], 2), (6, 4, ["cpu"], 6)],
    ids=["missing blocks scale-in", "nothing missing", "missing never blocks scale-out"],
)
def test_hold_without_metrics(
    desired: int, current: int, missing: list[str], expected: int
) -> None:
    assert rules.hold_without_metrics(desired, current, missing)[0] == expected


@pytest.mark.parametrize(
    ("desired", "current", "loads", "expected"),
    [
        (1, 2, {"cpu": (56.0, 80.0)}, 2),
        (1, 2, {"cpu": (28.0, 80.0)}, 1),
        (2, 6, {"cpu": (50.0, 77.0)}, 4),
        (3, 6, {"cpu": (30.0, 77.0), "rps": (40.0, 77.0)}, 4),
        (5, 4, {"cpu": (99.0, 77.0)}, 5),
    ],
    ids=[
        "2 at 56% -> 1 would be 112%: keep 2",
        "2 at 28% -> 1 is 56% < 80%: allowed",
        "6 at 50%: 4 gives 75% < 77%, 3 would give 100%",
        "every metric must stay below its scale-up level",
        "scale-out is never touched",
    ],
)
def test_flapping_check(
    desired: int, current: int, loads: dict[str, tuple[float, float]], expected: int
) -> None:
    value, reason = rules.flapping_check(desired, current, loads)
    assert value == expected
    assert (reason is not None) == (value != desired)


def test_stabilize_down_takes_window_max_and_up_is_immediate() -> None:
    history = ScalingHistory(
        recommendations=(
            Recommendation(at=ago(500), desired=9),
            Recommendation(at=ago(200), desired=7),
            Recommendation(at=ago(30), desired=5),
        )
    )
    assert rules.stabilize(3, 8, history, NOW, POLICY) == (
        7,
        "stabilisation: highest recommendation in the last 300s is 7",
    )
    assert rules.stabilize(9, 8, history, NOW, POLICY) == (9, None)
    windowed = POLICY.with_overrides({"scale_up_stabilization_seconds": 60})
    assert rules.stabilize(9, 4, history, NOW, windowed)[0] == 5


def test_cooldowns_are_separate() -> None:
    history = ScalingHistory(last_scale_up_at=ago(100))
    assert rules.cooldown(6, 4, history, NOW, up_seconds=60, down_seconds=300)[0] == 6
    assert rules.cooldown(2, 4, history, NOW, up_seconds=60, down_seconds=300)[0] == 4
    assert rules.cooldown(2, 4, history, NOW, up_seconds=60, down_seconds=None)[0] == 2
    assert rules.cooldown(6, 4, history, NOW, up_seconds=120, down_seconds=None)[0] == 4
    assert rules.cooldown(6, 4, ScalingHistory(), NOW, up_seconds=999, down_seconds=999)[0] == 6


def test_scale_up_rate_limit_per_period() -> None:
    empty = ScalingHistory()
    assert rules.limit_scale_up(20, 2, empty, NOW, POLICY)[0] == 6  # +4 beats +100 %
    assert rules.limit_scale_up(30, 10, empty, NOW, POLICY)[0] == 20  # +100 % beats +4
    recent = ScalingHistory(events=(ScaleEvent(at=ago(10), from_count=2, to_count=6),))
    assert rules.limit_scale_up(20, 6, recent, NOW, POLICY)[0] == 6  # period already used
    old = ScalingHistory(
        events=(ScaleEvent(at=NOW - timedelta(seconds=31), from_count=2, to_count=6),)
    )
    assert rules.limit_scale_up(20, 6, old, NOW, POLICY)[0] == 12


def test_scale_down_rate_limit() -> None:
    limited = POLICY.with_overrides({"scale_down_limit_instances": 2})
    assert rules.limit_scale_down(2, 8, limited) == (
        6,
        "scale-down rate limit: at most -2 per decision",
    )
    assert rules.limit_scale_down(2, 8, POLICY) == (2, None)


@pytest.mark.parametrize(
    ("desired", "p95", "expected"),
    [(2, 700.0, 4), (2, 500.0, 2), (2, None, 2), (6, 5000.0, 6)],
    ids=[
        "slow pool keeps its instances",
        "fast enough: scale-in allowed",
        "no latency reading: not this rule's call",
        "scale-out is never touched",
    ],
)
def test_hold_while_slow(desired: int, p95: float | None, expected: int) -> None:
    assert rules.hold_while_slow(desired, 4, p95, 1000.0, 0.6)[0] == expected


def test_remaining_cooldowns_match_what_decide_applies() -> None:
    history = ScalingHistory(last_scale_up_at=ago(100))
    policy = AutoscalePolicy()  # proportional: up 0 s, down 300 s from any action
    assert rules.remaining_cooldowns(policy, history, NOW) == (0.0, 200.0)
    seed = AutoscalePolicy(strategy="threshold")  # one 300 s cooldown
    assert rules.remaining_cooldowns(seed, history, NOW) == (200.0, 200.0)
    assert rules.remaining_cooldowns(policy, ScalingHistory(), NOW) == (0.0, 0.0)

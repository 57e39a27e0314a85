"""Forecasts (autoscaler/forecast.py) and the decisions they drive, table-driven: each row
says why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler import (
    AutoscalePolicy,
    InstanceView,
    LoadProfile,
    Metrics,
    Observation,
    RateSample,
    ScalingHistory,
    build_profile,
    bursts,
    decide,
    forecast,
)

from .builders import LONG_AGO

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)


def daily(days: int, shape: Callable[[datetime], float]) -> list[tuple[datetime, float]]:
    """One sample every 5 minutes for ``days`` days."""
    return [
        (START + timedelta(minutes=5 * k), shape(START + timedelta(minutes=5 * k)))
        for k in range(days * 24 * 12)
    ]


def evening_rise(at: datetime) -> float:
    return 300.0 if 18 <= at.hour < 19 else 100.0


def one_off_burst(at: datetime) -> float:
    # 10:00-10:30 on the second day only.
    return (
        400.0 if at.date() == (START + DAY).date() and at.hour == 10 and at.minute < 30 else 100.0
    )


@dataclass
class Row:
    why: str
    samples: list[tuple[datetime, float]]
    at: datetime
    horizon: float
    expected: object
    """Expected rps (``pytest.approx``) for a current rate of 100/s, or None: no forecast."""
    recent: tuple[RateSample, ...] = ()


AFTER_3_DAYS = START + 3 * DAY
ROWS = [
    Row(
        "seasonal rise anticipated: 10 minutes before the daily 18:00 rise, x3 is coming",
        daily(3, evening_rise),
        AFTER_3_DAYS + timedelta(hours=17, minutes=58),
        900,
        pytest.approx(300, rel=0.05),
    ),
    Row(
        "a one-off burst is not repeated: the day after it, 10:00 looks like any morning",
        daily(3, one_off_burst),
        AFTER_3_DAYS + timedelta(hours=9, minutes=58),
        900,
        None,
    ),
    Row(
        "missing history, no forecast: one day cannot tell a daily rise from a one-off",
        daily(1, evening_rise),
        START + DAY + timedelta(hours=17, minutes=58),
        900,
        None,
    ),
    Row(
        "no profile, a rising trend: +1/s per second extrapolated 60 s",
        [],
        AFTER_3_DAYS,
        60,
        pytest.approx(160, rel=0.05),
        tuple(
            RateSample(at=AFTER_3_DAYS - timedelta(seconds=30 * k), rps=100 - 30 * k)
            for k in range(1, 6)
        ),
    ),
    Row(
        "a falling trend is never extrapolated (scale-in has its own guards)",
        [],
        AFTER_3_DAYS,
        60,
        None,
        tuple(
            RateSample(at=AFTER_3_DAYS - timedelta(seconds=30 * k), rps=100 + 30 * k)
            for k in range(1, 6)
        ),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.why for r in ROWS])
def test_forecast(row: Row) -> None:
    profile = build_profile(row.samples, at=row.at) if row.samples else None
    outlook = forecast(profile, row.recent, row.at, 100.0, row.horizon)
    got = outlook.expected_rps if outlook is not None and outlook.rising else None
    assert got == row.expected, outlook


def test_profile_needs_two_days_and_keeps_the_day_shape() -> None:
    assert build_profile(daily(1, evening_rise)) is None
    assert build_profile([]) is None
    profile = build_profile(daily(2, evening_rise))
    assert profile is not None and profile.days == 2
    assert profile.week == ()  # two of each weekday needed first
    assert profile.expected(START + timedelta(hours=18, minutes=30)) == pytest.approx(300)
    assert profile.expected(START + timedelta(hours=3)) == pytest.approx(100)
    weekly = build_profile(daily(15, evening_rise))
    assert weekly is not None and len(weekly.week) == 7 * 96
    restored = LoadProfile.model_validate_json(weekly.model_dump_json())
    assert restored == weekly
    with pytest.raises(ValueError, match="slot_seconds"):
        build_profile(daily(3, evening_rise), slot_seconds=7 * 60)


def rates(values: list[float], now: datetime) -> tuple[RateSample, ...]:
    n = len(values)
    return tuple(
        RateSample(at=now - timedelta(seconds=30 * (n - k)), rps=v) for k, v in enumerate(values)
    )


BURST_ROWS = [
    (
        "on/off: bursts of a minute or two, every few minutes, are short",
        [10, 10, 80, 90, 10, 10, 10, 85, 10, 10, 10, 10, 95, 80, 10, 10, 10, 10, 10, 90, 10, 10],
        True,
    ),
    ("a step up that stays is not a short burst", [10] * 10 + [80] * 14, False),
    ("steady load has no bursts", [50.0 + (k % 3) for k in range(24)], False),
    ("noise within 2x of the median is not a burst", [40, 60, 50, 70, 45, 55] * 4, False),
]


@pytest.mark.parametrize(("why", "values", "short"), BURST_ROWS, ids=[r[0] for r in BURST_ROWS])
def test_bursts(why: str, values: list[float], short: bool) -> None:
    now = START
    shape = bursts(rates(values[:-1], now), now, values[-1])
    assert shape is not None and shape.short is short, (why, shape)
    if short:
        assert shape.sustained_rps < max(values) / 2, why
        assert "short bursts" in shape.describe()


def test_too_little_history_says_nothing_about_bursts() -> None:
    assert bursts(rates([10, 80, 10], START), START, 80) is None


def pool(n: int, rps: float) -> Observation:
    return Observation(
        instances=tuple(InstanceView(id=f"i{k}", started_at=LONG_AGO) for k in range(n)),
        aggregate=Metrics(rps=rps, p95_latency_ms=100.0),
    )


POLICY = AutoscalePolicy(
    min_instances=1, max_instances=20, target_rps_per_instance=50, target_cpu_percent=None
)


def test_decide_scales_out_before_a_recurring_rise_and_names_the_forecast() -> None:
    profile = build_profile(daily(3, evening_rise))
    now = AFTER_3_DAYS + timedelta(hours=17, minutes=59, seconds=30)
    history = ScalingHistory(profile=profile)
    decision = decide(POLICY, pool(2, 100.0), history, now)
    assert decision.desired > 2, decision.reason
    assert "forecast" in decision.reason and "seasonal" in decision.reason
    # Without the profile (or with the seasonal forecast off) 100/s on 2 x 50/s holds.
    assert decide(POLICY, pool(2, 100.0), ScalingHistory(), now).desired == 2
    off = POLICY.with_overrides({"seasonal_forecast": False})
    assert decide(off, pool(2, 100.0), history, now).desired == 2


def test_no_scale_in_just_before_a_recurring_rise() -> None:
    profile = build_profile(daily(3, evening_rise))
    now = AFTER_3_DAYS + timedelta(hours=17, minutes=57)
    # 6 instances at 100/s: 2 would do, but x3 is due within the stabilisation window.
    held = decide(POLICY, pool(6, 100.0), ScalingHistory(profile=profile), now)
    assert held.desired == 6, held.reason
    assert "seasonal profile expects" in held.reason
    free = decide(POLICY, pool(6, 100.0), ScalingHistory(), now)
    assert free.desired == 2, free.reason


def test_scale_in_follows_a_fall_the_profile_expects() -> None:
    # After the evening peak the rate is back to 100/s; the 300/s of 40 minutes ago was the
    # daily rise, which the profile says is over: the 1800 s peak does not hold the pool.
    profile = build_profile(daily(3, evening_rise))
    now = AFTER_3_DAYS + timedelta(hours=19, minutes=20)
    past = (RateSample(at=now - timedelta(minutes=25), rps=300.0),)
    noisy = tuple(
        RateSample(at=now - timedelta(seconds=30 * k), rps=100.0 * (1.6 if k % 2 else 0.8))
        for k in range(9, 0, -1)
    )
    history = ScalingHistory(profile=profile, rates=past + noisy)
    seasonal = decide(POLICY, pool(6, 100.0), history, now)
    plain = decide(POLICY, pool(6, 100.0), history.with_profile(None), now)
    assert seasonal.desired < plain.desired == 6, (seasonal.reason, plain.reason)
    assert "seasonal profile expects the fall" in seasonal.reason

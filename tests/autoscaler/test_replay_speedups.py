"""The replay's fast paths change no result: the learner's fit, its reservoir and the
scale-in peak scan are checked against their earlier, plainer versions (kept here verbatim
as the reference), on random inputs and on a replayed trace slice."""

from __future__ import annotations

import importlib
import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from autoscaler import capacity, rate
from autoscaler.capacity import CapacityPoint, LearnerSettings
from autoscaler.config import AutoscalePolicy
from autoscaler.forecast import LoadProfile
from autoscaler.model import RateSample, ScalingHistory
from autoscaler.presets import PRESETS
from autoscaler.rate import Peak, StrategyResult, _settled
from autoscaler.replay import simulate
from autoscaler.service_model import ServiceModel

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# The module, not the function the package exports under the same name.
decide_module = importlib.import_module("autoscaler.decide")
forecast_module = importlib.import_module("autoscaler.forecast")
SETTINGS = LearnerSettings()


# -- the reference: the code before the fast paths ----------------------------------------
def ref_bucket(rps: float) -> int:
    return -1000 if rps <= 0 else round(math.log(rps) / math.log(1.1))


def ref_keep(
    points: tuple[CapacityPoint, ...], point: CapacityPoint, settings: LearnerSettings
) -> tuple[CapacityPoint, ...]:
    kept = [
        p for p in points if (point.at - p.at).total_seconds() <= settings.max_age_seconds
    ] + [point]
    bands = [ref_bucket(p.rps) for p in kept]
    while len(kept) > settings.max_points:
        counts: dict[int, int] = {}
        for band in bands:
            counts[band] = counts.get(band, 0) + 1
        crowded = max(counts.values())
        victim = next(i for i, band in enumerate(bands) if counts[band] == crowded)
        del kept[victim], bands[victim]
    return tuple(kept)


def ref_weighted_line(data: Sequence[tuple[float, float, float]]) -> tuple[float, float] | None:
    total = sum(w for _, _, w in data)
    if total <= 0:
        return None
    mx = sum(w * x for x, _, w in data) / total
    my = sum(w * y for _, y, w in data) / total
    sxx = sum(w * (x - mx) ** 2 for x, _, w in data)
    if sxx <= 1e-12 * max(1.0, mx * mx) * total:
        return None
    b = sum(w * (x - mx) * (y - my) for x, y, w in data) / sxx
    return my - b * mx, b


def ref_relative_error(
    data: Sequence[tuple[float, float, float]], idle: float, slope: float, capacity_: float
) -> float:
    total = sum(w for _, _, w in data)
    n = len(data)
    if n <= 2 or total <= 0:
        return math.inf
    mx = sum(w * x for x, _, w in data) / total
    sxx = sum(w * (x - mx) ** 2 for x, _, w in data) * n / total
    ss = sum(w * (y - idle - slope * x) ** 2 for x, y, w in data) * n / total
    s = math.sqrt(ss / (n - 2))
    if sxx <= 0:
        return math.inf
    return s / abs(slope) * math.sqrt(1.0 / n + (capacity_ - mx) ** 2 / sxx) / capacity_


def ref_fit(
    points: Sequence[CapacityPoint], now: datetime, settings: LearnerSettings
) -> dict[str, float | int | None]:
    empty: dict[str, float | int | None] = {
        "capacity_rps": None,
        "idle_cpu_percent": None,
        "samples": 0,
        "relative_error": None,
        "confidence": 0.0,
    }
    if len(points) < 3:
        return empty
    data = [
        (p.rps, p.cpu, 0.5 ** (max(0.0, (now - p.at).total_seconds()) / settings.half_life_seconds))
        for p in points
    ]
    line = capacity._theil_sen(data)
    if line is None:
        return empty
    idle, slope = line
    residuals = [abs(y - idle - slope * x) for x, y, _ in data]
    scale = max(1.4826 * sorted(residuals)[len(residuals) // 2], settings.min_noise_cpu_percent)
    trimmed = [d for d, r in zip(data, residuals, strict=True) if r <= 3 * scale]
    line = ref_weighted_line(trimmed) if len(trimmed) >= 3 else None
    if line is None:
        return empty
    idle, slope = line
    if slope <= 0 or not 0 <= idle < 100:
        return {**empty, "samples": len(trimmed)}
    cap = (100.0 - idle) / slope
    error = ref_relative_error(trimmed, idle, slope, cap)
    spread = (max(x for x, _, _ in trimmed) - min(x for x, _, _ in trimmed)) / cap
    confidence = 1.0 / (1.0 + (error / settings.confident_relative_error) ** 2)
    if len(trimmed) < settings.min_points or spread < settings.min_relative_spread:
        confidence = min(confidence, 0.25)
    return {
        "capacity_rps": cap,
        "idle_cpu_percent": idle,
        "samples": len(trimmed),
        "relative_error": error,
        "confidence": round(confidence, 4),
    }


def ref_recent_peak_rps(
    history: ScalingHistory,
    now: datetime,
    rps: float,
    policy: AutoscalePolicy,
    profile: LoadProfile | None = None,
) -> Peak:
    window = policy.scale_down_peak_window_seconds
    short = min(window, policy.scale_down_steady_seconds)
    now_level = profile.expected(now) if profile is not None else None
    peak = raw_peak = rps
    recent: list[tuple[float, float]] = [(0.0, rps)]
    for sample in reversed(history.rates):
        age = (now - sample.at).total_seconds()
        if age > window:
            break
        value = sample.rps
        raw_peak = max(raw_peak, value)
        if profile is not None and now_level is not None:
            then = profile.expected(sample.at)
            if then is not None and then > now_level > 0:
                value *= now_level / then
        peak = max(peak, value)
        if 0 < age <= short:
            recent.append((-age, sample.rps))
    held = Peak(peak)
    settled = _settled(recent, policy.scale_down_steady_spread)
    if settled is not None:
        kind, level = settled
        held = Peak(max(level, rps), f"{kind} for {short:g}s", steady=True)
    elif peak < raw_peak:
        held = Peak(
            peak,
            f"seasonal profile expects the fall: the {window:g}s peak {raw_peak:.1f}/s "
            f"counts as {peak:.1f}/s",
        )
    if profile is not None:
        ahead = policy.scale_down_stabilization_seconds + policy.forecast_seconds
        rise = profile.peak_ratio(now, ahead)
        if rise is not None and rps * rise > held.rps:
            return Peak(rps * rise, f"seasonal profile expects x{rise:.2f} within {ahead:g}s")
    return held


def ref_projected_loads(
    policy: AutoscalePolicy, result: StrategyResult, history: ScalingHistory, now: datetime
) -> dict[str, tuple[float, float]]:
    loads: dict[str, tuple[float, float]] = {}
    rps = result.values.get("rps")
    if result.sustained_rps is not None:
        rps = result.sustained_rps
    elif rps is not None and policy.scale_down_peak_window_seconds > 0:
        profile = history.profile if policy.seasonal_forecast else None
        rps = ref_recent_peak_rps(history, now, rps, policy, profile).rps
    slow = history.capacity.slow_rate(now, policy.slow_load_memory_seconds)
    if result.short_bursts:
        slow = None
    if rps is not None and slow is not None and result.current:
        loads["rps at which latency was slow"] = (rps / result.current, slow)
    for name, target in result.targets.items():
        value = result.values.get(name)
        if value is None:
            continue
        if name == "rps":
            value = (rps if rps is not None else value) / max(result.current, 1)
        loads[name] = (value, target * (1 + policy.up_tolerance))
    return loads


def use_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "_keep", ref_keep)
    monkeypatch.setattr(capacity, "_fit", ref_fit)
    monkeypatch.setattr(rate, "recent_peak_rps", ref_recent_peak_rps)
    monkeypatch.setattr(decide_module, "_projected_loads", ref_projected_loads)


# -- random inputs ---------------------------------------------------------------------------
def random_points(rng: random.Random, n: int) -> tuple[CapacityPoint, ...]:
    points = []
    for k in range(n):
        rps = rng.uniform(0.0, 120.0) if rng.random() > 0.05 else 0.0
        cpu = 3 + 0.97 * rps + rng.gauss(0, 3) + (40 if rng.random() < 0.03 else 0)
        at = T0 + timedelta(seconds=30 * k + rng.choice((0, 0.25, 0.123456)))
        points.append(CapacityPoint(at=at, rps=rps, cpu=max(cpu, 0.0)))
    return tuple(points)


@pytest.mark.parametrize("seed", range(40))
def test_fit_and_reservoir_equal_the_reference_exactly(seed: int) -> None:
    rng = random.Random(seed)
    points = random_points(rng, rng.choice((2, 3, 5, 12, 64, 65, 90)))
    now = points[-1].at + timedelta(seconds=rng.choice((0, 30, 86_400 * 8)))
    assert capacity._fit(points, now, SETTINGS) == ref_fit(points, now, SETTINGS)
    data = [(p.rps, p.cpu, rng.random()) for p in points]
    assert capacity._weighted_line(data) == ref_weighted_line(data)
    if (line := ref_weighted_line(data)) is not None and line[1] > 0:
        cap = (100 - line[0]) / line[1]
        assert capacity._relative_error(data, *line, cap) == ref_relative_error(data, *line, cap)
    new = CapacityPoint(at=now, rps=rng.uniform(0, 120), cpu=50.0)
    settings = LearnerSettings(max_points=rng.choice((8, 64)))
    assert capacity._keep(points[:-1], new, settings) == ref_keep(points[:-1], new, settings)


def test_replayed_slice_is_identical_with_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why: the fast paths must not move a single decision. A bursty 6-hour slice (a daily
    wave, noise, bursts and a step) through the shipped default learns, forecasts and
    scales; every per-second pool size and every capacity estimate must match."""
    model = ServiceModel()
    rng = random.Random(7)
    demand = []
    for t in range(6 * 3600):
        level = 400 + 300 * math.sin(t / 3600) + (500 if 9000 <= t < 9400 else 0)
        level += 250 if t > 15_000 else 0
        demand.append(max(0.0, level * rng.uniform(0.6, 1.4)))
    policy = PRESETS["default"](model, 1, 20)
    fast = simulate(policy, demand, model)
    with monkeypatch.context() as patch:
        use_reference(patch)
        slow = simulate(policy, demand, model)
    assert fast.scale_actions > 5  # the slice does exercise scaling both ways
    assert fast.summary() == slow.summary()
    assert fast.active == slow.active
    assert fast.learned == slow.learned


@pytest.mark.parametrize("seed", range(20))
def test_peak_with_a_seasonal_profile_equals_the_reference(seed: int) -> None:
    """Why: the peak scan looks each profile slot up once; every rate must still be carried
    to this time of day by its own slot's level."""
    rng = random.Random(seed)
    slots = 96
    profile = LoadProfile(
        day=tuple(rng.choice((None, rng.uniform(10, 500))) for _ in range(slots)), days=3
    )
    now = T0 + timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(10**6))
    rates = tuple(
        RateSample(at=now - timedelta(seconds=30 * k + rng.random()), rps=rng.uniform(0, 400))
        for k in range(rng.randrange(2, 120))
    )[::-1]
    history = ScalingHistory(rates=rates, profile=profile)
    policy = AutoscalePolicy(scale_down_steady_spread=rng.choice((None, 0.25, 5.0)))
    rps = rng.uniform(0, 400)
    fast = rate.recent_peak_rps(history, now, rps, policy, profile)
    assert fast == ref_recent_peak_rps(history, now, rps, policy, profile)


def test_profile_slot_times_are_those_of_astimezone() -> None:
    """Why: the slot of a time is taken from ``timestamp()`` directly; for aware times in
    any zone that is the UTC time ``astimezone(UTC)`` gave."""
    plus_two = timezone(timedelta(hours=2))
    for at in (T0, T0.astimezone(plus_two) + timedelta(seconds=12_345.678), T0 - timedelta(days=3)):
        assert forecast_module._seconds(at) == at.astimezone(UTC).timestamp() - 4 * 86_400

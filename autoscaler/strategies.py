"""The two strategies: pure arithmetic from readings to a raw recommendation.

* ``proportional`` (default): per target metric ``desired = ceil(current x value / target)``
  with a dead band, the max over metrics; latency and error rate can only add a step up.
* ``threshold``: the seed scripts' rules, exactly (one step up if any of CPU > 80 %,
  memory > 80 %, request rate > 150/s, response time > 1000 ms; one step down only if all of
  CPU < 30 %, memory < 30 %, request rate < 50/s).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from autoscaler.config import AutoscalePolicy
from autoscaler.forecast import LoadProfile, bursts, forecast
from autoscaler.learning import rps_target
from autoscaler.model import InstanceState, Observation, ScalingHistory
from autoscaler.readings import (
    UtilisationReading,
    error_rate,
    is_warm,
    p95_latency_ms,
    total_rps,
    utilisation,
)


@dataclass
class StrategyResult:
    """Per-metric recommendations and the words that explain them."""

    current: int
    recommendations: dict[str, int] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    explanations: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    """Target metrics some warm instances did not report (handled cautiously)."""
    targets: dict[str, float] = field(default_factory=dict)
    """The targets in force this tick (the policy's, plus a learned request-rate target)."""
    rps_source: str | None = None
    steady: bool = False
    """The request rate has settled (scale-in needs no further stabilisation)."""
    short_bursts: bool = False
    """On/off load with short bursts: sized for the sustained rate; latency from the bursts
    neither adds instances nor holds them."""
    sustained_rps: float | None = None
    burst_note: str = ""

    @property
    def recommendation(self) -> int:
        return max(self.recommendations.values(), default=self.current)

    @property
    def driving_metric(self) -> str | None:
        if not self.recommendations:
            return None
        best = self.recommendation
        return next(name for name, rec in self.recommendations.items() if rec == best)


def _ceil(x: float) -> int:
    # Guard against 2.0000000001 from float noise turning into 3.
    return math.ceil(round(x, 9))


SATURATED_CPU_PERCENT = 90.0
"""From this CPU on, an instance is saturated: its CPU no longer shows how much more load
there is (the failed requests do)."""


def _utilisation_recommendation(
    name: str,
    reading: UtilisationReading,
    target: float,
    current: int,
    policy: AutoscalePolicy,
    overload: float = 0.0,
) -> tuple[int, str]:
    avg = reading.average
    ratio = avg / target
    label = f"{name} {avg:.1f}% vs target {target:g}%"
    if 1 - policy.down_tolerance <= ratio <= 1 + policy.up_tolerance:
        return current, f"{label}: within tolerance"
    if ratio > 1:
        # Scale-up: warming-up and silent instances count as 0 % (they take load soon).
        cautious = sum(reading.values) / (target * max(current, 1))
        if cautious <= 1 + policy.up_tolerance:
            return current, f"{label}: within tolerance once warming instances count as 0%"
        total = sum(reading.values)
        if name == "cpu" and overload > 0 and avg >= SATURATED_CPU_PERCENT:
            # CPU stops at 100 %: the requests the pool failed are the load it could not
            # show (half of them failing means twice the capacity is needed).
            total /= 1.0 - min(overload, 0.9)
            label += f", {overload:.0%} of requests failing"
        return max(current, _ceil(total / target)), f"{label}: needs more"
    # Scale-down: silent instances count as 100 % of target; warming ones are kept.
    load = sum(reading.values) + target * reading.missing
    cautious = load / (target * (len(reading.values) + reading.missing))
    if cautious >= 1 - policy.down_tolerance:
        return current, f"{label}: within tolerance once silent instances count as 100%"
    rec = min(current, max(1, _ceil(load / target)) + reading.warming)
    return rec, f"{label}: fewer suffice"


@dataclass(frozen=True)
class Peak:
    """The rate scale-in must still carry, and why."""

    rps: float
    why: str | None = None
    steady: bool = False
    """The load has settled (flat or falling steadily): no further stabilisation needed."""


def recent_peak_rps(
    history: ScalingHistory,
    now: datetime,
    rps: float,
    policy: AutoscalePolicy,
    profile: LoadProfile | None = None,
) -> Peak:
    """The rate scale-in must still carry (``rps`` is now's).

    * The highest pool rate within ``scale_down_peak_window_seconds``, each past rate first
      carried to this time of day by the seasonal ``profile`` (a fall the profile expects
      does not hold the pool): a lull between bursts does not remove what the next burst
      needs.
    * Unless the load has *settled*: if the rates of the last ``scale_down_steady_seconds``
      lie on a flat or falling line to within ``scale_down_steady_spread`` of their mean,
      that line is the forecast and only it counts, so a step down or a steady fall is
      followed in minutes while noisy or bursty load keeps the long peak.
    * Never below what the profile expects within the stabilisation window plus the
      forecast horizon: no scale-in just before a recurring rise."""
    window = policy.scale_down_peak_window_seconds
    short = min(window, policy.scale_down_steady_seconds)
    now_level = profile.expected(now) if profile is not None else None
    peak = raw_peak = rps
    recent: list[tuple[float, float]] = [(0.0, rps)]
    for sample in reversed(history.rates):  # newest first
        age = (now - sample.at).total_seconds()
        if age > window:
            break
        value = sample.rps
        raw_peak = max(raw_peak, value)
        if profile is not None and now_level is not None:
            then = profile.expected(sample.at)
            if then is not None and then > now_level > 0:
                value *= now_level / then  # what that rate means at this time of day
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
            return Peak(
                rps * rise,
                f"seasonal profile expects x{rise:.2f} within {ahead:g}s",
            )
    return held


def _settled(
    points: list[tuple[float, float]], spread: float | None
) -> tuple[str, float] | None:
    """Whether (age, rate) points lie on a flat or falling line within ``spread`` x their
    mean (a band: max minus min residual). Returns "steady" with the highest rate, or
    "falling steadily" with the line's value now plus its band (the fall is the forecast);
    None otherwise."""
    if spread is None or len(points) < 3:
        return None  # one or two rates say nothing about the spread
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    if mean_r <= 0:
        return None
    var = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (r - mean_r) for t, r in points) / var if var else 0.0
    residuals = [r - mean_r - slope * (t - mean_t) for t, r in points]
    band = max(residuals) - min(residuals)
    if band > spread * mean_r:
        return None
    span = -min(t for t, _ in points)
    change = slope * span  # how much the line rose (+) or fell (-) over the window
    if change < -spread * mean_r / 2:
        return "falling steadily", mean_r - slope * mean_t + band
    if change > spread * mean_r / 2:
        return None  # rising: not a time to scale in
    return "steady", max(r for _, r in points)


def proportional(
    policy: AutoscalePolicy, observation: Observation, history: ScalingHistory, now: datetime
) -> StrategyResult:
    current = len(observation.active)
    result = StrategyResult(current=current)
    result.targets = dict(policy.target_metrics)
    learned = rps_target(policy, history.capacity)
    if learned is not None:
        result.targets["rps"] = learned.rps
        result.rps_source = learned.why
        if learned.source == "learned" and total_rps(observation, policy, now) is not None:
            # The CPU target now speaks through the rate target (the rate one instance serves
            # at that CPU). The gateway's rate counts every request; CPU jitters, spikes with
            # a neighbour and stops at 100 %: it keeps teaching the learner instead.
            result.targets.pop("cpu", None)
    rps = total_rps(observation, policy, now)
    if rps is not None:
        result.values["rps"] = rps  # remembered for the trend, peaks and bursts either way
    if rps is not None and policy.short_burst_seconds > 0:
        shape = bursts(history.rates, now, rps, short_seconds=policy.short_burst_seconds)
        if shape is not None and shape.short:
            # On/off load: instances added for a burst start when it is over, and instances
            # held for bursts idle between them; size for the load that lasts.
            result.short_bursts = True
            result.sustained_rps = shape.sustained_rps
            result.burst_note = shape.describe()
    for name, target in result.targets.items():
        if name == "rps":
            _rps_recommendation(result, policy, observation, history, now, target)
            continue
        reading = utilisation(name, observation, policy, now)
        if reading is None:
            result.missing.append(name)
            continue
        if name == "cpu" and result.sustained_rps is not None and rps:
            # The same for CPU: what the sustained rate would use of it.
            share = result.sustained_rps / rps
            reading = replace(reading, values=tuple(v * share for v in reading.values))
        if reading.missing:
            result.partial.append(name)
        result.values[name] = reading.average
        failing = (error_rate(observation, policy, now) or 0.0) if policy.count_failed_requests else 0.0
        rec, why = _utilisation_recommendation(name, reading, target, current, policy, failing)
        if name == "cpu" and result.short_bursts:
            why += f" ({result.burst_note})"
        result.recommendations[name] = rec
        result.explanations[name] = why
    _add_triggers(result, policy, observation, history, now)
    return result


def _rps_recommendation(
    result: StrategyResult,
    policy: AutoscalePolicy,
    observation: Observation,
    history: ScalingHistory,
    now: datetime,
    target: float,
) -> None:
    """``ceil(rate / target)`` with the dead band: scale-out on the rate expected one
    forecast horizon ahead, scale-in on the rate the pool must still carry."""
    rps = total_rps(observation, policy, now)
    if rps is None:
        result.missing.append("rps")
        return
    result.values["rps"] = rps
    current = result.current
    profile = history.profile if policy.seasonal_forecast else None
    outlook = forecast(
        profile,
        history.rates,
        now,
        rps,
        policy.forecast_seconds,
        trend_window=policy.trend_window_seconds,
    )
    expected = rps
    label = f"rps {rps:.1f}/s"
    if result.sustained_rps is not None:
        expected = result.sustained_rps
        label += f" ({result.burst_note})"
        outlook = None
    if outlook is not None and outlook.rising:
        expected = outlook.expected_rps
        label += f" ({outlook.describe()})"
    label += f" vs {target:.3g}/s per instance"
    if result.rps_source and result.rps_source != "set in the policy":
        label += f" ({result.rps_source})"
    ratio = expected / (target * current) if current else math.inf
    if (
        ratio < 1 - policy.down_tolerance
        and policy.scale_down_peak_window_seconds > 0
        and not result.short_bursts
    ):
        held = recent_peak_rps(history, now, rps, policy, profile)
        result.steady = held.steady
        if held.rps > expected:
            label += f"; carry {held.rps:.1f}/s"
            expected = held.rps
        if held.why is not None:
            label += f" ({held.why})"
        # What the pool must carry can hold it, never grow it.
        ratio = min(expected / (target * current), 1.0)
    if 1 - policy.down_tolerance <= ratio <= 1 + policy.up_tolerance:
        result.recommendations["rps"] = current
        result.explanations["rps"] = f"{label}: within tolerance"
        return
    rec = max(1, _ceil(expected / target))
    result.recommendations["rps"] = rec
    result.explanations["rps"] = f"{label}: {rec} needed"


def _latency_persists(policy: AutoscalePolicy, history: ScalingHistory, now: datetime) -> bool:
    """Whether p95 was also above the trigger at the previous ``latency_trigger_ticks - 1``
    decisions (each within two check intervals of the next: a gap breaks the run)."""
    needed = policy.latency_trigger_ticks - 1
    if needed == 0:
        return True
    recent = history.latencies[-needed:]
    if len(recent) < needed:
        return False
    gap = 2 * policy.check_interval_seconds
    later = now
    for sample in reversed(recent):
        if (later - sample.at).total_seconds() > gap:
            return False
        if sample.p95_ms <= policy.response_time_threshold_ms:
            return False
        later = sample.at
    return True


def _add_triggers(
    result: StrategyResult,
    policy: AutoscalePolicy,
    observation: Observation,
    history: ScalingHistory,
    now: datetime,
) -> None:
    """Latency and error rate can add one instance; they never recommend fewer."""
    p95 = p95_latency_ms(observation, policy, now)
    growing = any(
        i.state is not InstanceState.DRAINING and not is_warm(i, policy, now)
        for i in observation.instances
    )
    if p95 is not None:
        result.values["latency"] = p95
        # While added instances start and warm up the pool is still growing: slow requests
        # now are the wait for them (the window still holds it), not a need for even more.
        slow = p95 > policy.response_time_threshold_ms and not result.short_bursts
        if slow and not growing and _latency_persists(policy, history, now):
            result.recommendations["latency"] = result.current + 1
            result.explanations["latency"] = (
                f"p95 latency {p95:.0f} ms > {policy.response_time_threshold_ms:g} ms: one more"
            )
    threshold = policy.error_rate_threshold
    errors = error_rate(observation, policy, now)
    if errors is not None:
        result.values["error_rate"] = errors
        if threshold is not None and errors > threshold:
            result.recommendations["error_rate"] = result.current + 1
            result.explanations["error_rate"] = (
                f"error rate {errors:.1%} > {threshold:.1%}: one more"
            )


def threshold(
    policy: AutoscalePolicy, observation: Observation, history: ScalingHistory, now: datetime
) -> StrategyResult:
    """The seed's rules. Any limit crossed -> +1; all three low -> -1."""
    current = len(observation.active)
    result = StrategyResult(current=current)
    cpu = utilisation("cpu", observation, policy, now)
    mem = utilisation("memory", observation, policy, now)
    values = {
        "cpu": cpu.average if cpu is not None else None,
        "memory": mem.average if mem is not None else None,
        "rps": total_rps(observation, policy, now),
        "latency": p95_latency_ms(observation, policy, now),
    }
    up_limits = {
        "cpu": policy.scale_up_threshold,
        "memory": policy.scale_up_threshold,
        "rps": policy.scale_up_rps,
        "latency": policy.response_time_threshold_ms,
    }
    down_limits = {
        "cpu": policy.scale_down_threshold,
        "memory": policy.scale_down_threshold,
        "rps": policy.scale_down_rps,
    }
    for name, value in values.items():
        if value is None:
            if name in down_limits:
                result.missing.append(name)
            continue
        result.values[name] = value
        if value > up_limits[name]:
            result.recommendations[name] = current + 1
            result.explanations[name] = f"{name} {value:g} > {up_limits[name]:g}: one more"
    if result.recommendations:
        return result
    low = [n for n, limit in down_limits.items() if (v := values[n]) is not None and v < limit]
    if len(low) == len(down_limits):
        for name in down_limits:
            result.recommendations[name] = current - 1
        result.explanations["cpu"] = (
            f"cpu, memory < {policy.scale_down_threshold:g}% and rps < "
            f"{policy.scale_down_rps:g}/s: one fewer"
        )
    else:
        result.recommendations["cpu"] = current
        result.explanations["cpu"] = "no scale-up limit crossed and not all low: hold"
    return result


Strategy = Callable[[AutoscalePolicy, Observation, ScalingHistory, datetime], StrategyResult]
STRATEGIES: dict[str, Strategy] = {"proportional": proportional, "threshold": threshold}

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
from dataclasses import dataclass, field
from datetime import datetime

from autoscaler.config import AutoscalePolicy
from autoscaler.forecast import forecast
from autoscaler.learning import rps_target
from autoscaler.model import Observation, ScalingHistory
from autoscaler.readings import (
    UtilisationReading,
    error_rate,
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


def _utilisation_recommendation(
    name: str, reading: UtilisationReading, target: float, current: int, policy: AutoscalePolicy
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
        return max(current, _ceil(sum(reading.values) / target)), f"{label}: needs more"
    # Scale-down: silent instances count as 100 % of target; warming ones are kept.
    load = sum(reading.values) + target * reading.missing
    cautious = load / (target * (len(reading.values) + reading.missing))
    if cautious >= 1 - policy.down_tolerance:
        return current, f"{label}: within tolerance once silent instances count as 100%"
    rec = min(current, max(1, _ceil(load / target)) + reading.warming)
    return rec, f"{label}: fewer suffice"


def recent_peak_rps(
    history: ScalingHistory, now: datetime, rps: float, policy: AutoscalePolicy
) -> tuple[float, str | None]:
    """The rate scale-in must still carry: the highest pool request rate within
    ``scale_down_peak_window_seconds`` (``rps`` is now's), each past rate first carried to
    this time of day by the seasonal profile (a fall the profile expects does not hold the
    pool). If the rates of the last ``trend_window_seconds`` are steady (max within
    ``scale_down_steady_spread`` of min), the load has settled at a new level: only they
    count (a step down is followed in minutes; bursty load keeps the long peak).
    Returns the rate and, if the profile lowered it, why."""
    window = policy.scale_down_peak_window_seconds
    short = min(window, policy.trend_window_seconds)
    profile = history.profile
    now_level = profile.expected(now) if profile is not None else None
    peak = raw_peak = recent_max = recent_min = rps
    recent = 0
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
        if age <= short:
            recent += 1
            recent_max = max(recent_max, sample.rps)
            recent_min = min(recent_min, sample.rps)
    spread = policy.scale_down_steady_spread
    # "Steady" needs a few samples: one rate alone says nothing about the spread.
    if spread is not None and recent >= 2 and recent_max <= (1 + spread) * recent_min:
        return recent_max, None
    if peak < raw_peak:
        return peak, (
            f"seasonal profile expects the fall: peak {raw_peak:.1f}/s counts as {peak:.1f}/s"
        )
    return peak, None


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
    for name, target in result.targets.items():
        if name == "rps":
            _rps_recommendation(result, policy, observation, history, now, target)
            continue
        reading = utilisation(name, observation, policy, now)
        if reading is None:
            result.missing.append(name)
            continue
        if reading.missing:
            result.partial.append(name)
        result.values[name] = reading.average
        rec, why = _utilisation_recommendation(name, reading, target, current, policy)
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
    rps = total_rps(observation, policy, now)
    if rps is None:
        result.missing.append("rps")
        return
    result.values["rps"] = rps
    current = result.current
    expected = rps
    outlook = forecast(
        history.profile,
        history.rates,
        now,
        rps,
        policy.forecast_seconds,
        trend_window=policy.trend_window_seconds,
    )
    label = f"rps {rps:.1f}/s"
    if outlook is not None and outlook.rising:
        expected = outlook.expected_rps
        label += f" ({outlook.describe()})"
    label += f" vs {target:.3g}/s per instance"
    if result.rps_source and result.rps_source != "set in the policy":
        label += f" ({result.rps_source})"
    ratio = expected / (target * current) if current else math.inf
    if 1 - policy.down_tolerance <= ratio <= 1 + policy.up_tolerance:
        result.recommendations["rps"] = current
        result.explanations["rps"] = f"{label}: within tolerance"
        return
    if ratio < 1 and policy.scale_down_peak_window_seconds > 0:
        # Scale-in is sized by the recent peak, and only if even that is below the band.
        peak, seasonal = recent_peak_rps(history, now, rps, policy)
        if seasonal is not None:
            label += f"; {seasonal}"
        if peak > expected:
            window = f"{policy.scale_down_peak_window_seconds:g}s"
            label += f"; peak {peak:.1f}/s in the last {window}"
            expected = peak
            if expected / (target * current) >= 1 - policy.down_tolerance:
                result.recommendations["rps"] = current
                result.explanations["rps"] = f"{label}: within tolerance at the peak"
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
    if p95 is not None:
        result.values["latency"] = p95
        if p95 > policy.response_time_threshold_ms and _latency_persists(policy, history, now):
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

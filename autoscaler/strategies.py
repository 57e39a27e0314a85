"""The two strategies: pure arithmetic from readings to a raw recommendation.

* ``proportional`` (default): per target metric ``desired = ceil(current x value / target)``
  with a dead band, the max over metrics; latency and error rate can only add a step up.
* ``threshold``: the seed scripts' rules, exactly (one step up if any of CPU > 80 %,
  memory > 80 %, request rate > 150/s, response time > 1000 ms; one step down only if all of
  CPU < 30 %, memory < 30 %, request rate < 50/s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from autoscaler.config import AutoscalePolicy
from autoscaler.forecast import bursts
from autoscaler.learning import rps_target
from autoscaler.model import InstanceState, Observation, ScalingHistory
from autoscaler.rate import StrategyResult, ceil_count, rps_recommendation
from autoscaler.readings import (
    UtilisationReading,
    error_rate,
    is_warm,
    p95_latency_ms,
    total_rps,
    utilisation,
)

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
        return max(current, ceil_count(total / target)), f"{label}: needs more"
    # Scale-down: silent instances count as 100 % of target; warming ones are kept.
    load = sum(reading.values) + target * reading.missing
    cautious = load / (target * (len(reading.values) + reading.missing))
    if cautious >= 1 - policy.down_tolerance:
        return current, f"{label}: within tolerance once silent instances count as 100%"
    rec = min(current, max(1, ceil_count(load / target)) + reading.warming)
    return rec, f"{label}: fewer suffice"


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
            rps_recommendation(result, policy, observation, history, now, target)
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
        failing = error_rate(observation, policy, now) if policy.count_failed_requests else None
        rec, why = _utilisation_recommendation(
            name, reading, target, current, policy, failing or 0.0
        )
        if name == "cpu" and result.short_bursts:
            why += f" ({result.burst_note})"
        result.recommendations[name] = rec
        result.explanations[name] = why
    _add_triggers(result, policy, observation, history, now)
    return result


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

"""Safety rules: small named functions, each ``(value, ...) -> (value, reason | None)``.

``reason`` is ``None`` when the rule did not change the value. ``decide`` chains them in the
HPA's order (normalizeDesiredReplicasWithBehaviors): hold on missing data, flapping check,
stabilise, cooldowns, rate limits, clamp.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from autoscaler.config import AutoscalePolicy
from autoscaler.model import ScalingHistory

RuleResult = tuple[int, str | None]


def clamp(desired: int, policy: AutoscalePolicy) -> RuleResult:
    """Keep the count within [min_instances, max_instances]."""
    if desired < policy.min_instances:
        return policy.min_instances, f"raised to min_instances {policy.min_instances}"
    if desired > policy.max_instances:
        return policy.max_instances, f"capped at max_instances {policy.max_instances}"
    return desired, None


def hold_without_metrics(desired: int, current: int, missing: list[str]) -> RuleResult:
    """Missing or stale metrics never cause a scale-down (a silent pool is not an idle pool)."""
    if desired < current and missing:
        return current, f"scale-down blocked: no fresh {', '.join(missing)}"
    return desired, None


def hold_while_slow(
    desired: int, current: int, p95_ms: float | None, threshold_ms: float, ratio: float
) -> RuleResult:
    """No scale-in while p95 latency is above ``ratio`` x the latency trigger: removing an
    instance would push it over and bring the next scale-up (latency is never a target for
    scale-in, only a guard)."""
    if desired < current and p95_ms is not None and p95_ms > ratio * threshold_ms:
        return current, (f"scale-down held: p95 {p95_ms:.0f} ms > {ratio:g} x {threshold_ms:g} ms")
    return desired, None


def flapping_check(
    desired: int, current: int, loads: Mapping[str, tuple[float, float]]
) -> RuleResult:
    """Scale in only as far as the projected per-instance load stays below the scale-up level.

    ``loads`` maps metric -> (per-instance value now, value that would trigger a scale-up).
    As in Azure autoscale: 1 instance at 56 % -> 2 at 28 %; removing one would put 56 % back.
    """
    if desired >= current:
        return desired, None
    safe = max(desired, 1)
    while safe < current and any(
        value * current / safe >= ceiling for value, ceiling in loads.values() if ceiling > 0
    ):
        safe += 1
    if safe == desired:
        return desired, None
    worst = max(loads, key=lambda m: loads[m][0] / loads[m][1] if loads[m][1] else 0.0)
    value, ceiling = loads[worst]
    return safe, (
        f"flapping check: {worst} {value:g} x {current}/{desired} would reach the scale-up "
        f"level {ceiling:g}; keeping {safe}"
    )


def _recent(history: ScalingHistory, now: datetime, window: float) -> list[int]:
    """Recommendations made within ``window`` seconds before ``now`` (newest first)."""
    since = now - timedelta(seconds=window)
    out = []
    for rec in reversed(history.recommendations):
        if rec.at <= since:
            break
        out.append(rec.desired)
    return out


def stabilize(
    desired: int,
    current: int,
    history: ScalingHistory,
    now: datetime,
    policy: AutoscalePolicy,
    *,
    down_window: float | None = None,
) -> RuleResult:
    """Scale down to the highest recommendation in the down window; scale up to the lowest in
    the up window (0 s by default, so up is immediate). ``desired`` is this tick's raw one.
    ``down_window`` overrides ``scale_down_stabilization_seconds``."""
    window = policy.scale_down_stabilization_seconds if down_window is None else down_window
    if desired < current and window > 0:
        recent = _recent(history, now, window)
        highest = min(max([desired, *recent]), current)
        if highest > desired:
            return highest, (
                f"stabilisation: highest recommendation in the last {window:g}s is {highest}"
            )
    if desired > current and policy.scale_up_stabilization_seconds > 0:
        recent = _recent(history, now, policy.scale_up_stabilization_seconds)
        lowest = max(min([desired, *recent]), current)
        if lowest < desired:
            return lowest, (
                f"stabilisation: lowest recommendation in the last "
                f"{policy.scale_up_stabilization_seconds:g}s is {lowest}"
            )
    return desired, None


def _since_last(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else (now - at).total_seconds()


def cooldown(
    desired: int,
    current: int,
    history: ScalingHistory,
    now: datetime,
    *,
    up_seconds: float,
    down_seconds: float | None,
) -> RuleResult:
    """Separate cooldowns: no scale-up within ``up_seconds`` and no scale-down within
    ``down_seconds`` (None = no down cooldown) of the last scaling action."""
    elapsed = _since_last(history.last_scale_at, now)
    if elapsed is None or desired == current:
        return desired, None
    wait = up_seconds if desired > current else down_seconds
    if wait is not None and elapsed < wait:
        kind = "scale-up" if desired > current else "scale-down"
        return current, f"{kind} cooldown: last scaling {elapsed:.0f}s ago < {wait:g}s"
    return desired, None


def limit_scale_up(
    desired: int, current: int, history: ScalingHistory, now: datetime, policy: AutoscalePolicy
) -> RuleResult:
    """At most the larger of +N instances or +P % per period, counted from the pool size at
    the start of the period (as the HPA's scaleUp policies with selectPolicy Max)."""
    if desired <= current:
        return desired, None
    since = now - timedelta(seconds=policy.scale_up_period_seconds)
    added = sum(max(0, e.to_count - e.from_count) for e in history.events if e.at > since)
    start = max(current - added, 0)
    limit = max(
        start + policy.scale_up_limit_instances,
        int(start * (1 + policy.scale_up_limit_percent / 100)),
    )
    if desired > limit:
        return max(limit, current), (
            f"scale-up rate limit: at most {limit} within {policy.scale_up_period_seconds:g}s "
            f"(+{policy.scale_up_limit_instances} or +{policy.scale_up_limit_percent:g}%)"
        )
    return desired, None


def limit_scale_down(desired: int, current: int, policy: AutoscalePolicy) -> RuleResult:
    """Remove at most ``scale_down_limit_instances`` per decision (None = no limit)."""
    step = policy.scale_down_limit_instances
    if step is not None and desired < current - step:
        return current - step, f"scale-down rate limit: at most -{step} per decision"
    return desired, None


def remaining_cooldowns(
    policy: AutoscalePolicy, history: ScalingHistory, now: datetime
) -> tuple[float, float]:
    """Seconds until a scale-up and a scale-down are allowed again (0 = now), as ``decide``
    applies them: both count from the last scaling action in either direction; the threshold
    strategy has the seed's one ``cooldown_seconds``. (Stabilisation may still hold a
    scale-down longer.)"""
    elapsed = _since_last(history.last_scale_at, now)
    if policy.strategy == "threshold":
        up = down = policy.cooldown_seconds
    else:
        up, down = policy.scale_up_cooldown_seconds, policy.down_cooldown
    if elapsed is None:
        return 0.0, 0.0
    return max(0.0, up - elapsed), max(0.0, down - elapsed)

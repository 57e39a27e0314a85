"""``decide``: one pure evaluation, observation -> Decision.

    strategy (raw recommendation per metric, max wins)
      -> hold_without_metrics -> flapping_check -> stabilize      (proportional only: the
      -> cooldown -> limit_scale_up -> limit_scale_down            threshold strategy keeps
      -> clamp                                                     the seed's one cooldown)

Every rule that changes the value leaves a ``LimitApplied`` with its reason on the Decision.
The caller then remembers it: ``history = history.record(decision)``.
"""

from __future__ import annotations

from datetime import datetime

from autoscaler import rules
from autoscaler.config import AutoscalePolicy
from autoscaler.model import Decision, Direction, LimitApplied, Observation, ScalingHistory
from autoscaler.rate import StrategyResult, recent_peak_rps
from autoscaler.strategies import STRATEGIES


class _Chain:
    """Applies rules in order and keeps the ones that changed the value."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.limits: list[LimitApplied] = []

    def apply(self, rule: str, result: rules.RuleResult) -> None:
        new, reason = result
        if reason is not None and new != self.value:
            self.limits.append(LimitApplied(rule=rule, before=self.value, after=new, reason=reason))
        self.value = new


def decide(
    policy: AutoscalePolicy, observation: Observation, history: ScalingHistory, now: datetime
) -> Decision:
    """Decide the desired pool size. Pure: same inputs, same Decision."""
    result = STRATEGIES[policy.strategy](policy, observation, history, now)
    current = result.current
    chain = _Chain(result.recommendation)
    silent = [*result.missing, *(f"{m} (some instances)" for m in result.partial)]
    chain.apply("missing_metrics", rules.hold_without_metrics(chain.value, current, silent))
    if policy.strategy == "proportional":
        if policy.flapping_check:
            loads = _projected_loads(policy, result, history, now)
            chain.apply("flapping_check", rules.flapping_check(chain.value, current, loads))
            if not result.short_bursts:  # the bursts' latency is not the pool's to fix
                slow = rules.hold_while_slow(
                    chain.value,
                    current,
                    result.values.get("latency"),
                    policy.response_time_threshold_ms,
                    policy.scale_down_latency_ratio,
                )
                chain.apply("latency_guard", slow)
        # A settled load was already sized by the max of its recent rates (the same hold).
        hold = 0.0 if result.steady else policy.scale_down_stabilization_seconds
        stable = rules.stabilize(chain.value, current, history, now, policy, down_window=hold)
        chain.apply("stabilization", stable)
        cool = rules.cooldown(
            chain.value,
            current,
            history,
            now,
            up_seconds=policy.scale_up_cooldown_seconds,
            down_seconds=policy.down_cooldown,
        )
        chain.apply("cooldown", cool)
        up_limited = rules.limit_scale_up(chain.value, current, history, now, policy)
        chain.apply("scale_up_rate", up_limited)
        chain.apply("scale_down_rate", rules.limit_scale_down(chain.value, current, policy))
    else:
        cool = rules.cooldown(
            chain.value,
            current,
            history,
            now,
            up_seconds=policy.cooldown_seconds,
            down_seconds=policy.cooldown_seconds,
        )
        chain.apply("cooldown", cool)
    chain.apply("clamp", rules.clamp(chain.value, policy))
    desired = chain.value
    direction = (
        Direction.UP
        if desired > current
        else (Direction.DOWN if desired < current else Direction.NONE)
    )
    return Decision(
        at=now,
        strategy=policy.strategy,
        current=current,
        desired=desired,
        direction=direction,
        recommendation=result.recommendation,
        driving_metric=result.driving_metric,
        metric_recommendations=dict(result.recommendations),
        metric_values={k: round(v, 6) for k, v in result.values.items()},
        missing_metrics=tuple(result.missing),
        limits=tuple(chain.limits),
        reason=_reason(result, current, desired, direction, chain.limits, policy.dry_run),
        dry_run=policy.dry_run,
    )


def _projected_loads(
    policy: AutoscalePolicy, result: StrategyResult, history: ScalingHistory, now: datetime
) -> dict[str, tuple[float, float]]:
    """Per-instance load now and the level at which it would trigger a scale-up: the target's
    upper band, and the lowest per-instance rate at which latency recently crossed its
    trigger (a load the pool has shown it cannot carry within the latency limit)."""
    loads: dict[str, tuple[float, float]] = {}
    rps = result.values.get("rps")
    if result.sustained_rps is not None:
        rps = result.sustained_rps
    elif result.peak is not None:
        rps = result.peak.rps  # the rps recommendation's (same inputs)
    elif rps is not None and policy.scale_down_peak_window_seconds > 0:
        profile = history.profile if policy.seasonal_forecast else None
        rps = recent_peak_rps(history, now, rps, policy, profile).rps
    slow = history.capacity.slow_rate(now, policy.slow_load_memory_seconds)
    if result.short_bursts:
        slow = None  # slow in the bursts, not at the sustained rate
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


def _reason(
    result: StrategyResult,
    current: int,
    desired: int,
    direction: Direction,
    limits: list[LimitApplied],
    dry_run: bool,
) -> str:
    head = {
        Direction.UP: f"scale up {current} -> {desired}",
        Direction.DOWN: f"scale down {current} -> {desired}",
        Direction.NONE: f"hold at {current}",
    }[direction]
    if dry_run:
        head = f"[dry run] {head}"
    driver = result.driving_metric
    parts = [head]
    if driver is not None:
        parts.append(result.explanations.get(driver, driver))
    elif result.missing:
        parts.append(f"no fresh metrics ({', '.join(result.missing)})")
    parts.extend(limit.reason for limit in limits)
    return "; ".join(parts)

"""Sizing by request rate: ``ceil(rate / per-instance target)`` with a dead band (pure).

Scale-out uses the rate expected one forecast horizon ahead (``autoscaler.forecast``); scale-in
uses the rate the pool must still carry (``recent_peak_rps``): the recent peak unless the load
has settled or is falling steadily, what the seasonal profile expects soon, and, for on/off
load with short bursts, the sustained rate rather than the bursts. The dead band is
asymmetric: scale-in waits for the wide ``scale_down_tolerance`` (a margin for noise) unless
the load has settled, when the plain ``tolerance`` applies (the rate to carry is known).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from autoscaler.config import AutoscalePolicy
from autoscaler.forecast import LoadProfile, forecast
from autoscaler.model import Observation, ScalingHistory
from autoscaler.readings import total_rps


@dataclass(frozen=True)
class Peak:
    """The rate scale-in must still carry, and why."""

    rps: float
    why: str | None = None
    steady: bool = False
    """The load has settled (flat or falling steadily): no further stabilisation needed."""


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
    peak: Peak | None = None
    """What scale-in must still carry (``recent_peak_rps``), once computed this tick: the
    flapping check asks for the same value."""

    @property
    def recommendation(self) -> int:
        return max(self.recommendations.values(), default=self.current)

    @property
    def driving_metric(self) -> str | None:
        if not self.recommendations:
            return None
        best = self.recommendation
        return next(name for name, rec in self.recommendations.items() if rec == best)


def ceil_count(x: float) -> int:
    """``ceil`` that does not turn 2.0000000001 (float noise) into 3."""
    return math.ceil(round(x, 9))


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
    levels: dict[int, float | None] = {}
    for sample in reversed(history.rates):  # newest first
        age = (now - sample.at).total_seconds()
        if age > window:
            break
        value = sample.rps
        if value > raw_peak:
            raw_peak = value
        if profile is not None and now_level is not None:
            slot = profile.slot(sample.at)  # 30 s samples share a slot: look each up once
            if slot in levels:
                then = levels[slot]
            else:
                then = levels[slot] = profile.expected(sample.at)
            if then is not None and then > now_level > 0:
                value *= now_level / then  # what that rate means at this time of day
        if value > peak:
            peak = value
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


def rps_recommendation(
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
    # The wide scale-down band is a margin for noise. Once the recent rates lie on a flat or
    # falling line (settled), the rate to carry is known and the plain band suffices: a
    # quiet load sheds instances as it falls instead of idling inside the wide band.
    down_band = policy.down_tolerance
    settled_band = min(policy.tolerance, down_band)
    if (
        ratio < 1 - settled_band
        and policy.scale_down_peak_window_seconds > 0
        and not result.short_bursts
    ):
        held = recent_peak_rps(history, now, rps, policy, profile)
        result.peak = held
        result.steady = held.steady
        if held.steady:
            down_band = settled_band
        if held.rps > expected:
            label += f"; carry {held.rps:.1f}/s"
            expected = held.rps
        if held.why is not None:
            label += f" ({held.why})"
        # What the pool must carry can hold it, never grow it.
        ratio = min(expected / (target * current), 1.0)
    if 1 - down_band <= ratio <= 1 + policy.up_tolerance:
        result.recommendations["rps"] = current
        result.explanations["rps"] = f"{label}: within tolerance"
        return
    rec = max(1, ceil_count(expected / target))
    result.recommendations["rps"] = rec
    result.explanations["rps"] = f"{label}: {rec} needed"

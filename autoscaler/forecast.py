"""Load forecasts: a seasonal profile from the scaling history, plus the recent trend (pure).

* :class:`LoadProfile` is the load by slot of the day (and of the week, once whole weeks of
  history exist), built by :func:`build_profile` from ``(time, request rate)`` samples. The
  maintenance flow computes it from the history it already analyses; the tick only reads it
  (``ScalingHistory.profile``), so the forecast costs nothing on the tick's hot path.
  A slot's value is a **low quantile across days** (the lowest day while there are fewer than
  four): a rise is forecast only if it happened on (nearly) every day seen, so a one-off
  burst is never repeated. Less than ``min_days`` of history, or no value for the slots
  involved: no seasonal forecast.
* :func:`forecast` gives the load expected ``horizon`` seconds ahead: the current rate x the
  profile's ratio between then and now (so a day that runs higher or lower than usual keeps
  its level), plus a rising trend of the recent rates. The seasonal peak over a longer span
  (``peak_ratio``) lets scale-in wait for a recurring rise that is minutes away and follow a
  recurring fall instead of holding a burst-sized pool.

Every forecast explains itself (``Forecast.describe``) so a decision it drives names it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

_FROZEN = ConfigDict(extra="forbid", frozen=True)
_DAY = 86_400
_WEEK = 7 * _DAY


class _Rate(Protocol):
    @property
    def at(self) -> datetime: ...

    @property
    def rps(self) -> float: ...


class LoadProfile(BaseModel):
    """Typical request rate (requests/s) by slot of the day and, with enough history, of the
    week. Times are UTC; a slot's value holds for the whole slot (a rise at 18:00 shows as
    soon as the forecast horizon reaches 18:00)."""

    model_config = _FROZEN

    slot_seconds: int = Field(default=900, ge=60, le=3600)
    day: tuple[float | None, ...]
    """One value per slot of the day (``86400 / slot_seconds`` of them)."""
    week: tuple[float | None, ...] = ()
    """One value per slot of the week (Monday 00:00 first), or empty."""
    days: int = Field(ge=0)
    """On how many days (UTC) the history it was built from has samples."""
    built_at: datetime | None = None

    def expected(self, at: datetime) -> float | None:
        """The profile's rate for the slot holding ``at``, or None. A week slot without data
        falls back to the day's profile."""
        if self.week:
            value = _lookup(self.week, _WEEK, self.slot_seconds, at)
            if value is not None:
                return value
        return _lookup(self.day, _DAY, self.slot_seconds, at)

    def slot(self, at: datetime) -> int:
        """The number of the slot holding ``at`` (two times with the same number have the
        same ``expected`` value)."""
        return math.floor(_seconds(at) / self.slot_seconds)

    def ratio(self, start: datetime, end: datetime) -> float | None:
        """Profile at ``end`` over profile at ``start`` (None if unknown or near zero)."""
        a, b = self.expected(start), self.expected(end)
        if a is None or b is None or a <= 1e-9:
            return None
        return b / a

    def peak_ratio(self, start: datetime, seconds: float) -> float | None:
        """The highest profile value over ``[start, start + seconds]`` relative to
        ``start``'s (each slot the span touches)."""
        base = self.expected(start)
        if base is None or base <= 1e-9:
            return None
        best = base
        offset = 0.0
        while offset < seconds:
            offset = min(offset + self.slot_seconds, seconds)
            value = self.expected(start + timedelta(seconds=offset))
            if value is not None:
                best = max(best, value)
        return best / base


def _lookup(
    table: tuple[float | None, ...], period: int, slot_seconds: int, at: datetime
) -> float | None:
    return table[int(_seconds(at) % period) // slot_seconds % len(table)]


def _seconds(at: datetime) -> float:
    """Seconds since Monday 1970-01-05 00:00 UTC (so ``% _WEEK`` starts the week on Monday).
    (An aware time's ``timestamp`` is already UTC; a naive one is taken as local time, as
    ``astimezone`` would.)"""
    return at.timestamp() - 4 * _DAY


def build_profile(
    samples: Iterable[tuple[datetime, float]],
    *,
    slot_seconds: int = 900,
    min_days: int = 2,
    at: datetime | None = None,
) -> LoadProfile | None:
    """The seasonal profile of ``(time, rate)`` samples; None with samples on fewer than
    ``min_days`` days (one day cannot tell a daily rise from a one-off burst)."""
    if _DAY % slot_seconds:
        raise ValueError(f"slot_seconds: {slot_seconds} does not divide a day")
    per_day = _DAY // slot_seconds
    # (day number, slot) -> [sum, count]
    cells: dict[tuple[int, int], list[float]] = {}
    for when, rate in samples:
        if not math.isfinite(rate) or rate < 0:
            continue
        t = _seconds(when)
        key = (int(t // _DAY), int(t % _DAY) // slot_seconds)
        cell = cells.setdefault(key, [0.0, 0.0])
        cell[0] += rate
        cell[1] += 1
    days = len({day for day, _ in cells})
    if days < min_days:
        return None
    by_slot: dict[int, list[float]] = {}
    by_week_slot: dict[int, list[float]] = {}
    for (day, slot), (total, count) in cells.items():
        mean = total / count
        by_slot.setdefault(slot, []).append(mean)
        by_week_slot.setdefault((day % 7) * per_day + slot, []).append(mean)
    day_table = tuple(_low_quantile(by_slot.get(s)) for s in range(per_day))
    week_table: tuple[float | None, ...] = ()
    if days >= 14:  # two of each weekday before the weekday matters
        week_table = tuple(_low_quantile(by_week_slot.get(s)) for s in range(7 * per_day))
    return LoadProfile(
        slot_seconds=slot_seconds, day=day_table, week=week_table, days=days, built_at=at
    )


def _low_quantile(values: list[float] | None) -> float | None:
    """The days' values at a slot, summarised so that only what recurs counts: the lowest
    while fewer than 4 days, else the 25th percentile (nearest rank). A single day: None."""
    if not values or len(values) < 2:
        return None
    ordered = sorted(values)
    return ordered[0] if len(ordered) < 4 else ordered[(len(ordered) - 1) // 4]


class Forecast(BaseModel):
    """The load expected ``horizon_seconds`` ahead, and what it rests on."""

    model_config = _FROZEN

    now_rps: float
    horizon_seconds: float
    expected_rps: float
    seasonal_ratio: float | None = None
    trend_rps_per_second: float = 0.0

    @property
    def rising(self) -> bool:
        return self.expected_rps > self.now_rps * (1 + 1e-9)

    def describe(self) -> str:
        parts = []
        if self.seasonal_ratio is not None and abs(self.seasonal_ratio - 1) > 0.005:
            parts.append(f"seasonal x{self.seasonal_ratio:.2f}")
        if self.trend_rps_per_second > 0:
            parts.append(f"trend +{self.trend_rps_per_second:.2f}/s per s")
        why = ", ".join(parts) if parts else "flat"
        return (
            f"forecast {self.expected_rps:.1f}/s in {self.horizon_seconds:g}s ({why})"
        )


def rate_trend(recent: Sequence[_Rate], now: datetime, rps: float, window: float) -> float:
    """Least-squares slope (rps per second) of the rates of the last ``window`` seconds and
    now's, or 0 with fewer than three points."""
    points = [(0.0, rps)]
    for sample in reversed(recent):  # newest first; stop at the window's start
        age = (now - sample.at).total_seconds()
        if age > window:
            break
        if age > 0:
            points.append((-age, sample.rps))
    if len(points) < 3:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (r - mean_r) for t, r in points) / var


def forecast(
    profile: LoadProfile | None,
    recent: Sequence[_Rate],
    now: datetime,
    rps: float,
    horizon: float,
    *,
    trend_window: float = 300.0,
) -> Forecast | None:
    """The load expected ``horizon`` seconds after ``now`` (``rps`` is now's rate).

    Seasonal ratio from ``profile`` (if it knows both times), times now's rate, plus the
    recent upward trend (a fall is never extrapolated: scale-in has its own guards). None when
    there is neither a profile value nor a trend to go on (missing history = no forecast)."""
    if horizon <= 0:
        return None
    ratio = profile.ratio(now, now + timedelta(seconds=horizon)) if profile else None
    slope = max(0.0, rate_trend(recent, now, rps, trend_window))
    if ratio is None and slope == 0.0:
        return None
    base = rps * (ratio if ratio is not None else 1.0)
    # The trend is the rise of the recent minutes; the profile may already explain it, so
    # take the larger of the two, not their sum.
    expected = max(base, rps + slope * horizon)
    return Forecast(
        now_rps=rps,
        horizon_seconds=horizon,
        expected_rps=expected,
        seasonal_ratio=ratio,
        trend_rps_per_second=slope,
    )


class Bursts(BaseModel):
    """The shape of the recent load: bursts above twice its median, and how long they last.

    When bursts come often and end within ``short_seconds`` (on/off traffic, such as an LLM
    service's), the forecast is that the next one will be short too: capacity added for it
    starts when it is over, and capacity held for it idles between bursts. The policy then
    sizes the pool for the *sustained* load (``sustained_rps``: the rate the load stays at
    or above a quarter of the time) instead."""

    model_config = _FROZEN

    count: int
    mean_seconds: float
    median_rps: float
    sustained_rps: float
    window_seconds: float

    @property
    def short(self) -> bool:
        return self.count >= _MIN_BURSTS and self.mean_seconds <= self.short_limit

    short_limit: float = 150.0

    def describe(self) -> str:
        return (
            f"short bursts ({self.count} in {self.window_seconds:g}s, "
            f"~{self.mean_seconds:.0f}s each): sized for the sustained {self.sustained_rps:.1f}/s"
        )


_MIN_BURSTS = 3
_BURST_FACTOR = 2.0


def bursts(
    recent: Sequence[_Rate],
    now: datetime,
    rps: float,
    *,
    window: float = 900.0,
    short_seconds: float = 150.0,
) -> Bursts | None:
    """Bursts in the rates of the last ``window`` seconds (and now's); None with fewer than
    ten rates or no load."""
    samples: list[tuple[float, float]] = [(0.0, rps)]
    for sample in reversed(recent):
        age = (now - sample.at).total_seconds()
        if age > window:
            break
        if age > 0:
            samples.append((age, sample.rps))
    if len(samples) < 10:
        return None
    samples.reverse()  # oldest first
    rates = sorted(r for _, r in samples)
    median = rates[len(rates) // 2]
    if rates[-1] <= 0:
        return None
    threshold = _BURST_FACTOR * median
    durations: list[float] = []
    start: float | None = None
    step = window / max(len(samples) - 1, 1)
    for age, rate in samples:
        if rate > threshold and rate > 0:
            if start is None:
                start = age
        elif start is not None:
            durations.append(start - age)
            start = None
    if start is not None:
        durations.append(start + step)  # still bursting now
    mean = sum(durations) / len(durations) if durations else 0.0
    return Bursts(
        count=len(durations),
        mean_seconds=mean,
        median_rps=median,
        sustained_rps=rates[(3 * (len(rates) - 1)) // 4],
        window_seconds=window,
        short_limit=short_seconds,
    )

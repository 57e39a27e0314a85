"""Learned capacity: how many requests per second one instance serves, learned from what every
tick observes (pure; no I/O, no clock).

Each tick gives at most one :class:`CapacitySample` (``autoscaler.learning.capacity_sample``):
the gateway's request rate divided by the ready instances that served it, the mean CPU % of
those instances and whether the pool's p95 latency was over its threshold.
:func:`observe` folds it into a :class:`CapacityEstimate`:

* **CPU fit.** A weighted, trimmed least-squares line ``cpu = idle + slope x rps`` over the
  kept points; the capacity is the rate at which the line reaches 100 % CPU. Points are kept
  per load band (so hours of one steady load do not push out what a busier hour taught),
  weighted by age (half-life), and a point far off the line is rejected as an outlier
  (a CPU spike of a neighbour, a scrape that straddled a change).
* **SLO rate.** The per-instance rate at which p95 latency was seen above its threshold:
  a service whose limit is not its CPU (locks, I/O, a slow dependency) shows it here.
* **Confidence** comes from the fit's own standard error at the capacity (inverse
  regression), so a narrow range of loads or a scattered cloud stays unconfident.
* A sample is used only when the pool is **settled**: every ready instance is past its
  warm-up, none is draining and the serving count has not changed for ``settle_seconds``
  (the 60 s rate window would otherwise mix two pool sizes). Warming and draining instances
  are never part of a sample.
* A new service **version** (image id) resets the estimate: the old image's capacity says
  nothing about the new one. So does a run of consistent outliers (the service changed
  without a new version).

The estimate is plain pydantic data: the autoscale tick keeps it in its state block
(``ScalingHistory.capacity``) so it survives restarts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class LearnerSettings(BaseModel):
    """How the learner weighs evidence (the defaults suit a 30 s tick)."""

    model_config = _FROZEN

    settle_seconds: float = Field(default=90.0, ge=0)
    """After the serving count changes, wait this long (rate window + scrape) before learning."""
    max_points: int = Field(default=64, ge=8, le=1024)
    half_life_seconds: float = Field(default=86_400.0, gt=0)
    max_age_seconds: float = Field(default=7 * 86_400.0, gt=0)
    min_points: int = Field(default=10, ge=3)
    saturated_cpu_percent: float = Field(default=90.0, gt=0, le=100)
    """CPU at or above this is queueing, not the linear part: not fitted."""
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    """A tick with more failed requests than this was overloaded (the gateway counted
    requests no instance served): not fitted."""
    outlier_sigmas: float = Field(default=4.0, gt=0)
    min_noise_cpu_percent: float = Field(default=2.0, gt=0)
    """Floor of the residual scale (a perfect line would otherwise reject everything)."""
    change_after_outliers: int = Field(default=8, ge=2)
    """This many outliers in a row that agree with each other: the service changed; reset."""
    min_relative_spread: float = Field(default=0.1, ge=0)
    """The fitted loads must span at least this fraction of the capacity (else the slope is
    a guess)."""
    confident_relative_error: float = Field(default=0.1, gt=0, lt=1)
    """Confidence 0.5 at this relative standard error of the capacity, 1 at zero."""
    slo_memory_seconds: float = Field(default=3600.0, gt=0)
    slo_points: int = Field(default=16, ge=1)


DEFAULT_SETTINGS = LearnerSettings()


class CapacitySample(BaseModel):
    """What one tick saw of the pool's capacity (built by :func:`capacity_sample`)."""

    model_config = _FROZEN

    at: datetime
    rps_per_instance: float = Field(ge=0)
    cpu_percent: float | None = Field(default=None, ge=0)
    slow: bool | None = None
    """p95 latency above its threshold (``None``: no latency reading)."""
    error_rate: float | None = Field(default=None, ge=0, le=1)
    serving: int = Field(ge=1)
    version: str | None = None
    warm: bool = True
    """False when an instance is warming up or draining: the count is tracked, nothing learnt."""


class CapacityPoint(BaseModel):
    model_config = _FROZEN

    at: datetime
    rps: float
    cpu: float


class SloPoint(BaseModel):
    model_config = _FROZEN

    at: datetime
    rps: float


class CapacityEstimate(BaseModel):
    """One instance's learned capacity, with the evidence it rests on."""

    model_config = _FROZEN

    version: str | None = None
    points: tuple[CapacityPoint, ...] = ()
    outliers: tuple[CapacityPoint, ...] = ()
    """The current run of rejected points (a long consistent run means the service changed)."""
    slow: tuple[SloPoint, ...] = ()
    serving: int | None = None
    serving_since: datetime | None = None
    updated_at: datetime | None = None
    rejected: int = 0
    """Outliers rejected since the last reset."""
    resets: int = 0
    # -- the fit (recomputed by ``observe``; read by ``decide`` without any arithmetic) ----
    capacity_rps: float | None = None
    """Requests/s one instance serves at 100 % CPU."""
    idle_cpu_percent: float | None = None
    samples: int = 0
    """Points the fit used (after trimming)."""
    relative_error: float | None = None
    confidence: float = 0.0
    slo_rps: float | None = None
    """Lowest per-instance rate at which p95 was above its threshold (recent, settled)."""

    def slow_rate(self, now: datetime, memory_seconds: float) -> float | None:
        """The lowest per-instance rate at which p95 was over its threshold within
        ``memory_seconds`` before ``now`` (a load this pool has shown it cannot carry)."""
        rates = [s.rps for s in self.slow if (now - s.at).total_seconds() <= memory_seconds]
        return min(rates) if rates else None

    def confident(self, threshold: float) -> bool:
        return self.capacity_rps is not None and self.confidence >= threshold

    def rps_at(self, cpu_percent: float) -> float | None:
        """The per-instance rate at which the fitted CPU reaches ``cpu_percent``."""
        if self.capacity_rps is None:
            return None
        idle = self.idle_cpu_percent or 0.0
        if cpu_percent <= idle:
            return 0.0
        return self.capacity_rps * (cpu_percent - idle) / (100.0 - idle)

    def describe(self) -> str:
        if self.capacity_rps is None:
            return f"learning capacity ({len(self.points)} samples, not enough yet)"
        text = (
            f"learned capacity {self.capacity_rps:.1f} rps/instance at 100% CPU "
            f"(confidence {self.confidence:.2f}, {self.samples} samples)"
        )
        if self.slo_rps is not None:
            text += f"; p95 over its threshold at {self.slo_rps:.1f} rps/instance"
        return text


def observe(
    estimate: CapacityEstimate,
    sample: CapacitySample | None,
    settings: LearnerSettings = DEFAULT_SETTINGS,
) -> CapacityEstimate:
    """Fold one tick's sample into the estimate (a new object; pure)."""
    if sample is None:
        return estimate
    if sample.version is not None and sample.version != estimate.version:
        # A new image: what the old one could do says nothing about this one.
        fresh = CapacityEstimate(version=sample.version, resets=estimate.resets + 1)
        if estimate.version is None and not estimate.points:
            fresh = CapacityEstimate(version=sample.version, resets=estimate.resets)
        return observe(fresh, sample, settings)
    if sample.serving != estimate.serving or not sample.warm:
        since = sample.at if sample.serving != estimate.serving else estimate.serving_since
        if not sample.warm:
            since = sample.at  # the window after a warm-up or a drain mixes pool sizes
        return estimate.model_copy(
            update={"serving": sample.serving, "serving_since": since, "updated_at": sample.at}
        )
    if (
        estimate.serving_since is not None
        and (sample.at - estimate.serving_since).total_seconds() < settings.settle_seconds
    ):
        return estimate
    slow = _remember_slow(estimate.slow, sample, settings)
    points, outliers, rejected, reset = estimate.points, estimate.outliers, estimate.rejected, 0
    cpu = sample.cpu_percent
    # Slow p95 alone does not bend the line (bursts inside the window do that); failed
    # requests and a saturated CPU do.
    linear = (
        cpu is not None
        and cpu < settings.saturated_cpu_percent
        and (sample.error_rate is None or sample.error_rate <= settings.max_error_rate)
    )
    if cpu is not None and linear:
        point = CapacityPoint(at=sample.at, rps=sample.rps_per_instance, cpu=cpu)
        if _is_outlier(estimate, point, settings):
            outliers, rejected = (*outliers, point)[-settings.change_after_outliers :], rejected + 1
            if len(outliers) >= settings.change_after_outliers and _agree(outliers, settings):
                # The service changed without a new version: start again from the new points.
                points, outliers, reset = outliers, (), 1
        else:
            points, outliers = _keep(points, point, settings), ()
    fit = _fit(points, sample.at, settings)
    return estimate.model_copy(
        update={
            "points": points,
            "outliers": outliers,
            "slow": slow,
            "rejected": 0 if reset else rejected,
            "resets": estimate.resets + reset,
            "updated_at": sample.at,
            "slo_rps": min((s.rps for s in slow), default=None),
            **fit,
        }
    )


def _remember_slow(
    slow: tuple[SloPoint, ...], sample: CapacitySample, settings: LearnerSettings
) -> tuple[SloPoint, ...]:
    kept = tuple(
        s for s in slow if (sample.at - s.at).total_seconds() <= settings.slo_memory_seconds
    )
    if sample.slow:
        kept = (*kept, SloPoint(at=sample.at, rps=sample.rps_per_instance))
    return kept[-settings.slo_points :]


def _is_outlier(
    estimate: CapacityEstimate, point: CapacityPoint, settings: LearnerSettings
) -> bool:
    if estimate.capacity_rps is None or estimate.samples < settings.min_points:
        return False
    idle = estimate.idle_cpu_percent or 0.0
    predicted = idle + (100.0 - idle) * point.rps / estimate.capacity_rps
    off = abs(point.cpu - predicted)
    if off <= settings.outlier_sigmas * settings.min_noise_cpu_percent:
        return False  # within the floor of the scale: no need to measure the noise
    scale = max(_noise(estimate), settings.min_noise_cpu_percent)
    return off > settings.outlier_sigmas * scale


def _noise(estimate: CapacityEstimate) -> float:
    """Robust residual scale (CPU %) of the kept points around the current line."""
    if estimate.capacity_rps is None or not estimate.points:
        return 0.0
    idle = estimate.idle_cpu_percent or 0.0
    slope = (100.0 - idle) / estimate.capacity_rps
    residuals = sorted(abs(p.cpu - idle - slope * p.rps) for p in estimate.points)
    return 1.4826 * residuals[len(residuals) // 2]


def _agree(points: Sequence[CapacityPoint], settings: LearnerSettings) -> bool:
    """Whether the outliers lie on one line of their own (a changed service, not noise)."""
    line = _weighted_line([(p.rps, p.cpu, 1.0) for p in points])
    if line is None:
        return False
    idle, slope = line
    worst = max(abs(p.cpu - idle - slope * p.rps) for p in points)
    return worst <= settings.outlier_sigmas * settings.min_noise_cpu_percent


@functools.lru_cache(maxsize=4096)
def _bucket(rps: float) -> int:
    """Load bands of about 10 %: the reservoir keeps the range of loads, not just the latest.
    (Cached: a point's band is asked for at every tick it is kept.)"""
    return -1000 if rps <= 0 else round(math.log(rps) / math.log(1.1))


def _keep(
    points: tuple[CapacityPoint, ...], point: CapacityPoint, settings: LearnerSettings
) -> tuple[CapacityPoint, ...]:
    at, max_age = point.at, settings.max_age_seconds
    if points and (at - points[0].at).total_seconds() <= max_age:
        kept = [*points, point]  # in time order: the oldest is young enough, so are all
    else:
        kept = [p for p in points if (at - p.at).total_seconds() <= max_age]
        kept.append(point)
    if len(kept) <= settings.max_points:
        return tuple(kept)
    bands = [_bucket(p.rps) for p in kept]
    while len(kept) > settings.max_points:
        counts: dict[int, int] = {}
        for band in bands:
            counts[band] = counts.get(band, 0) + 1
        crowded = max(counts.values())
        # Drop the oldest point of the most crowded band (never the newest point).
        victim = next(i for i, band in enumerate(bands) if counts[band] == crowded)
        del kept[victim], bands[victim]
    return tuple(kept)


def _weighted_line(data: Sequence[tuple[float, float, float]]) -> tuple[float, float] | None:
    """Weighted least squares ``y = a + b x`` over (x, y, weight); None if x does not vary.
    (Plain loops, summing left to right as ``sum`` does: a tick runs this on every fit.)"""
    total = swx = swy = 0.0
    for x, y, w in data:
        total += w
        swx += w * x
        swy += w * y
    if total <= 0:
        return None
    mx = swx / total
    my = swy / total
    sxx = sxy = 0.0
    for x, y, w in data:
        dx = x - mx
        sxx += w * dx**2
        sxy += w * dx * (y - my)
    if sxx <= 1e-12 * max(1.0, mx * mx) * total:
        return None
    b = sxy / sxx
    return my - b * mx, b


def _theil_sen(data: Sequence[tuple[float, float, float]]) -> tuple[float, float] | None:
    """Theil's line: the median slope and the median intercept, a line half the points could
    not drag (least squares follows one far-off point at a high load). The slopes are those
    of each point with the point half the range of loads further on (Theil's incomplete
    method): n/2 pairs instead of all n^2/2 keep a tick's fit well under a millisecond."""
    ordered = sorted(data)
    half = len(ordered) // 2
    slopes = sorted(
        (y2 - y1) / (x2 - x1)
        for (x1, y1, _), (x2, y2, _) in zip(ordered[:half], ordered[half:], strict=False)
        if abs(x2 - x1) > 1e-9
    )
    if not slopes:
        return None
    slope = slopes[len(slopes) // 2]
    intercepts = sorted(y - slope * x for x, y, _ in data)
    return intercepts[len(intercepts) // 2], slope


def _fit(
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
    half_life = settings.half_life_seconds
    data = [
        (p.rps, p.cpu, 0.5 ** (max(0.0, (now - p.at).total_seconds()) / half_life))
        for p in points
    ]
    line = _theil_sen(data)
    if line is None:
        return empty
    # Trim: drop points beyond 3 robust sigmas of the robust line, then least squares.
    idle, slope = line
    residuals = [abs(y - idle - slope * x) for x, y, _ in data]
    scale = max(1.4826 * sorted(residuals)[len(residuals) // 2], settings.min_noise_cpu_percent)
    limit = 3 * scale
    trimmed = [d for d, r in zip(data, residuals, strict=True) if r <= limit]
    line = _weighted_line(trimmed) if len(trimmed) >= 3 else None
    if line is None:
        return empty
    idle, slope = line
    if slope <= 0 or not 0 <= idle < 100:
        return {**empty, "samples": len(trimmed)}
    capacity = (100.0 - idle) / slope
    error = _relative_error(trimmed, idle, slope, capacity)
    loads = [x for x, _, _ in trimmed]
    spread = (max(loads) - min(loads)) / capacity
    confidence = 1.0 / (1.0 + (error / settings.confident_relative_error) ** 2)
    if len(trimmed) < settings.min_points or spread < settings.min_relative_spread:
        confidence = min(confidence, 0.25)  # a guess from a few points or one load level
    return {
        "capacity_rps": capacity,
        "idle_cpu_percent": idle,
        "samples": len(trimmed),
        "relative_error": error,
        "confidence": round(confidence, 4),
    }


def _relative_error(
    data: Sequence[tuple[float, float, float]], idle: float, slope: float, capacity: float
) -> float:
    """Standard error of the capacity (the x where the line reaches 100 %), relative to it:
    ``s / |b| x sqrt(1/n + (x0 - mean x)^2 / Sxx)`` (inverse prediction, weights as counts)."""
    n = len(data)
    total = swx = 0.0
    for x, _, w in data:
        total += w
        swx += w * x
    if n <= 2 or total <= 0:
        return math.inf
    mx = swx / total
    sxx = ss = 0.0
    for x, y, w in data:
        sxx += w * (x - mx) ** 2
        ss += w * (y - idle - slope * x) ** 2
    sxx = sxx * n / total
    ss = ss * n / total
    s = math.sqrt(ss / (n - 2))
    if sxx <= 0:
        return math.inf
    return s / abs(slope) * math.sqrt(1.0 / n + (capacity - mx) ** 2 / sxx) / capacity

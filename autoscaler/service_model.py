"""The replay's model of the service and of a request-rate trace (pure arithmetic).

Service model (every parameter is an option of ``kongstack simulate``):

* each ready instance serves ``capacity_rps`` requests/s at 100 % CPU. The CPU % a scrape
  reports is ``idle_cpu_percent`` + the rest in proportion to the load served, plus the
  jitter of a real reading (``cpu_noise_percent``, deterministic) and, once in
  ``1 / cpu_outlier_rate`` readings, a spike from something else on the host: what the
  capacity learner sees live. Memory % = ``memory_base_percent`` + ``memory_load_percent``
  x utilisation;
* an added instance is ``starting`` for ``startup_seconds`` (costs, serves nothing), a removed
  one drains for ``drain_seconds`` (costs, serves nothing);
* Kong spreads the offered load evenly over ready instances; utilisation u = demand/capacity;
  demand above capacity is **dropped**;
* p95 latency = ``base_p95_ms / (1 - u)`` (an M/M/1-like queue: it rises sharply as u nears 1;
  u >= 1 is a timeout); a second **violates the SLO** when its p95 exceeds ``slo_p95_ms`` (or,
  if ``slo_utilisation`` is set, when u exceeds it) or when any request is dropped;
* metrics are scraped every ``scrape_interval_seconds``; each value is the mean over the
  preceding ``rate_window_seconds`` (PromQL ``rate(...[1m])``); the gateway's request rate
  counts every offered request, also dropped ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ServiceModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity_rps: float = Field(default=100.0, gt=0)
    startup_seconds: int = Field(default=20, ge=0)
    drain_seconds: int = Field(default=10, ge=0)
    scrape_interval_seconds: int = Field(default=15, ge=1)
    rate_window_seconds: int = Field(default=60, ge=1)
    base_p95_ms: float = Field(default=100.0, gt=0)
    slo_p95_ms: float = Field(default=500.0, gt=0)
    slo_utilisation: float | None = Field(default=0.9, gt=0, le=1)
    idle_cpu_percent: float = Field(default=3.0, ge=0, lt=100)
    cpu_noise_percent: float = Field(default=3.0, ge=0, le=50)
    cpu_outlier_rate: float = Field(default=0.02, ge=0, le=1)
    memory_base_percent: float = Field(default=20.0, ge=0, le=100)
    memory_load_percent: float = Field(default=25.0, ge=0, le=100)

    @model_validator(mode="after")
    def _check(self) -> ServiceModel:
        if self.slo_utilisation is None and self.slo_p95_ms <= self.base_p95_ms:
            raise ValueError(
                f"slo_p95_ms ({self.slo_p95_ms}) must exceed base_p95_ms ({self.base_p95_ms})"
            )
        return self

    @property
    def max_utilisation(self) -> float:
        """The highest utilisation that still meets the SLO."""
        if self.slo_utilisation is not None:
            return self.slo_utilisation
        return 1.0 - self.base_p95_ms / self.slo_p95_ms

    def p95_ms(self, utilisation: float) -> float:
        if utilisation >= 1.0:
            return math.inf
        return self.base_p95_ms / (1.0 - utilisation)

    def cpu_percent(self, utilisation: float, reading: int, instances: int = 1) -> float:
        """The mean CPU % over ``instances`` that the ``reading``-th scrape reports at the
        served ``utilisation`` (0..1). Each instance's jitter is its own, so the mean's is
        smaller by sqrt(instances); a spike hits one instance, so it adds 1/instances."""
        u = min(max(utilisation, 0.0), 1.0)
        cpu = self.idle_cpu_percent + (100.0 - self.idle_cpu_percent) * u
        n = max(instances, 1)
        # Two uniform draws: a roughly bell-shaped jitter of +- cpu_noise_percent.
        jitter = _unit(reading, 1) + _unit(reading, 2) - 1.0
        cpu += self.cpu_noise_percent * jitter / math.sqrt(n)
        if _unit(reading, 3) < self.cpu_outlier_rate:
            cpu += (25.0 + 25.0 * _unit(reading, 4)) / n
        return min(max(cpu, 0.0), 100.0)

    def needed(self, demand: float, lo: int, hi: int) -> int:
        """Fewest ready instances that meet the SLO at ``demand``, clamped to [lo, hi]."""
        n = math.ceil(round(demand / (self.capacity_rps * self.max_utilisation), 9))
        return min(max(n, lo), hi)


def _unit(n: int, salt: int) -> float:
    """A deterministic pseudo-random number in [0, 1) for reading ``n`` (a 32-bit mix, so
    the replay stays pure and repeatable)."""
    x = (n * 0x9E3779B1 + salt * 0x85EBCA77) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x / 4294967296.0


@dataclass(frozen=True)
class Trace:
    """A request-rate trace: bins starting at ``starts`` (seconds) with mean ``rps`` each.

    Replay holds each value for its whole bin (step-hold); the last bin keeps the width of the
    one before it. Bins may be any width, also irregular or under a second.
    """

    name: str
    starts: tuple[float, ...]
    rps: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.starts or len(self.starts) != len(self.rps):
            raise ValueError(f"trace {self.name}: needs at least one (t_seconds, rps) row")
        if any(b <= a for a, b in zip(self.starts, self.starts[1:], strict=False)):
            raise ValueError(f"trace {self.name}: t_seconds must increase strictly")
        if any(r < 0 or not math.isfinite(r) for r in self.rps):
            raise ValueError(f"trace {self.name}: rps must be finite and >= 0")

    @property
    def last_width(self) -> float:
        if len(self.starts) < 2:
            return 1.0
        return self.starts[-1] - self.starts[-2]

    def per_second(self) -> list[float]:
        """Mean offered rate for each whole second from the first bin's start."""
        origin = self.starts[0]
        end = self.starts[-1] + self.last_width - origin
        seconds = [0.0] * max(1, math.ceil(round(end, 9)))
        bounds = [s - origin for s in self.starts] + [end]
        for i, rate in enumerate(self.rps):
            a, b = bounds[i], bounds[i + 1]
            first = int(math.floor(a))
            while first < b and first < len(seconds):
                overlap = min(b, first + 1) - max(a, first)
                if overlap > 0:
                    seconds[first] += rate * overlap
                first += 1
        return seconds

    def scaled(self, factor: float) -> Trace:
        return Trace(self.name, self.starts, tuple(r * factor for r in self.rps))


def minute_means(demand: Sequence[float]) -> list[float]:
    return window_means(demand, 60)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def window_means(demand: Sequence[float], window: int) -> list[float]:
    """Means over consecutive ``window``-second spans (the last may be shorter)."""
    if window <= 1:
        return list(demand)
    return [
        sum(demand[i : i + window]) / len(demand[i : i + window])
        for i in range(0, len(demand), window)
    ]


def fit_factor(
    demand: Sequence[float],
    model: ServiceModel,
    instances: int,
    q: float = 99,
    *,
    window: int = 60,
) -> float:
    """The factor that maps the q-th percentile of the trace's ``window``-second means to
    what ``instances`` serve at the SLO's utilisation (so the pool is exercised over its
    range; ``window`` 1 = per-second rates)."""
    level = percentile(window_means(demand, window), q)
    if level <= 0:
        raise ValueError(f"the trace's p{q:g} rate is 0; it cannot be fitted to a pool")
    return instances * model.capacity_rps * model.max_utilisation / level

"""What the autoscaler sees (Observation), what it decides (Decision) and what it remembers
(ScalingHistory). Plain pydantic data: no I/O, no clock.

Times are timezone-aware ``datetime`` values; the caller passes ``now`` explicitly.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from autoscaler.capacity import CapacityEstimate
from autoscaler.forecast import LoadProfile

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class InstanceState(StrEnum):
    """Lifecycle of one backend instance (the one definition: the instance drivers report
    it too). The decision core is shown the live ones (starting, ready, draining); exited and
    unhealthy instances are the pool repair's business."""

    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    """Alive (``/live`` answers) but not ready (a shared dependency, e.g. the store, is
    down): it stays in the pool and is never replaced for it; it is not made a new target."""
    DRAINING = "draining"
    EXITED = "exited"
    UNHEALTHY = "unhealthy"


class Direction(IntEnum):
    """Ordered riskiest to safest, as in Nomad's SDK: ``max()`` of two directions is the safer."""

    DOWN = -1
    NONE = 0
    UP = 1

    @property
    def label(self) -> str:
        return self.name.lower()


class Metrics(BaseModel):
    """One sample of load. Every value may be missing (``None``).

    ``sampled_at`` is when the values were measured; ``None`` means "measured for this tick"
    (fresh). A sample older than the policy's ``metric_max_age_seconds`` counts as missing.
    """

    model_config = _FROZEN

    cpu_percent: float | None = Field(default=None, ge=0)
    memory_percent: float | None = Field(default=None, ge=0)
    rps: float | None = Field(default=None, ge=0)
    p95_latency_ms: float | None = Field(default=None, ge=0)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    sampled_at: datetime | None = None

    def is_fresh(self, now: datetime, max_age_seconds: float) -> bool:
        if self.sampled_at is None:
            return True
        return (now - self.sampled_at).total_seconds() <= max_age_seconds


class InstanceView(BaseModel):
    """One backend instance: its state, when it started, and its own metrics."""

    model_config = _FROZEN

    id: str
    state: InstanceState = InstanceState.READY
    started_at: datetime
    metrics: Metrics | None = None
    host: str | None = None
    """The host it runs on, for a pool spread over several hosts (autoscaler/placement.py)."""


class Observation(BaseModel):
    """Everything ``decide`` looks at for one tick.

    ``aggregate`` holds pool-wide values measured at the gateway (total request rate, p95
    latency, error rate); per-instance values live on each ``InstanceView``.
    """

    model_config = _FROZEN

    instances: tuple[InstanceView, ...] = ()
    aggregate: Metrics = Field(default_factory=Metrics)
    version: str | None = None
    """The service's version (image id) the ready instances run: a new one resets the
    learned capacity (``autoscaler.capacity``)."""

    @property
    def active(self) -> tuple[InstanceView, ...]:
        """Instances that count toward the pool size: starting, ready or degraded, not
        draining."""
        return tuple(i for i in self.instances if i.state in (
            InstanceState.STARTING, InstanceState.READY, InstanceState.DEGRADED))


class LimitApplied(BaseModel):
    """One safety rule that changed (or held) the recommendation, and why."""

    model_config = _FROZEN

    rule: str
    before: int
    after: int
    reason: str


class Decision(BaseModel):
    """The outcome of one tick: ready to log, store and show in an artifact."""

    model_config = _FROZEN

    at: datetime
    strategy: str
    current: int
    desired: int
    direction: Direction
    recommendation: int
    """The raw recommendation before the safety rules (recorded for stabilisation)."""
    driving_metric: str | None
    metric_recommendations: dict[str, int] = Field(default_factory=dict)
    metric_values: dict[str, float] = Field(default_factory=dict)
    missing_metrics: tuple[str, ...] = ()
    limits: tuple[LimitApplied, ...] = ()
    reason: str
    dry_run: bool = False

    @property
    def changes(self) -> bool:
        return self.desired != self.current

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["direction"] = self.direction.label
        return data


class Recommendation(BaseModel):
    model_config = _FROZEN

    at: datetime
    desired: int


class ScaleEvent(BaseModel):
    model_config = _FROZEN

    at: datetime
    from_count: int
    to_count: int


class RateSample(BaseModel):
    """A past pool-wide request rate, kept for the short-term trend (forecast)."""

    model_config = _FROZEN

    at: datetime
    rps: float


class LatencySample(BaseModel):
    """A past p95 latency, kept so a latency spike must persist before it adds instances."""

    model_config = _FROZEN

    at: datetime
    p95_ms: float


class _Timed(Protocol):
    @property
    def at(self) -> datetime: ...


_T = TypeVar("_T", bound=_Timed)


def _since(items: tuple[_T, ...], horizon: datetime) -> tuple[_T, ...]:
    """Drop the entries older than ``horizon`` (entries are in time order)."""
    start = 0
    while start < len(items) and items[start].at < horizon:
        start += 1
    return items[start:] if start else items


# Memory bounds: the stabilisation window is at most 3600 s (as in the HPA); keep a little more.
_KEEP = timedelta(seconds=3700)


class ScalingHistory(BaseModel):
    """What the autoscaler remembers between ticks (JSON-serialisable; store it in a block).

    Usage: ``decision = decide(policy, obs, history, now)`` then
    ``history = history.record(decision)`` (a new object; this one is not modified).
    """

    model_config = _FROZEN

    last_scale_up_at: datetime | None = None
    last_scale_down_at: datetime | None = None
    recommendations: tuple[Recommendation, ...] = ()
    events: tuple[ScaleEvent, ...] = ()
    rates: tuple[RateSample, ...] = ()
    latencies: tuple[LatencySample, ...] = ()
    """Recent p95 latencies, one per decision (the latency trigger's persistence check)."""
    capacity: CapacityEstimate = Field(default_factory=CapacityEstimate)
    """One instance's learned capacity (``autoscaler.learning.learn`` updates it each tick)."""
    profile: LoadProfile | None = None
    """The seasonal load profile precomputed from the scaling history (by maintenance);
    None = no seasonal forecast."""

    def with_profile(self, profile: LoadProfile | None) -> ScalingHistory:
        """This history with the seasonal profile the maintenance flow computed (None: no
        seasonal forecast)."""
        return self.model_copy(update={"profile": profile})

    @property
    def last_scale_at(self) -> datetime | None:
        times = [t for t in (self.last_scale_up_at, self.last_scale_down_at) if t is not None]
        return max(times) if times else None

    def record(self, decision: Decision, *, acted: bool | None = None) -> ScalingHistory:
        """Return the history with ``decision`` remembered.

        The raw recommendation and the observed rate are always kept (they feed the
        stabilisation window and the trend). A scale event (which starts cooldowns and counts
        against rate limits) is recorded only if the decision was acted on: by default when it
        changes the count and is not a dry run; pass ``acted=False`` if acting failed.
        """
        at = decision.at
        horizon = at - _KEEP
        recs = _since(self.recommendations, horizon) + (
            Recommendation(at=at, desired=decision.recommendation),
        )
        rates = self.rates
        rate = decision.metric_values.get("rps")
        if rate is not None:
            rates = _since(rates, horizon) + (RateSample(at=at, rps=rate),)
        latencies = self.latencies
        p95 = decision.metric_values.get("latency")
        if p95 is not None:
            # Only the last few matter (persistence over consecutive ticks).
            latencies = latencies[-7:] + (LatencySample(at=at, p95_ms=p95),)
        did_act = (decision.changes and not decision.dry_run) if acted is None else acted
        events = _since(self.events, horizon)
        up_at, down_at = self.last_scale_up_at, self.last_scale_down_at
        if did_act and decision.changes:
            events += (ScaleEvent(at=at, from_count=decision.current, to_count=decision.desired),)
            if decision.direction is Direction.UP:
                up_at = at
            else:
                down_at = at
        return ScalingHistory(
            last_scale_up_at=up_at,
            last_scale_down_at=down_at,
            recommendations=recs,
            events=events,
            rates=rates,
            latencies=latencies,
            capacity=self.capacity,
            profile=self.profile,
        )

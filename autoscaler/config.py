"""The one typed autoscaling configuration: ``AutoscalePolicy``.

Field names and defaults follow the seed scripts (min 3, max 6, scale up at 80 %, scale down at
30 %, check every 30 s, 5 min cooldown). Invalid values are rejected when the policy is built,
with a ``PolicyError`` that names the field. Reading a file or the environment is the edge's
job (``tasks.tick.config``), never the core's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autoscaler.errors import PolicyError

StrategyName = Literal["proportional", "threshold"]
VictimSelector = Literal["newest", "oldest", "least_loaded"]


# Upper bounds on every count, rate and duration (a typo such as ``max_instances: 1e9`` or
# ``cooldown_seconds: .inf`` is refused naming the field, not obeyed). HARD_MAX_INSTANCES is
# also the ceiling of ``kongstack scale``, even with --force. 1,000: the largest pool this
# project has measured (issue 15: decide + placement for 1,000 instances on 50 hosts,
# docs/benchmarks.md); past it the answer is more pools, not a bigger one
# (docs/scaling-out.md, "Past 1,000 instances"). A pool's hosts bound it further at run
# time: what finds no room on them is reported as "pool full".
HARD_MAX_INSTANCES = 1_000
MAX_RPS = 1_000_000.0
MAX_LATENCY_MS = 3_600_000.0
MAX_SECONDS = 86_400.0
_POOL = f"at most {HARD_MAX_INSTANCES}"
_DAY = f"at most {MAX_SECONDS:g} s"


class AutoscalePolicy(BaseModel):
    """Autoscaling configuration. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    strategy: StrategyName = "proportional"
    min_instances: int = Field(default=3, ge=1, le=HARD_MAX_INSTANCES, description=_POOL)
    max_instances: int = Field(default=6, ge=1, le=HARD_MAX_INSTANCES, description=_POOL)

    # Seed thresholds (the `threshold` strategy uses them exactly; `proportional` uses the
    # scale-up threshold as the flapping-check ceiling for CPU/memory).
    scale_up_threshold: float = Field(default=80.0, gt=0, le=100)
    scale_down_threshold: float = Field(default=30.0, ge=0, lt=100)
    scale_up_rps: float = Field(default=150.0, gt=0, le=MAX_RPS)
    scale_down_rps: float = Field(default=50.0, ge=0, le=MAX_RPS)
    response_time_threshold_ms: float = Field(default=1000.0, gt=0, le=MAX_LATENCY_MS)
    check_interval_seconds: float = Field(default=30.0, gt=0, le=3600)
    cooldown_seconds: float = Field(default=300.0, ge=0, le=MAX_SECONDS, description=_DAY)

    # Proportional targets: desired = ceil(current x value / target), the max over metrics.
    # 68 %: inside the 60-70 % the anchors suggest for an 80 % alarm; with the 0.1 up band a
    # scale-up starts at 74.8 %, before the seed's 80 % threshold (65 % cost 3 % more
    # instance-seconds in the replay benchmark for 5 % fewer violation seconds).
    target_cpu_percent: float | None = Field(default=72.0, gt=0, le=100)
    target_memory_percent: float | None = Field(default=None, gt=0, le=100)
    """Off by default: a service's memory has a large part that does not follow the load
    (a 20 % base would hold 30 % of any pool on the memory target alone)."""
    target_rps_per_instance: float | None = Field(default=None, gt=0, le=MAX_RPS)
    learn_capacity: bool = True
    """Without ``target_rps_per_instance``: learn one instance's capacity from each tick's
    request rate, CPU and p95 (``autoscaler.capacity``) and, once confident, aim at the rate
    it serves at ``target_cpu_percent``. Until then the policy scales on CPU alone."""
    capacity_confidence: float = Field(default=0.5, gt=0, le=1)
    """Use the learned capacity from this confidence on (0.5: a relative standard error of
    10 %)."""
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    scale_up_tolerance: float | None = Field(default=None, ge=0, lt=1)
    # A wider band downwards (Azure's "out at 80, in at 60" margin): scale in only below
    # 70 % of the target; fewer direction reversals on noisy traffic
    # (docs/benchmarks.md, "Autoscaler"). With a rate target, a load whose recent rates have
    # settled (``scale_down_steady_spread``) gets the plain ``tolerance`` instead: the band is
    # a margin for noise, and a settled load has shown it has little.
    scale_down_tolerance: float | None = Field(default=0.3, ge=0, lt=1)
    seasonal_forecast: bool = True
    """Use the seasonal profile the maintenance flow precomputes (``ScalingHistory.profile``):
    scale out before a recurring rise, follow a recurring fall, no scale-in just before a
    rise. Without a profile (less than two days of history) there is no seasonal forecast."""
    forecast_seconds: float = Field(default=60.0, ge=0, le=3600)
    """Look this far ahead on the recent upward request-rate trend (rps target only; 0 = off).
    60 s covers a start-up plus a scrape; a falling trend is never extrapolated."""
    trend_window_seconds: float = Field(default=300.0, gt=0, le=3600)
    scale_down_peak_window_seconds: float = Field(default=1800.0, ge=0, le=3600)
    """Size scale-in by the highest pool request rate seen this long back (not the current
    one), in the rps recommendation and the flapping check: a dip between bursts does not
    remove instances the next burst needs (cut direction reversals by 2/3 in the replay
    benchmark). 0 = the current rate."""
    scale_down_steady_spread: float | None = Field(default=0.25, ge=0, le=10)
    """...unless the load has settled: if the rates of the last ``trend_window_seconds`` lie
    within this fraction of each other (max <= (1 + spread) x min), only they size the
    scale-in, so a step down is followed in minutes while bursty load keeps the long peak.
    None = always the long peak."""
    scale_down_steady_seconds: float = Field(default=300.0, gt=0, le=3600)
    """How long the rates must lie within ``scale_down_steady_spread`` of each other for the
    load to count as settled."""
    short_burst_seconds: float = Field(default=150.0, ge=0, le=3600)
    """On/off load: when the last 15 minutes held at least 3 bursts above twice the median
    rate lasting this long or less on average, size the pool for the sustained rate (the
    upper quartile), not the bursts: an instance added for a short burst starts when it is
    over, one held for the bursts idles between them (``autoscaler.forecast.bursts``).
    0 = off."""
    latency_trigger_ticks: int = Field(default=3, ge=1, le=8)
    """The latency trigger adds an instance only when p95 exceeded
    ``response_time_threshold_ms`` at this many consecutive decisions (1 = at once): a burst
    shorter than a tick is noise that is gone before a new instance would be ready."""
    error_rate_threshold: float | None = Field(default=None, gt=0, le=1)
    count_failed_requests: bool = True
    """When CPU is saturated (>= 90 %) and requests fail, size the CPU recommendation for the
    load including the failed ones (CPU stops at 100 %; the failures show what is missing)."""

    # Safety rules (proportional).
    scale_up_limit_instances: int = Field(default=4, ge=1, le=HARD_MAX_INSTANCES)
    scale_up_limit_percent: float = Field(default=100.0, gt=0, le=1000)
    scale_up_period_seconds: float = Field(default=30.0, gt=0, le=1800)
    scale_down_limit_instances: int | None = Field(default=None, ge=1, le=HARD_MAX_INSTANCES)
    scale_down_stabilization_seconds: float = Field(default=300.0, ge=0, le=3600)
    scale_up_stabilization_seconds: float = Field(default=0.0, ge=0, le=3600)
    scale_up_cooldown_seconds: float = Field(default=0.0, ge=0, le=MAX_SECONDS)
    scale_down_cooldown_seconds: float | None = Field(default=300.0, ge=0, le=MAX_SECONDS)
    """No scale-in within this long of any scaling action ("out fast, in gradually"; the
    seed's 300 s: with the peak window, longer only costs). None or 0: no down cooldown (the
    stabilisation window alone). Scale-up has its own ``scale_up_cooldown_seconds`` (0 s: the
    rate limit paces it). The seed's single ``cooldown_seconds`` is the threshold strategy's."""
    flapping_check: bool = True
    slow_load_memory_seconds: float = Field(default=3600.0, ge=0, le=3600)
    """With the flapping check: remember for this long the per-instance request rate at which
    p95 latency crossed its trigger; scale-in must keep the projected rate below it."""
    scale_down_latency_ratio: float = Field(default=0.6, gt=0, le=1)
    """With the flapping check: no scale-in while p95 > this x response_time_threshold_ms."""
    warmup_seconds: float = Field(default=60.0, ge=0, le=3600)
    metric_max_age_seconds: float = Field(default=90.0, gt=0, le=3600)

    victim_selection: VictimSelector = "newest"
    dry_run: bool = False

    @model_validator(mode="after")
    def _check_relations(self) -> AutoscalePolicy:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) must not exceed "
                f"max_instances ({self.max_instances})"
            )
        if self.scale_down_threshold >= self.scale_up_threshold:
            raise ValueError(
                f"scale_down_threshold ({self.scale_down_threshold}) must be below "
                f"scale_up_threshold ({self.scale_up_threshold})"
            )
        if self.scale_down_rps >= self.scale_up_rps:
            raise ValueError(
                f"scale_down_rps ({self.scale_down_rps}) must be below "
                f"scale_up_rps ({self.scale_up_rps})"
            )
        if self.strategy == "proportional" and not self.target_metrics:
            raise ValueError(
                "target_cpu_percent, target_memory_percent, target_rps_per_instance: "
                "the proportional strategy needs at least one target"
            )
        return self

    # -- derived values -------------------------------------------------------------------
    @property
    def up_tolerance(self) -> float:
        return self.tolerance if self.scale_up_tolerance is None else self.scale_up_tolerance

    @property
    def down_tolerance(self) -> float:
        return self.tolerance if self.scale_down_tolerance is None else self.scale_down_tolerance

    @property
    def down_cooldown(self) -> float:
        return self.scale_down_cooldown_seconds or 0.0

    @property
    def target_metrics(self) -> dict[str, float]:
        """The proportional targets that are switched on: metric name -> target value."""
        targets = {
            "cpu": self.target_cpu_percent,
            "memory": self.target_memory_percent,
            "rps": self.target_rps_per_instance,
        }
        return {name: value for name, value in targets.items() if value is not None}

    # -- building from plain data ---------------------------------------------------------
    @classmethod
    def build(cls, data: Mapping[str, Any], *, source: str = "policy") -> AutoscalePolicy:
        """Validate ``data``; on error raise ``PolicyError`` naming every bad field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise PolicyError(f"{source}: {_describe(exc)}", fields=_fields(exc)) from exc

    def with_overrides(
        self, overrides: Mapping[str, Any] | None, *, source: str = "parameters"
    ) -> AutoscalePolicy:
        """This policy with some fields replaced (e.g. Prefect flow parameters); ``None``
        values are ignored so optional flow parameters can be passed straight through."""
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        return self.build({**self.model_dump(), **given}, source=source)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        # Cross-field errors carry no location; their message names the fields itself.
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


def _fields(exc: ValidationError) -> tuple[str, ...]:
    return tuple(dict.fromkeys(
        ".".join(str(p) for p in err["loc"]) for err in exc.errors() if err["loc"]))

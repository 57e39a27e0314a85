"""Pool-wide load from Prometheus (HTTP API, instant PromQL queries).

Each metric is a chain of PromQL expressions tried in order, all answering in base units
(seconds, ratios; converted here to the decision core's units): the recording rule first, then
raw expressions over Kong's prometheus-plugin metrics and over the stock API's own metrics (the
rules exist per job, so each is asked for the gateway's series first, then the backends'). An
*empty* answer moves on to the next expression (the rule or the exporter may not exist here);
any other bad answer (multi-series, NaN/Inf, negative, stale, Prometheus down) marks the metric
missing with a reason, as KEDA's Prometheus scaler does. A missing metric is ``None`` in the
observation, so the policy never scales down on it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from kongstack.core.errors import MetricsError
from kongstack.core.settings import LocalSettings

# Zero traffic must read as 0, not as "no series": a counter appears only after its first
# request. `(max(up{...}) == 1) * 0` yields 0 only while at least one target is scraped, so a
# dead scrape still reads as empty (missing), never as a reassuring zero.
_STOCK_UP = '(max(up{job="stock_api"}) == 1) * 0'
_KONG_UP = '(max(up{job="kong"}) == 1) * 0'
# Only API traffic is load: probes and scrapes of /health, /ready, /metrics are not.
_API_REQUESTS = 'stock_api_requests_total{route=~"/api.*"}'

DEFAULT_QUERIES: dict[str, tuple[str, ...]] = {
    "rps": (
        'sum(service:kong_http_requests:rate$window{job="kong"})',
        'job:stock_api_requests:rate$window{job="stock_api"}',
        f"sum(rate(kong_http_requests_total[$window])) or {_KONG_UP}",
        f"sum(rate({_API_REQUESTS}[$window])) or {_STOCK_UP}",
    ),
    "p95_latency_seconds": (
        'max(service:kong_request_latency_seconds:p95_$window{job="kong"})',
        'job:stock_api_request_duration_seconds:p95_$window{job="stock_api"}',
        "0.001 * histogram_quantile(0.95,"
        " sum by (le) (rate(kong_request_latency_ms_bucket[$window])))",
        "histogram_quantile(0.95,"
        ' sum by (le) (rate(stock_api_request_duration_seconds_bucket{route=~"/api.*"}[$window])))',
    ),
    "error_rate": (
        'max(service:kong_http_request_errors_per_requests:ratio_rate$window{job="kong"})',
        'job:stock_api_request_errors_per_requests:ratio_rate$window{job="stock_api"}',
        'sum(rate(kong_http_requests_total{code=~"5.."}[$window]))'
        " / clamp_min(sum(rate(kong_http_requests_total[$window])), 1e-9)"
        f" or {_KONG_UP}",
        '(sum(rate(stock_api_requests_total{route=~"/api.*",status=~"5.."}[$window]))'
        f" or {_STOCK_UP}) / clamp_min(sum(rate({_API_REQUESTS}[$window])), 1e-9)"
        f" or {_STOCK_UP}",
    ),
    # The backends' own CPU over the rate's window, per instance (CPU-seconds per second). The
    # capacity learner pairs it with the request rate of the same window; the engine's
    # one-second CPU sample a tick takes swings far more than the load does.
    "cpu_seconds_per_instance": (
        'avg(rate(process_cpu_seconds_total{job="stock_api"}[$window]))',
    ),
}
"""Query name -> PromQL expressions, best first, answering in base units (requests/s, seconds,
ratio 0..1, CPU-seconds per second): the recording rules of tasks/monitoring/rules.py (named
for their window), then raw metrics. ``$window`` is replaced by ``PrometheusConfig.rate_window``."""

TO_AUTOSCALER: dict[str, tuple[str, float]] = {
    "p95_latency_seconds": ("p95_latency_ms", 1000.0),
    "cpu_seconds_per_instance": ("cpu_percent", 100.0),
}
"""Query name -> (``autoscaler.Metrics`` field, factor): the decision core counts latency in ms
and CPU in % of one CPU.
A query name not listed here is already the field's name and unit."""

# A p95 of NaN is what histogram_quantile returns when nothing was requested: no latency
# signal, which is "missing" (it only ever drives scale-out, so missing is harmless).


def _local_prometheus() -> str:
    settings = LocalSettings()
    return f"http://{settings.host}:{settings.prometheus_port}"


class PrometheusConfig(BaseModel):
    """Where Prometheus answers and which PromQL the autoscaler asks it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(default_factory=lambda: _local_prometheus(), description="base URL")
    timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    queries: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_QUERIES))
    rate_window: str = Field(
        default="1m", pattern=r"^[0-9]+(ms|s|m|h)$", description="range of rate() in queries"
    )
    freshness_query: str = Field(
        default='time() - max(timestamp(up{job="stock_api"} == 1))',
        description="seconds since the newest successful scrape of the backends",
    )
    max_age_seconds: float = Field(default=60.0, gt=0, le=3600,
                                   description="older data counts as stale")


@dataclass(frozen=True)
class MetricReading:
    """One metric for one tick: a finite value, or None with the reason it is missing."""

    name: str
    value: float | None
    reason: str
    query: str | None = None


@dataclass(frozen=True)
class MetricsSnapshot:
    sampled_at: datetime
    readings: dict[str, MetricReading] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        reading = self.readings.get(name)
        return reading.value if reading else None

    @property
    def missing(self) -> dict[str, str]:
        return {n: r.reason for n, r in self.readings.items() if r.value is None}

    def as_dict(self) -> dict[str, Any]:
        return {n: r.value for n, r in self.readings.items()}


class PrometheusUnavailable(MetricsError):
    """Prometheus could not be reached or answered 5xx: transient, worth a retry."""


class _Empty(Exception):
    """The expression matched no series: try the next expression in the chain."""


class _Bad(Exception):
    """The answer is unusable (multi-series, NaN, stale...): the metric is missing."""


class PrometheusReader:
    """Instant queries against ``/api/v1/query``; the transport is injectable for tests."""

    def __init__(self, config: PrometheusConfig, *, client: httpx.Client | None = None) -> None:
        self.config = config
        self._client = client or httpx.Client(
            base_url=config.url.rstrip("/"), timeout=config.timeout_seconds
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query_scalar(self, expr: str) -> float:
        """The single finite value ``expr`` evaluates to now.

        Raises PrometheusUnavailable (transient), _Empty (no series) or _Bad (unusable).
        """
        try:
            resp = self._client.get("/api/v1/query", params={"query": expr})
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(f"prometheus unreachable: {type(exc).__name__}") from exc
        if resp.status_code >= 500:
            raise PrometheusUnavailable(f"prometheus answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise _Bad(f"not JSON (HTTP {resp.status_code})") from exc
        if body.get("status") != "success":
            raise _Bad(f"{body.get('errorType', 'error')}: {body.get('error', '?')}")
        return _single_value(body.get("data") or {}, self.config.max_age_seconds)

    def read(self, name: str, exprs: tuple[str, ...]) -> MetricReading:
        """The first non-empty expression's value; missing with a reason otherwise."""
        for expr in exprs:
            try:
                return MetricReading(name, self.query_scalar(expr), "ok", expr)
            except _Empty:
                continue
            except _Bad as exc:
                return MetricReading(name, None, f"{exc} (query: {expr})", expr)
        return MetricReading(name, None, f"no series for any of {len(exprs)} queries")

    def snapshot(self) -> MetricsSnapshot:
        """Every configured metric, after checking that the scraped data is fresh."""
        now = datetime.now(UTC)
        stale = self._staleness()
        readings: dict[str, MetricReading] = {}
        for name, templates in self.config.queries.items():
            exprs = tuple(t.replace("$window", self.config.rate_window) for t in templates)
            field, factor = TO_AUTOSCALER.get(name, (name, 1.0))
            if stale is not None:
                readings[field] = MetricReading(field, None, stale)
                continue
            reading = self.read(field, exprs)
            if reading.value is not None and name == "error_rate" and reading.value > 1:
                reading = MetricReading(field, None, f"ratio {reading.value} > 1", reading.query)
            elif reading.value is not None and factor != 1.0:
                reading = dataclasses.replace(reading, value=reading.value * factor)
            readings[field] = reading
        return MetricsSnapshot(sampled_at=now, readings=readings)

    def _staleness(self) -> str | None:
        """Why the data is stale (no backend scraped recently), or None if it is fresh."""
        try:
            age = self.query_scalar(self.config.freshness_query)
        except _Empty:
            return "stale: no backend target is being scraped successfully"
        except _Bad as exc:
            return f"freshness check failed: {exc}"
        if age > self.config.max_age_seconds:
            return f"stale: newest scrape is {age:.0f}s old (> {self.config.max_age_seconds:.0f}s)"
        return None


def _single_value(data: dict[str, Any], max_age: float) -> float:
    kind = data.get("resultType")
    result = data.get("result")
    sample: Any
    if kind == "scalar":
        sample = result
    elif kind == "vector":
        if not result:
            raise _Empty()
        if len(result) > 1:
            raise _Bad(f"{len(result)} series where one was expected")
        sample = result[0].get("value")
    else:
        raise _Bad(f"unsupported result type {kind!r}")
    try:
        ts, raw = float(sample[0]), float(sample[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise _Bad(f"malformed sample {sample!r}") from exc
    if math.isnan(raw) or math.isinf(raw):
        raise _Bad(f"value is {raw}")
    if raw < 0:
        raise _Bad(f"negative value {raw}")
    if time.time() - ts > max_age:
        raise _Bad(f"sample is {time.time() - ts:.0f}s old")
    return raw


def unavailable_snapshot(config: PrometheusConfig, reason: str) -> MetricsSnapshot:
    """Every metric missing for the same reason (Prometheus down after the retries)."""
    return MetricsSnapshot(
        sampled_at=datetime.now(UTC),
        readings={f: MetricReading(f, None, reason)
                  for f in (TO_AUTOSCALER.get(n, (n, 1.0))[0] for n in config.queries)},
    )

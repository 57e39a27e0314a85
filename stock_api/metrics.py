"""Prometheus metrics of one instance (names are a cross-team contract).

Each app gets its own registry: gunicorn runs one worker process per instance, so one
registry is the whole instance, and tests can build several apps in one process.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

# Latency buckets tuned for a cached read (~1 ms) up to a slow store scan (~1 s).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self, *, instance_id: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_cpu_seconds_total / process_resident_memory_bytes of this instance's worker:
        # the per-instance CPU and memory panels and alerts read them.
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "stock_api_requests_total", "HTTP requests by route, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.duration = Histogram(
            "stock_api_request_duration_seconds", "HTTP request latency",
            ["route", "method"], buckets=BUCKETS, registry=self.registry,
        )
        self.cache = Counter(
            "stock_api_cache_requests_total", "Cache lookups by result (hit, miss, error)",
            ["result"], registry=self.registry,
        )
        self.in_flight = Gauge(
            "stock_api_in_flight_requests", "Requests being served now", registry=self.registry
        )
        self.info = Gauge(
            "stock_api_instance_info", "Always 1; labels identify the instance",
            ["instance_id", "version"], registry=self.registry,
        )
        self.info.labels(instance_id=instance_id, version=version).set(1)
        for result in ("hit", "miss", "error"):
            self.cache.labels(result=result)  # export zeros so rates exist from the start

    def cache_result(self, result: str) -> None:
        self.cache.labels(result=result).inc()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.duration.labels(route=route, method=method).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus answers the autoscaler must not trust: each becomes a *missing* metric with a
reason (so the policy never scales in on it), as KEDA's Prometheus scaler does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tasks.monitoring.rules import RecordedNames
from tasks.tick.prometheus import (
    DEFAULT_QUERIES,
    MetricsSnapshot,
    PrometheusConfig,
    PrometheusReader,
    PrometheusUnavailable,
    unavailable_snapshot,
)

Answer = Callable[[str], dict[str, Any]]


def vector(*values: str, age: float = 0.0) -> dict[str, Any]:
    """An instant-vector answer; its sample time is set when it is served (``stamped``), not
    when the test module is collected, which can be minutes earlier in a full run."""
    return {"status": "success", "_age": age, "data": {"resultType": "vector", "result": [
        {"metric": {"i": str(n)}, "value": [None, v]} for n, v in enumerate(values)]}}


def stamped(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer as Prometheus would send it now: samples ``_age`` seconds old."""
    if "_age" not in answer:
        return answer
    ts = time.time() - answer["_age"]
    result = [{**item, "value": [ts, item["value"][1]]} for item in answer["data"]["result"]]
    return {"status": answer["status"], "data": {**answer["data"], "result": result}}


FRESH = vector("1.5")  # the freshness query: newest scrape 1.5 s ago


def reader(answers: dict[str, dict[str, Any]], *, queries: dict[str, tuple[str, ...]],
           default: dict[str, Any] | None = None) -> PrometheusReader:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        expr = request.url.params["query"]
        seen.append(expr)
        if expr.startswith("time() -"):
            return httpx.Response(200, json=stamped(answers.get("freshness", FRESH)))
        return httpx.Response(200, json=stamped(answers.get(expr, default or vector())))

    cfg = PrometheusConfig(url="http://prom.test", queries=queries, max_age_seconds=60)
    r = PrometheusReader(cfg, client=httpx.Client(base_url=cfg.url,
                                                  transport=httpx.MockTransport(handle)))
    r.seen = seen  # type: ignore[attr-defined]
    return r


ONE: dict[str, tuple[str, ...]] = {"rps": ("rule", "raw")}


@pytest.mark.parametrize(
    ("answers", "value", "why"),
    [
        pytest.param({"rule": vector("42.5")}, 42.5, "ok", id="rule answers"),
        pytest.param({"rule": vector(), "raw": vector("7")}, 7.0, "ok",
                     id="empty rule falls back to the raw expression"),
        pytest.param({"rule": vector(), "raw": vector()}, None, "no series",
                     id="nothing anywhere is missing"),
        pytest.param({"rule": vector("1", "2")}, None, "2 series",
                     id="multi-series is missing, not summed"),
        pytest.param({"rule": vector("NaN")}, None, "nan", id="NaN is missing"),
        pytest.param({"rule": vector("+Inf")}, None, "inf", id="Inf is missing"),
        pytest.param({"rule": vector("-3")}, None, "negative", id="negative is missing"),
        pytest.param({"rule": vector("5", age=600)}, None, "old", id="old sample is missing"),
        pytest.param({"rule": {"status": "error", "errorType": "bad_data", "error": "parse"}},
                     None, "bad_data", id="query error is missing"),
        pytest.param({"rule": {"status": "success",
                               "data": {"resultType": "matrix", "result": []}}},
                     None, "unsupported", id="a range result is missing"),
    ],
)
def test_bad_answers_mark_the_metric_missing(
    answers: dict[str, dict[str, Any]], value: float | None, why: str
) -> None:
    snap = reader(answers, queries=ONE).snapshot()
    reading = snap.readings["rps"]
    assert reading.value == value
    assert why.lower() in reading.reason.lower()


def test_stale_scrapes_make_every_metric_missing() -> None:
    r = reader({"freshness": vector("300"), "rule": vector("10")}, queries=ONE)
    snap = r.snapshot()
    assert snap.value("rps") is None
    assert "stale" in snap.missing["rps"]
    assert r.seen == ['time() - max(timestamp(up{job="stock_api"} == 1))']  # type: ignore[attr-defined]


def test_no_backend_scraped_is_stale() -> None:
    snap = reader({"freshness": vector(), "rule": vector("10")}, queries=ONE).snapshot()
    assert "no backend target" in snap.missing["rps"]


def test_error_ratio_above_one_is_rejected() -> None:
    snap = reader({"e": vector("1.5")}, queries={"error_rate": ("e",)}).snapshot()
    assert snap.value("error_rate") is None


def test_rate_window_is_substituted() -> None:
    r = reader({}, queries={"rps": ("sum(rate(x[$window]))",)}, default=vector("3"))
    r.config = r.config.model_copy(update={"rate_window": "15s"})
    r.snapshot()
    assert "sum(rate(x[15s]))" in r.seen  # type: ignore[attr-defined]


def test_prometheus_down_is_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    cfg = PrometheusConfig(url="http://prom.test", queries=ONE)
    r = PrometheusReader(cfg, client=httpx.Client(base_url=cfg.url,
                                                  transport=httpx.MockTransport(refuse)))
    with pytest.raises(PrometheusUnavailable):
        r.snapshot()
    down = unavailable_snapshot(cfg, "prometheus unavailable: refused")
    assert isinstance(down, MetricsSnapshot)
    assert down.missing == {"rps": "prometheus unavailable: refused"}


def test_5xx_is_transient() -> None:
    r = PrometheusReader(PrometheusConfig(url="http://p", queries=ONE), client=httpx.Client(
        base_url="http://p", transport=httpx.MockTransport(lambda req: httpx.Response(503))))
    with pytest.raises(PrometheusUnavailable):
        r.query_scalar("up")


def test_default_queries_prefer_the_recording_rules_then_raw_metrics() -> None:
    cfg = PrometheusConfig()
    names = RecordedNames(cfg.rate_window)
    rules = {"rps": (names.kong_request_rate, names.request_rate),
             "p95_latency_seconds": (names.kong_latency_p95, names.latency_p95),
             "error_rate": (names.kong_error_ratio, names.error_ratio)}
    for name, (gateway_rule, backend_rule) in rules.items():
        chain = [q.replace("$window", cfg.rate_window) for q in cfg.queries[name]]
        assert chain[0].startswith((f"sum({gateway_rule}{{", f"max({gateway_rule}{{"))
        assert chain[1].startswith(backend_rule + "{")
        assert any("stock_api_" in q for q in chain[2:])
        assert any("kong_" in q for q in chain[2:])


def test_latency_is_asked_in_seconds_and_handed_on_in_milliseconds() -> None:
    snap = reader({"p95": vector("0.25")},
                  queries={"p95_latency_seconds": ("p95",)}).snapshot()
    assert snap.value("p95_latency_ms") == 250.0
    assert "p95_latency_seconds" not in snap.readings
    down = unavailable_snapshot(PrometheusConfig(), "prometheus down")
    assert set(down.readings) == {"rps", "p95_latency_ms", "error_rate", "cpu_percent"}


def test_backend_cpu_is_asked_over_the_rate_window_and_handed_on_in_percent() -> None:
    """The learner pairs this CPU with the request rate: same window, % of one CPU."""
    r = reader({}, queries={"cpu_seconds_per_instance":
                            DEFAULT_QUERIES["cpu_seconds_per_instance"]}, default=vector("0.375"))
    r.config = r.config.model_copy(update={"rate_window": "2m"})
    snap = r.snapshot()
    assert snap.value("cpu_percent") == 37.5
    assert 'avg(rate(process_cpu_seconds_total{job="stock_api"}[2m]))' in r.seen  # type: ignore[attr-defined]


def test_recording_rule_names_follow_the_rate_window() -> None:
    r = reader({}, queries={"rps": DEFAULT_QUERIES["rps"][1:2]}, default=vector("3"))
    r.config = r.config.model_copy(update={"rate_window": "30s"})
    assert r.snapshot().value("rps") == 3.0
    assert RecordedNames("30s").request_rate + '{job="stock_api"}' in r.seen  # type: ignore[attr-defined]


def test_unknown_config_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="rate_windw"):
        PrometheusConfig.model_validate({"rate_windw": "1m"})

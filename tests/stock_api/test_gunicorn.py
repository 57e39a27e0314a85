"""The API as it is deployed: gunicorn, a real Redis, the embedded store, real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kongstack.core.procs import pid_alive, port_open, wait_until
from kongstack.core.settings import REPO_ROOT
from tests.stock_api.conftest import SMALL, valid_stock
from tests.stock_api.gunicorn_proc import ApiProcess, api_process, gunicorn_argv


@pytest.fixture
def api(data_dir: Path, redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    env = {"REDIS_URL": redis_url, "STOCK_API_DATA_DIR": str(data_dir),
           "STOCK_API_CACHE_PREFIX": f"g{uuid.uuid4().hex[:10]}"}
    with api_process(tmp_path, env) as proc:
        yield proc


def _metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in (labels or {}).items()):
                return float(sample.value)
    raise AssertionError(f"{name}{labels or ''} not exported")


def test_serves_crud_metrics_and_json_logs(api: ApiProcess) -> None:
    with httpx.Client(base_url=api.base, timeout=10) as http:
        assert http.get("/ready").json()["checks"] == {"cache": "ok", "store": "ok"}
        listing = http.get("/api/stocks", params={"per_page": 10}).json()
        assert listing["total"] == SMALL.symbols
        symbol = listing["items"][0]["symbol"]
        assert http.get(f"/api/stocks/{symbol}").status_code == 200
        assert http.get(f"/api/stocks/{symbol}").status_code == 200
        created = http.post("/api/stocks", json=valid_stock("GUNI"),
                            headers={"Kong-Request-ID": "kong-req-7"})
        assert created.status_code == 201
        assert created.headers["X-Correlation-ID"] == "kong-req-7"
        assert http.get("/api/stocks", params={"per_page": 10}).json()["total"] == SMALL.symbols + 1
        assert http.delete("/api/stocks/GUNI").status_code == 204
        assert http.post("/api/stocks", content=b"{nope",
                         headers={"Content-Type": "application/json"}).status_code == 400
        metrics = http.get("/metrics")

    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    ok = {"route": "/api/stocks/<symbol>", "method": "GET", "status": "200"}
    assert _metric(text, "stock_api_requests_total", ok) == 2
    assert _metric(text, "stock_api_requests_total",
                   {"route": "/api/stocks", "method": "POST", "status": "400"}) == 1
    assert _metric(text, "stock_api_cache_requests_total", {"result": "hit"}) >= 1
    assert _metric(text, "stock_api_cache_requests_total", {"result": "miss"}) >= 2
    assert _metric(text, "stock_api_cache_requests_total", {"result": "error"}) == 0
    assert _metric(text, "stock_api_request_duration_seconds_count",
                   {"route": "/api/stocks/<symbol>", "method": "GET"}) == 2
    assert _metric(text, "stock_api_in_flight_requests") == 1
    assert _metric(text, "stock_api_instance_info",
                   {"instance_id": f"it-{api.port}", "version": "0.1.0"}) == 1

    lines = [json.loads(line) for line in api.log_file.read_text().splitlines()]
    post = next(e for e in lines if e.get("correlation_id") == "kong-req-7")
    assert (post["method"], post["route"], post["status"]) == ("POST", "/api/stocks", 201)
    assert post["instance_id"] == f"it-{api.port}" and post["remote_addr"] == "127.0.0.1"
    # gunicorn's own (non-JSON) access log is off: every request line is the app's JSON.
    assert not any(line.startswith("127.0.0.1 - ")
                   for line in api.out_file.read_text().splitlines())


def test_sigterm_finishes_in_flight_request_and_refuses_new_ones(
    data_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    env = {"REDIS_URL": redis_url, "STOCK_API_DATA_DIR": str(data_dir),
           "STOCK_API_DEBUG_ENDPOINTS": "true", "GRACEFUL_TIMEOUT": "20"}
    with api_process(tmp_path, env) as api:
        pid = api.daemon.pid()
        assert pid is not None
        outcome: dict[str, object] = {}

        def slow_request() -> None:
            started = time.monotonic()
            try:
                resp = httpx.get(f"{api.base}/debug/slow", params={"seconds": 5}, timeout=30)
                outcome["status"] = resp.status_code
            except httpx.HTTPError as exc:
                outcome["error"] = repr(exc)
            outcome["seconds"] = time.monotonic() - started

        keepalive = httpx.Client(base_url=api.base, timeout=5)
        assert keepalive.get("/ready").status_code == 200  # opens a kept-alive connection
        slow = threading.Thread(target=slow_request)
        slow.start()
        wait_until(  # the slow request is being served (the scrape itself is the other one)
            lambda: _metric(keepalive.get("/metrics").text, "stock_api_in_flight_requests") >= 2,
            timeout=10, what="slow request in flight",
        )

        os.kill(pid, signal.SIGTERM)
        signalled = time.monotonic()
        # Draining: readiness fails on the open connection, and new connections are refused.
        wait_until(lambda: keepalive.get("/ready").status_code == 503, timeout=5,
                   what="/ready 503 while draining")
        wait_until(lambda: not port_open("127.0.0.1", api.port), timeout=5,
                   what="listener closed")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{api.base}/health", timeout=2)
        assert slow.is_alive(), "the in-flight request must still be running"

        slow.join(timeout=30)
        keepalive.close()
        assert outcome.get("status") == 200, outcome
        assert float(outcome["seconds"]) >= 5.0  # type: ignore[arg-type]
        wait_until(lambda: not pid_alive(pid), timeout=20, what="gunicorn exit")
        assert time.monotonic() - signalled < 20


def test_invalid_environment_fails_fast_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "PORT": "not-a-port", "STOCK_API_DATA_DIR": str(tmp_path)}
    result = subprocess.run(gunicorn_argv(), env=env, cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert "PORT" in result.stdout + result.stderr


def test_body_limits_hold_for_chunked_bodies_too(api: ApiProcess) -> None:
    """Without Content-Length (chunked), the size and depth limits still answer 413/400
    naming the limit: gunicorn marks the stream terminated and werkzeug counts the bytes."""

    def chunks(data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), 4096):
            yield data[i:i + 4096]

    with httpx.Client(base_url=api.base, timeout=10) as http:
        big = http.post("/api/stocks", content=chunks(b"[" * 100_000),
                        headers={"Content-Type": "application/json"})
        assert big.status_code == 413, big.text
        assert "limit of 16384 bytes" in big.json()["error"]["message"]
        deep = http.post("/api/stocks", content=chunks(b"[" * 10_000),
                         headers={"Content-Type": "application/json"})
        assert deep.status_code == 400 and deep.json()["error"]["code"] == "too_deep"
        assert http.get("/live").status_code == 200  # the worker lived through both

"""Redis dies mid-test: reads keep answering 200 from the store, counted as cache errors;
the instance stays ready (degraded, not unready) and says so in /ready and its metrics."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from kongstack.core.procs import Daemon, free_port, port_open
from stock_api.app import create_app
from tests.stock_api.conftest import cache_count, dependency_up, make_config, valid_stock
from tests.support.services import require_binary


def _start_redis(daemon: Daemon, port: int, workdir: Path) -> None:
    daemon.start(
        [require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        ready=lambda: port_open("127.0.0.1", port), log_file=workdir / "redis.log", timeout=15,
    )


def test_reads_survive_redis_outage_and_recover(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    redis = Daemon(name=f"redis-down-{port}", run_dir=tmp_path)
    _start_redis(redis, port, tmp_path)
    try:
        app = create_app(make_config(
            data_dir, f"redis://127.0.0.1:{port}/0", cache_retry_after_seconds=0.0
        ))
        client = app.test_client()
        items = client.get("/api/stocks?per_page=5").get_json()["items"]
        symbols = [s["symbol"] for s in items]
        warm = client.get(f"/api/stocks/{symbols[0]}").get_json()
        client.get(f"/api/stocks/{symbols[0]}")
        assert cache_count(app, "hit") >= 1
        errors_before = cache_count(app, "error")

        redis.stop(grace=5)
        assert not port_open("127.0.0.1", port)

        for symbol in symbols:  # cached and uncached symbols alike
            resp = client.get(f"/api/stocks/{symbol}")
            assert resp.status_code == 200
            assert resp.get_json()["symbol"] == symbol
        assert client.get(f"/api/stocks/{symbols[0]}").get_json() == warm
        assert client.get("/api/stocks?per_page=5").status_code == 200
        assert client.get(f"/api/stocks/{symbols[1]}/history?range=1m").status_code == 200
        assert cache_count(app, "error") >= errors_before + len(symbols) + 3

        # Writes still land in the store; only the invalidation is lost (TTL bounds it).
        body = {k: v for k, v in valid_stock(price=3.25).items() if k != "symbol"}
        assert client.put(f"/api/stocks/{symbols[2]}", json=body).status_code == 200
        assert client.get(f"/api/stocks/{symbols[2]}").get_json()["price"] == 3.25

        # Still ready (reads come from the store), but degraded, and the gauge says why.
        ready = client.get("/ready")
        assert ready.status_code == 200
        body = ready.get_json()
        assert body["status"] == "degraded" and body["degraded"] == ["redis"]
        assert body["dependencies"] == {"redis": "down", "store": "up"}
        assert body["checks"]["cache"].startswith("error") and body["checks"]["store"] == "ok"
        assert dependency_up(client, "redis") == 0 and dependency_up(client, "store") == 1
        assert client.get("/live").status_code == 200
        assert client.get("/health").status_code == 200

        _start_redis(redis, port, tmp_path)
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
        assert ready.get_json()["degraded"] == []
        assert dependency_up(client, "redis") == 1
        hits = cache_count(app, "hit")
        client.get(f"/api/stocks/{symbols[3]}")
        client.get(f"/api/stocks/{symbols[3]}")
        assert cache_count(app, "hit") == hits + 1
    finally:
        redis.stop(grace=5)


def test_skip_window_avoids_paying_redis_per_request(data_dir: Path, tmp_path: Path) -> None:
    """With Redis unreachable, the first failure opens a window in which Redis isn't tried."""
    port = free_port()  # nothing listens here
    app = create_app(make_config(
        data_dir, f"redis://127.0.0.1:{port}/0", cache_retry_after_seconds=60.0
    ))
    client = app.test_client()
    symbol = client.get("/api/stocks?per_page=1").get_json()["items"][0]["symbol"]
    cache = app.extensions["stock_api"].cache
    connects = 0
    original = cache._redis.connection_pool.get_connection

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal connects
        connects += 1
        return original(*args, **kwargs)

    cache._redis.connection_pool.get_connection = counting
    for _ in range(10):
        assert client.get(f"/api/stocks/{symbol}").status_code == 200
    assert connects == 0
    assert cache_count(app, "error") >= 11


def test_hung_redis_costs_one_timeout_then_is_skipped(data_dir: Path, tmp_path: Path) -> None:
    """A Redis that accepts but never answers (SIGSTOP) is cut off by the socket timeout."""
    port = free_port()
    redis = Daemon(name=f"redis-hung-{port}", run_dir=tmp_path)
    _start_redis(redis, port, tmp_path)
    pid = redis.pid()
    assert pid is not None
    try:
        app = create_app(make_config(
            data_dir, f"redis://127.0.0.1:{port}/0", redis_timeout_seconds=0.2,
            cache_retry_after_seconds=60.0,
        ))
        client = app.test_client()
        symbols = [s["symbol"] for s in client.get("/api/stocks?per_page=3").get_json()["items"]]
        os.kill(pid, signal.SIGSTOP)
        errors = cache_count(app, "error")
        for symbol in symbols:
            resp = client.get(f"/api/stocks/{symbol}")
            assert resp.status_code == 200 and resp.get_json()["symbol"] == symbol
        assert cache_count(app, "error") == errors + len(symbols)
        assert cache_count(app, "hit") == 0
        assert dependency_up(client, "redis") == 0  # the lookups' errors already said so
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.get_json()["degraded"] == ["redis"]
    finally:
        os.kill(pid, signal.SIGCONT)
        redis.stop(grace=5)


def test_an_instance_started_without_redis_is_ready_and_degraded(data_dir: Path) -> None:
    """A fresh instance whose Redis never answered serves from the store: ready, degraded."""
    app = create_app(make_config(data_dir, f"redis://127.0.0.1:{free_port()}/0"))
    client = app.test_client()
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "degraded" and body["degraded"] == ["redis"]
    assert body["checks"]["cache"].startswith("error") and body["checks"]["store"] == "ok"
    assert client.get("/api/stocks?per_page=2").status_code == 200

"""The store becomes unreachable mid-test: the instance stays alive, reports itself unready
and degraded (the body and the gauge name the store), keeps answering cached reads from
Redis, answers the rest 503, and recovers on its own when the store is back."""

from __future__ import annotations

from pathlib import Path

from kongstack.core.procs import free_port
from stock_api.app import create_app
from tests.stock_api.conftest import cache_count, dependency_up, make_config
from tests.support.faults import store_unreachable


def test_store_outage_degrades_serves_cached_reads_and_recovers(
    data_dir: Path, redis_url: str
) -> None:
    app = create_app(make_config(data_dir, redis_url))
    client = app.test_client()
    symbols = [s["symbol"] for s in client.get("/api/stocks?per_page=4").get_json()["items"]]
    warm, cold = symbols[0], symbols[3]
    cached = client.get(f"/api/stocks/{warm}").get_json()  # now in Redis
    assert dependency_up(client, "store") == 1

    with store_unreachable(data_dir):
        hits = cache_count(app, "hit")
        resp = client.get(f"/api/stocks/{warm}")
        assert resp.status_code == 200 and resp.get_json() == cached  # served from Redis
        assert cache_count(app, "hit") == hits + 1
        missing = client.get(f"/api/stocks/{cold}")
        assert missing.status_code == 503
        assert missing.get_json()["error"]["code"] == "store_unavailable"
        assert dependency_up(client, "store") == 0  # the failed read already said so

        ready = client.get("/ready")
        assert ready.status_code == 503
        body = ready.get_json()
        assert body["error"]["failing"] == ["store"]
        assert body["degraded"] == ["store"]
        assert body["dependencies"] == {"redis": "up", "store": "down"}
        assert body["checks"]["store"] == "error: DatabaseError"
        assert client.get("/live").status_code == 200  # alive: nothing to restart

    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    assert dependency_up(client, "store") == 1
    assert client.get(f"/api/stocks/{cold}").status_code == 200


def test_both_dependencies_down_still_alive_and_says_which(data_dir: Path) -> None:
    app = create_app(make_config(data_dir, f"redis://127.0.0.1:{free_port()}/0"))
    client = app.test_client()
    with store_unreachable(data_dir):
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.get_json()["degraded"] == ["redis", "store"]
        assert ready.get_json()["error"]["failing"] == ["store"]  # Redis alone never fails it
        assert client.get("/live").status_code == 200
        assert dependency_up(client, "redis") == 0 and dependency_up(client, "store") == 0

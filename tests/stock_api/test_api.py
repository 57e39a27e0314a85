"""The API's behaviour through Flask's test client, with a real Redis and the embedded store."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stock_api.app import create_app
from tests.stock_api.conftest import SMALL, cache_count, make_config, services_of, valid_stock


def _all_symbols(client: FlaskClient) -> list[str]:
    return [s["symbol"] for s in client.get("/api/stocks?per_page=200").get_json()["items"]]


def test_list_pages_cover_every_stock_once_in_order(client: FlaskClient) -> None:
    seen: list[str] = []
    first = client.get("/api/stocks?per_page=15").get_json()
    assert (first["total"], first["pages"], first["page"]) == (SMALL.symbols, 3, 1)
    for page in (1, 2, 3):
        body = client.get(f"/api/stocks?per_page=15&page={page}").get_json()
        seen += [s["symbol"] for s in body["items"]]
    assert len(seen) == SMALL.symbols == len(set(seen))
    assert seen == sorted(seen)
    beyond = client.get("/api/stocks?per_page=15&page=4").get_json()
    assert beyond["items"] == [] and beyond["total"] == SMALL.symbols


def test_filters_and_sort(client: FlaskClient) -> None:
    everything = client.get("/api/stocks?per_page=200").get_json()["items"]
    exchange = everything[0]["exchange"]
    only = client.get(f"/api/stocks?exchange={exchange}&per_page=200").get_json()
    assert only["total"] == sum(1 for s in everything if s["exchange"] == exchange)
    assert {s["exchange"] for s in only["items"]} == {exchange}

    by_price = client.get("/api/stocks?min_price=20&max_price=80&sort=-price&per_page=200")
    prices = [s["price"] for s in by_price.get_json()["items"]]
    assert prices == sorted(prices, reverse=True)
    assert all(20 <= p <= 80 for p in prices)
    assert len(prices) == sum(1 for s in everything if 20 <= s["price"] <= 80)

    word = everything[3]["name"].split()[1].lower()
    found = client.get(f"/api/stocks?q={word}&per_page=200").get_json()["items"]
    assert found and all(word in s["name"].lower() or word in s["symbol"].lower() for s in found)
    sector = client.get("/api/stocks?sector=Energy&per_page=200").get_json()["items"]
    assert all(s["sector"] == "Energy" for s in sector)


def test_get_one_stock_case_insensitive(client: FlaskClient) -> None:
    symbol = _all_symbols(client)[5]
    body = client.get(f"/api/stocks/{symbol.lower()}").get_json()
    assert body["symbol"] == symbol
    assert set(body) >= {"name", "exchange", "sector", "currency", "price", "volume"}


def test_create_read_replace_delete_with_cache_invalidation(client: FlaskClient) -> None:
    # Warm every cache the write must invalidate.
    assert client.get("/api/stocks?per_page=200").get_json()["total"] == SMALL.symbols
    assert client.get("/api/stocks/NEWCO").status_code == 404

    created = client.post("/api/stocks", json=valid_stock())
    assert created.status_code == 201
    assert created.headers["Location"] == "/api/stocks/NEWCO"
    assert client.get("/api/stocks/NEWCO").get_json()["price"] == 12.5
    assert client.get("/api/stocks?per_page=200").get_json()["total"] == SMALL.symbols + 1
    assert client.get("/api/stocks/NEWCO/history").get_json()["bars"] == []

    replacement = {k: v for k, v in valid_stock(price=99.0, name="Renamed Co").items()
                   if k != "symbol"}
    replaced = client.put("/api/stocks/NEWCO", json=replacement)
    assert replaced.status_code == 200
    again = client.get("/api/stocks/NEWCO").get_json()  # was cached with the old price
    assert (again["price"], again["name"]) == (99.0, "Renamed Co")
    listed = client.get("/api/stocks?q=renamed").get_json()["items"]
    assert [s["symbol"] for s in listed] == ["NEWCO"]

    assert client.delete("/api/stocks/NEWCO").status_code == 204
    assert client.get("/api/stocks/NEWCO").status_code == 404
    assert client.get("/api/stocks/NEWCO/history").status_code == 404
    assert client.get("/api/stocks?per_page=200").get_json()["total"] == SMALL.symbols


def test_put_accepts_its_own_symbol_in_the_body(client: FlaskClient) -> None:
    symbol = _all_symbols(client)[0]
    resp = client.put(f"/api/stocks/{symbol}", json=valid_stock(symbol=symbol, price=7.0))
    assert resp.status_code == 200
    assert client.get(f"/api/stocks/{symbol}").get_json()["price"] == 7.0


def test_history_ranges_and_limit(client: FlaskClient) -> None:
    symbol = _all_symbols(client)[2]
    full = client.get(f"/api/stocks/{symbol}/history?range=max").get_json()
    dates = [b["date"] for b in full["bars"]]
    assert dates == sorted(dates) and len(dates) == full["count"]
    assert all(date.fromisoformat(d).weekday() < 5 for d in dates)
    assert dates[-1] == SMALL.end

    month = client.get(f"/api/stocks/{symbol}/history?range=1m").get_json()["bars"]
    cutoff = date.fromisoformat(SMALL.end) - timedelta(days=31)
    assert month and all(date.fromisoformat(b["date"]) > cutoff for b in month)
    assert len(month) < len(dates)

    last3 = client.get(f"/api/stocks/{symbol}/history?range=max&limit=3").get_json()["bars"]
    assert last3 == full["bars"][-3:]
    bar = last3[-1]
    assert bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"])
    assert max(bar["open"], bar["close"]) <= bar["high"]


def test_cache_hits_after_first_read(app: Flask, client: FlaskClient) -> None:
    symbol = _all_symbols(client)[1]
    misses, hits = cache_count(app, "miss"), cache_count(app, "hit")
    first = client.get(f"/api/stocks/{symbol}").get_json()
    assert cache_count(app, "miss") == misses + 1
    second = client.get(f"/api/stocks/{symbol}").get_json()
    assert cache_count(app, "hit") == hits + 1
    assert first == second
    ttl = services_of(app).cache._redis.ttl(services_of(app).cache.stock_key(symbol))
    assert 0 < int(ttl) <= 60  # type: ignore[arg-type]


def test_cache_disabled_reads_the_store_every_time(
    data_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    app = create_app(make_config(data_dir, redis_url, cache_enabled=False))
    client = app.test_client()
    symbol = _all_symbols(client)[0]
    client.get(f"/api/stocks/{symbol}")
    client.get(f"/api/stocks/{symbol}")
    assert sum(cache_count(app, r) for r in ("hit", "miss", "error")) == 0
    assert client.get("/ready").get_json()["checks"]["cache"] == "disabled"


def test_api_key_guards_the_api_but_not_probes(data_dir: Path, redis_url: str) -> None:
    app = create_app(make_config(data_dir, redis_url, api_key="s3cret-key"))
    client = app.test_client()
    denied = client.get("/api/stocks")
    assert denied.status_code == 401
    assert denied.get_json()["error"]["code"] == "unauthorized"
    assert "s3cret" not in denied.get_data(as_text=True)
    assert client.get("/api/stocks", headers={"apikey": "wrong"}).status_code == 401
    assert client.post("/api/stocks", json=valid_stock()).status_code == 401
    assert client.get("/api/stocks/NEWCO", headers={"apikey": "s3cret-key"}).status_code == 404
    assert client.get("/api/stocks", headers={"apikey": "s3cret-key"}).status_code == 200
    for path in ("/health", "/ready", "/metrics"):
        assert client.get(path).status_code == 200, path


GATEWAY_SECRET = "gw-0123456789abcdef"


def test_gateway_secret_is_required_on_the_api_but_not_on_probes(
    data_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    """An instance behind a gateway answers /api only to requests carrying the gateway's
    secret: a host that reaches the instance directly cannot bypass key-auth or limits."""
    app = create_app(make_config(data_dir, redis_url, gateway_secret=GATEWAY_SECRET,
                                 api_key="s3cret-key", log_file=tmp_path / "api.log"))
    client = app.test_client()
    via_gateway = {"X-Gateway-Secret": GATEWAY_SECRET, "apikey": "s3cret-key"}
    for method, path in (("GET", "/api/stocks"), ("POST", "/api/stocks"),
                         ("DELETE", "/api/stocks/ZZZZ"), ("GET", "/no/such/page")):
        direct = client.open(path, method=method, json=valid_stock(),
                             headers={"apikey": "s3cret-key"})
        assert direct.status_code == 403, (method, path)
        assert direct.get_json()["error"]["code"] == "gateway_required"
        assert "X-Gateway-Secret" in direct.get_json()["error"]["message"]
    wrong = client.get("/api/stocks", headers={**via_gateway, "X-Gateway-Secret": "nope"})
    assert wrong.status_code == 403
    prefix = client.get("/api/stocks", headers={**via_gateway,
                                                "X-Gateway-Secret": GATEWAY_SECRET[:-1]})
    assert prefix.status_code == 403
    assert client.get("/api/stocks", headers=via_gateway).status_code == 200
    # the gateway's secret does not replace the client's key
    no_key = client.get("/api/stocks", headers={"X-Gateway-Secret": GATEWAY_SECRET})
    assert no_key.status_code == 401
    for path in ("/live", "/health", "/ready", "/metrics"):  # probes and Prometheus
        assert client.get(path).status_code == 200, path
    logged = (tmp_path / "api.log").read_text()
    assert GATEWAY_SECRET not in logged and GATEWAY_SECRET not in client.get(
        "/metrics").get_data(as_text=True)


def test_gateway_secret_too_short_is_a_config_error(data_dir: Path, redis_url: str) -> None:
    with pytest.raises(ValueError, match="gateway_secret"):
        make_config(data_dir, redis_url, gateway_secret="short")


def test_correlation_id_is_echoed_and_logged(client: FlaskClient, tmp_path: Path) -> None:
    kong = client.get("/health", headers={"Kong-Request-ID": "abc123#1"})
    assert kong.headers["X-Correlation-ID"] == "abc123#1"
    kong3 = client.get("/health",
                       headers={"X-Kong-Request-Id": "5b1e0c0fd1", "X-Correlation-ID": "x"})
    assert kong3.headers["X-Correlation-ID"] == "5b1e0c0fd1"
    mine = client.get("/api/stocks/ZZZZ", headers={"X-Correlation-ID": "corr-42"})
    assert mine.headers["X-Correlation-ID"] == "corr-42"
    forged = client.get("/health", headers={"X-Correlation-ID": 'x" injected {}'})
    generated = forged.headers["X-Correlation-ID"]
    assert len(generated) == 32 and "injected" not in generated

    lines = [json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines()]
    requests = [entry for entry in lines if entry["msg"] == "request"]
    entry = next(e for e in requests if e["correlation_id"] == "corr-42")
    assert entry["route"] == "/api/stocks/<symbol>" and entry["path"] == "/api/stocks/ZZZZ"
    assert entry["status"] == 404 and entry["method"] == "GET"
    for key in ("ts", "level", "duration_ms", "instance_id", "remote_addr"):
        assert key in entry
    assert entry["instance_id"] == "test-instance"


def test_metrics_use_route_templates(client: FlaskClient) -> None:
    symbol = _all_symbols(client)[0]
    client.get(f"/api/stocks/{symbol}")
    client.get("/api/stocks/ZZZZ")
    client.get("/no/such/page")
    text = client.get("/metrics").get_data(as_text=True)
    series = 'stock_api_requests_total{method="GET",route="/api/stocks/<symbol>",status="%s"}'
    assert series % 200 in text and series % 404 in text
    assert 'route="unmatched",status="404"' in text
    assert symbol not in text.replace('instance_id="test-instance"', "")
    assert 'stock_api_instance_info{instance_id="test-instance",version="0.1.0"} 1.0' in text
    assert 'stock_api_cache_requests_total{result="error"} 0.0' in text
    assert "stock_api_in_flight_requests 1.0" in text  # the scrape itself
    assert 'stock_api_request_duration_seconds_bucket{le="0.005",method="GET"' in text


def test_unreachable_store_is_named_by_ready_and_reads_get_503(
    tmp_path: Path, redis_url: str
) -> None:
    app = create_app(make_config(
        tmp_path, redis_url, mongodb_uri="mongodb://127.0.0.1:1/?directConnection=true",
        store_timeout_seconds=0.2,
    ))
    client = app.test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["error"]["failing"] == ["store"] and "store" in body["error"]["message"]
    assert body["checks"]["cache"] == "ok"
    read = client.get("/api/stocks/AAPL")
    assert read.status_code == 503
    assert read.get_json()["error"]["code"] == "store_unavailable"
    assert "127.0.0.1" not in read.get_data(as_text=True)  # no internals leak to clients
    assert client.get("/health").status_code == 200

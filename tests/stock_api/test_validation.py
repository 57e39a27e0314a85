"""A table of bad requests: each gets the right status and error code, and writes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stock_api.models import ListQuery
from tests.stock_api.conftest import services_of, valid_stock


@dataclass(frozen=True)
class Bad:
    why: str
    method: str
    path: str
    status: int
    code: str
    body: Any = None  # dict/list -> JSON, bytes -> raw
    content_type: str = "application/json"
    field: str | None = None


def _raw(text: str) -> bytes:
    return text.encode()


EXISTING = "{existing}"  # replaced by a seeded symbol

CASES = [
    Bad("truncated JSON", "POST", "/api/stocks", 400, "invalid_json", _raw('{"symbol": "AB",')),
    Bad("empty body", "POST", "/api/stocks", 400, "invalid_json", b""),
    Bad("NaN is not JSON", "POST", "/api/stocks", 400, "invalid_json",
        _raw(json.dumps(valid_stock()).replace("12.5", "NaN"))),
    Bad("not UTF-8", "POST", "/api/stocks", 400, "invalid_json", b'{"name": "\xff\xfe"}'),
    Bad("form instead of JSON", "POST", "/api/stocks", 415, "unsupported_media_type",
        b"symbol=ABC", content_type="application/x-www-form-urlencoded"),
    Bad("array body", "POST", "/api/stocks", 422, "validation_error", [valid_stock()]),
    Bad("price as string", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(price="12.5"), field="price"),
    Bad("negative price", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(price=-1), field="price"),
    Bad("zero price", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(price=0), field="price"),
    Bad("infinite price", "POST", "/api/stocks", 422, "validation_error",
        _raw(json.dumps(valid_stock()).replace("12.5", "1e999")), field="price"),
    Bad("fractional volume", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(volume=1.5), field="volume"),
    Bad("boolean volume", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(volume=True), field="volume"),
    Bad("unknown field", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(dividend=2.0), field="dividend"),
    Bad("missing name", "POST", "/api/stocks", 422, "validation_error",
        {k: v for k, v in valid_stock().items() if k != "name"}, field="name"),
    Bad("lower-case symbol", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(symbol="abc"), field="symbol"),
    Bad("symbol too long", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(symbol="ABCDEFGHIJ"), field="symbol"),
    Bad("unknown exchange", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(exchange="MOON"), field="exchange"),
    Bad("unknown sector", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(sector="Crypto"), field="sector"),
    Bad("lower-case currency", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(currency="usd"), field="currency"),
    Bad("control character in name", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(name="Evil\nCorp"), field="name"),
    Bad("oversized body", "POST", "/api/stocks", 413, "payload_too_large",
        valid_stock(name="x" * 20_000)),
    # The JSON parser recurses per level: without the depth limit these were 500s.
    Bad("10,000 nested arrays", "POST", "/api/stocks", 400, "too_deep", _raw("[" * 10_000)),
    Bad("deep objects in a field", "POST", "/api/stocks", 400, "too_deep",
        _raw('{"name": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}")),
    Bad("deep and unclosed", "POST", "/api/stocks", 400, "too_deep", _raw('{"a":' + "[" * 2_000)),
    Bad("deep PUT", "PUT", f"/api/stocks/{EXISTING}", 400, "too_deep",
        _raw("[" * 5_000 + "]" * 5_000)),
    Bad("oversized deep body", "POST", "/api/stocks", 413, "payload_too_large",
        _raw("[" * 20_000)),
    # An exchange lists in one currency: a contradiction names both fields.
    Bad("currency contradicts exchange", "POST", "/api/stocks", 422, "validation_error",
        valid_stock(exchange="NASDAQ", currency="EUR"), field="currency"),
    Bad("PUT currency contradicts exchange", "PUT", f"/api/stocks/{EXISTING}", 422,
        "validation_error",
        {k: v for k, v in valid_stock(exchange="LSE", currency="USD").items() if k != "symbol"},
        field="currency"),
    Bad("duplicate symbol", "POST", "/api/stocks", 409, "duplicate_symbol",
        {"symbol": EXISTING}, field="symbol"),
    Bad("PUT unknown symbol", "PUT", "/api/stocks/ZZZZ", 404, "not_found",
        {k: v for k, v in valid_stock().items() if k != "symbol"}, field="symbol"),
    Bad("PUT renames symbol", "PUT", f"/api/stocks/{EXISTING}", 422, "symbol_mismatch",
        valid_stock(symbol="OTHER"), field="symbol"),
    Bad("PUT bad path symbol", "PUT", "/api/stocks/A$B", 400, "invalid_symbol",
        valid_stock(), field="symbol"),
    Bad("PUT market_cap as text", "PUT", f"/api/stocks/{EXISTING}", 422, "validation_error",
        {k: v for k, v in valid_stock(market_cap="big").items() if k != "symbol"},
        field="market_cap"),
    Bad("PUT partial body", "PUT", f"/api/stocks/{EXISTING}", 422, "validation_error",
        {"price": 99.0}, field="name"),
    Bad("DELETE unknown symbol", "DELETE", "/api/stocks/ZZZZ", 404, "not_found"),
    Bad("DELETE bad symbol", "DELETE", "/api/stocks/TOO-LONG-SYMBOL", 400, "invalid_symbol"),
    Bad("page 0", "GET", "/api/stocks?page=0", 400, "invalid_query", field="page"),
    Bad("page not a number", "GET", "/api/stocks?page=abc", 400, "invalid_query", field="page"),
    Bad("per_page too large", "GET", "/api/stocks?per_page=201", 400, "invalid_query",
        field="per_page"),
    Bad("page given twice", "GET", "/api/stocks?page=1&page=2", 400, "invalid_query",
        field="page"),
    Bad("unknown filter", "GET", "/api/stocks?colour=red", 400, "invalid_query", field="colour"),
    Bad("min above max price", "GET", "/api/stocks?min_price=50&max_price=10", 400,
        "invalid_query"),
    Bad("unknown sort", "GET", "/api/stocks?sort=volume", 400, "invalid_query", field="sort"),
    Bad("history range", "GET", f"/api/stocks/{EXISTING}/history?range=2y", 400,
        "invalid_query", field="range"),
    Bad("history limit 0", "GET", f"/api/stocks/{EXISTING}/history?limit=0", 400,
        "invalid_query", field="limit"),
    Bad("missing stock", "GET", "/api/stocks/ZZZZ", 404, "not_found", field="symbol"),
    Bad("history of missing stock", "GET", "/api/stocks/ZZZZ/history", 404, "not_found"),
    Bad("PATCH is not offered", "PATCH", f"/api/stocks/{EXISTING}", 405, "method_not_allowed",
        {"price": 1.0}),
    Bad("unknown route", "GET", "/api/quotes", 404, "route_not_found"),
]


def _snapshot(app: Flask) -> tuple[Any, ...]:
    """Everything a request could have written: all stocks, one history, the list version."""
    svc = services_of(app)
    stocks, total = svc.store.list_stocks(ListQuery(per_page=200))
    first = stocks[0]["symbol"]
    version = svc.cache._redis.get(svc.cache.list_version_key)
    return total, stocks, svc.store.history(first), version


@pytest.mark.parametrize("case", CASES, ids=[c.why for c in CASES])
def test_bad_input_is_rejected_and_writes_nothing(
    case: Bad, app: Flask, client: FlaskClient
) -> None:
    existing = services_of(app).store.list_stocks(ListQuery(per_page=1))[0][0]["symbol"]
    path = case.path.replace(EXISTING, existing)
    body = case.body
    if isinstance(body, dict) and body.get("symbol") == EXISTING:
        body = valid_stock(symbol=existing)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    before = _snapshot(app)

    resp = client.open(
        path, method=case.method, data=data, headers={"Content-Type": case.content_type}
    )

    assert resp.status_code == case.status, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["code"] == case.code
    assert error["message"]
    if case.field is not None:
        assert error["field"] == case.field
        assert case.field in error["message"]
    if case.code == "too_deep":  # the limit is named
        assert "limit of 32 levels" in error["message"]
    if case.status == 413:
        assert "limit of 16384 bytes" in error["message"]
    if "contradicts" in case.why:  # both fields are named
        assert "exchange" in error["message"] and "currency" in error["message"]
    assert _snapshot(app) == before


@pytest.mark.parametrize("depth, status", [(32, 422), (33, 400)])
def test_depth_limit_is_exact_and_strings_do_not_count(
    client: FlaskClient, depth: int, status: int
) -> None:
    """32 levels parse (and then fail validation as a non-stock); 33 are refused unparsed.
    Brackets inside strings are text, not nesting."""
    nested = "[" * (depth - 1) + "]" * (depth - 1)
    body = '{"name": ' + nested + "}"
    resp = client.post("/api/stocks", data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == status, resp.get_data(as_text=True)
    text = json.dumps(valid_stock(symbol="BRKTS", name="[[[[" * 10 + "{{{{" * 10))
    created = client.post("/api/stocks", data=text,
                          headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.get_data(as_text=True)


def test_every_seeded_stock_lists_in_its_exchange_currency(app: Flask) -> None:
    """The exchange -> currency table the API enforces is the one the seed data follows."""
    from stock_api.models import EXCHANGES
    from stock_api.seed import EXCHANGE_WEIGHTS

    assert set(EXCHANGE_WEIGHTS) == set(EXCHANGES)
    stocks, total = services_of(app).store.list_stocks(ListQuery(per_page=200))
    assert total and all(s["currency"] == EXCHANGES[s["exchange"]] for s in stocks)


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert {c.status for c in CASES} >= {400, 404, 405, 409, 413, 415, 422}

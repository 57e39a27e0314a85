"""The stock endpoints: list, read, create, replace, delete, price history."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, url_for

from stock_api.context import services
from stock_api.errors import ApiError, DuplicateSymbolError
from stock_api.models import HISTORY_RANGES, HistoryQuery, ListQuery, StockCreate, StockReplace
from stock_api.parsing import parse_body, parse_query, parse_symbol

stocks = Blueprint("stocks", __name__)


def _not_found(symbol: str) -> ApiError:
    return ApiError(404, "not_found", f"no stock with symbol '{symbol}'", field="symbol")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@stocks.get("/api/stocks")
def list_stocks() -> Response:
    query = parse_query(ListQuery)
    svc = services()

    def load() -> dict[str, Any]:
        items, total = svc.store.list_stocks(query)
        return {
            "items": items, "page": query.page, "per_page": query.per_page, "total": total,
            "pages": math.ceil(total / query.per_page) if total else 0,
        }

    return jsonify(svc.cache.fetch_list(query.cache_key(), load))


@stocks.get("/api/stocks/<symbol>")
def get_stock(symbol: str) -> Response:
    symbol = parse_symbol(symbol)
    svc = services()
    stock = svc.cache.fetch(svc.cache.stock_key(symbol), lambda: svc.store.get(symbol))
    if stock is None:
        raise _not_found(symbol)
    return jsonify(stock)


@stocks.post("/api/stocks")
def create_stock() -> tuple[Response, int, dict[str, str]]:
    body = parse_body(StockCreate, max_depth=services().config.max_body_depth)
    svc = services()
    stock = {**body.model_dump(), "updated_at": _now()}
    try:
        svc.store.create(stock)
    except DuplicateSymbolError:
        message = f"a stock with symbol '{body.symbol}' already exists"
        raise ApiError(409, "duplicate_symbol", message, field="symbol") from None
    svc.cache.invalidate(body.symbol)
    location = url_for("stocks.get_stock", symbol=body.symbol)
    return jsonify(stock), 201, {"Location": location}


@stocks.put("/api/stocks/<symbol>")
def replace_stock(symbol: str) -> Response:
    symbol = parse_symbol(symbol)
    body = parse_body(StockReplace, max_depth=services().config.max_body_depth)
    if body.symbol is not None and body.symbol != symbol:
        raise ApiError(
            422, "symbol_mismatch",
            f"body symbol '{body.symbol}' differs from path symbol '{symbol}'; "
            "a symbol cannot be renamed", field="symbol",
        )
    svc = services()
    stock = {**body.model_dump(exclude={"symbol"}), "symbol": symbol, "updated_at": _now()}
    if not svc.store.replace(symbol, stock):
        raise _not_found(symbol)
    svc.cache.invalidate(symbol)
    return jsonify(stock)


@stocks.delete("/api/stocks/<symbol>")
def delete_stock(symbol: str) -> tuple[str, int]:
    symbol = parse_symbol(symbol)
    svc = services()
    if not svc.store.delete(symbol):
        raise _not_found(symbol)
    svc.cache.invalidate(symbol)
    return "", 204


@stocks.get("/api/stocks/<symbol>/history")
def stock_history(symbol: str) -> Response:
    symbol = parse_symbol(symbol)
    query = parse_query(HistoryQuery)
    svc = services()

    def load() -> dict[str, Any] | None:
        if svc.store.get(symbol) is None:
            return None
        return {"bars": svc.store.history(symbol)}

    cached = svc.cache.fetch(svc.cache.history_key(symbol), load)
    if cached is None:
        raise _not_found(symbol)
    bars: list[dict[str, Any]] = cached["bars"]
    days = HISTORY_RANGES[query.range]
    if days is not None and bars:
        # Ranges count back from the newest bar, so an older data set still answers.
        cutoff = (date.fromisoformat(bars[-1]["date"]) - timedelta(days=days)).isoformat()
        bars = [b for b in bars if b["date"] > cutoff]
    bars = bars[-query.limit :]
    return jsonify({"symbol": symbol, "range": query.range, "count": len(bars), "bars": bars})

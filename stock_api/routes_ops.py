"""Operational endpoints: liveness, readiness, metrics, and the opt-in debug slow path."""

from __future__ import annotations

import time
from typing import Any

import redis
from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from stock_api import lifecycle
from stock_api.context import services
from stock_api.errors import StoreError
from stock_api.models import DebugSlowQuery
from stock_api.parsing import parse_query

ops = Blueprint("ops", __name__)
debug = Blueprint("debug", __name__)


@ops.get("/health")
def health() -> Response:
    svc = services()
    return jsonify({"status": "ok", "instance_id": svc.config.effective_instance_id})


@ops.get("/ready")
def ready() -> Response:
    """200 when the cache and the store answer; 503 naming the failing part otherwise."""
    svc = services()
    checks: dict[str, str] = {}
    failing: list[str] = []
    if lifecycle.shutting_down():
        checks["shutdown"] = "draining"
        failing.append("shutdown")
    if svc.cache.enabled:
        try:
            svc.cache.ping()
            checks["cache"] = "ok"
        except redis.RedisError as exc:
            checks["cache"] = f"error: {type(exc).__name__}"
            if svc.config.ready_requires_cache:
                failing.append("cache")
    else:
        checks["cache"] = "disabled"
    try:
        svc.store.ping()
        checks["store"] = "ok"
    except StoreError as exc:
        checks["store"] = f"error: {type(exc.__cause__ or exc).__name__}"
        failing.append("store")
    degraded = any(value.startswith("error") for value in checks.values())
    status = "not_ready" if failing else "degraded" if degraded else "ready"
    body: dict[str, Any] = {"status": status, "checks": checks}
    if not failing:
        return jsonify(body)
    body["error"] = {
        "code": "not_ready",
        "message": "not ready: " + ", ".join(f"{part} {checks[part]}" for part in failing),
        "failing": failing,
    }
    resp = jsonify(body)
    resp.status_code = 503
    return resp


@ops.get("/metrics")
def metrics() -> Response:
    return Response(services().metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)


@debug.get("/debug/slow")
def slow() -> Response:
    """Sleep as long as asked: lets tests and drain demos hold a request in flight."""
    query = parse_query(DebugSlowQuery)
    started = time.monotonic()
    time.sleep(query.seconds)
    return jsonify({"slept_seconds": round(time.monotonic() - started, 3)})

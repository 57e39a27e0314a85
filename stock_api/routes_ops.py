"""Operational endpoints: liveness, readiness, metrics, and the opt-in debug slow path."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from stock_api import lifecycle
from stock_api.context import services
from stock_api.models import DebugSlowQuery
from stock_api.parsing import parse_query

ops = Blueprint("ops", __name__)
debug = Blueprint("debug", __name__)


@ops.get("/live")
@ops.get("/health")
def live() -> Response:
    """Liveness: the process answers. Never looks at Redis or the store: a dependency's
    outage is not a reason to restart or replace this instance. (/health is the same
    probe under the name the gateways' active health checks use.)"""
    svc = services()
    return jsonify({"status": "ok", "instance_id": svc.config.effective_instance_id})


@ops.get("/ready")
def ready() -> Response:
    """Readiness: 200 while the store answers and the process is not shutting down; 503
    naming the failing part otherwise. Redis down is *degraded*, not unready: reads fall
    back to the store. ``degraded`` lists every dependency that is down."""
    svc = services()
    states = svc.dependencies.check()
    checks: dict[str, str] = {}
    if svc.cache.enabled:
        cache = states["redis"]
        checks["cache"] = "ok" if cache.up else f"error: {cache.detail}"
    else:
        checks["cache"] = "disabled"
    store = states["store"]
    checks["store"] = "ok" if store.up else f"error: {store.detail}"
    failing: list[str] = []
    if lifecycle.shutting_down():
        checks["shutdown"] = "draining"
        failing.append("shutdown")
    if not store.up:
        failing.append("store")
    degraded = sorted(name for name, state in states.items() if not state.up)
    status = "not_ready" if failing else "degraded" if degraded else "ready"
    body: dict[str, Any] = {
        "status": status, "checks": checks, "degraded": degraded,
        "dependencies": {name: "up" if states[name].up else "down" for name in sorted(states)},
    }
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
    svc = services()
    svc.dependencies.refresh()  # stock_api_dependency_up is at most dependency_check old
    return Response(svc.metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)


@debug.get("/debug/slow")
def slow() -> Response:
    """Sleep as long as asked: lets tests and drain demos hold a request in flight."""
    query = parse_query(DebugSlowQuery)
    started = time.monotonic()
    time.sleep(query.seconds)
    return jsonify({"slept_seconds": round(time.monotonic() - started, 3)})

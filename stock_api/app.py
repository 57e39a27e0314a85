"""The Flask application factory (served by gunicorn, see gunicorn_conf.py)."""

from __future__ import annotations

import hmac
import logging
import time

from flask import Flask, Response, g, request

from stock_api import __version__
from stock_api.cache import StockCache
from stock_api.config import StockApiConfig
from stock_api.context import EXTENSION, Services, services
from stock_api.dependencies import REDIS, STORE, Dependencies
from stock_api.errors import ApiError, StoreError, register_error_handlers
from stock_api.logs import configure_logging, correlation_id
from stock_api.metrics import ApiMetrics
from stock_api.routes_ops import debug, ops
from stock_api.routes_stocks import stocks
from stock_api.store import open_repository

# Reachable without an API key or the gateway's secret: probes and scrapes must work
# whatever the key. /metrics holds counters by route template, never keys or client data,
# and the gateway routes only /api to instances (the network lets only the gateway and
# Prometheus reach them).
OPEN_PATHS = frozenset({"/live", "/health", "/ready", "/metrics"})
GATEWAY_SECRET_HEADER = "X-Gateway-Secret"


def create_app(config: StockApiConfig | None = None) -> Flask:
    """Build one API instance: store, cache, metrics, logs and routes from ``config``."""
    config = config or StockApiConfig()
    instance_id = config.effective_instance_id
    request_log = configure_logging(instance_id, config.log_file)
    metrics = ApiMetrics(instance_id=instance_id, version=__version__)
    dependencies = Dependencies(metrics.registry, max_age_seconds=config.dependency_check_seconds)
    store = open_repository(config)
    dependencies.add(STORE, store.ping)
    try:
        store.ensure_indexes()
    except StoreError as exc:
        # Not fatal: /ready reports the store until it answers; reads fail with 503.
        logging.getLogger("stock_api").error("could not create store indexes: %s", exc)
        dependencies.mark(STORE, False, type(exc.__cause__ or exc).__name__)

    def cache_result(result: str) -> None:
        metrics.cache_result(result)
        # every lookup is a look at Redis
        dependencies.mark(REDIS, result != "error", "ok" if result != "error" else "error")

    cache = StockCache(config, on_result=cache_result)
    if cache.enabled:
        dependencies.add(REDIS, cache.ping)

    app = Flask("stock_api")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = Services(config=config, store=store, cache=cache, metrics=metrics,
                                         dependencies=dependencies)
    register_error_handlers(app)
    app.register_blueprint(ops)
    app.register_blueprint(stocks)
    if config.debug_endpoints:
        app.register_blueprint(debug)
    _install_request_hooks(app, request_log)
    logging.getLogger("stock_api").info(
        "stock api ready to serve", extra={
            "store": store.kind, "cache_enabled": cache.enabled, "version": __version__,
            "api_key_required": config.api_key is not None,
            "gateway_secret_required": config.gateway_secret is not None,
        },
    )
    return app


def _install_request_hooks(app: Flask, request_log: logging.Logger) -> None:
    @app.before_request
    def _start() -> None:
        svc = services()
        g.started = time.perf_counter()
        # Kong's correlation-id plugin sets Kong-Request-ID; Kong 3.x also sends
        # X-Kong-Request-Id upstream by default.
        g.correlation_id = correlation_id(
            request.headers.get("Kong-Request-ID"), request.headers.get("X-Kong-Request-Id"),
            request.headers.get("X-Correlation-ID"),
        )
        svc.metrics.in_flight.inc()
        g.counted_in_flight = True
        if request.path in OPEN_PATHS:
            return
        secret = svc.config.gateway_secret
        if secret is not None and not _matches(request.headers.get(GATEWAY_SECRET_HEADER),
                                               secret.get_secret_value()):
            raise ApiError(403, "gateway_required", "requests must come through the gateway: "
                           f"missing or wrong {GATEWAY_SECRET_HEADER} header")
        key = svc.config.api_key
        if key is not None and not _matches(request.headers.get("apikey"),
                                            key.get_secret_value()):
            raise ApiError(401, "unauthorized", "missing or invalid API key (header 'apikey')")

    @app.after_request
    def _finish(response: Response) -> Response:
        svc = services()
        started = g.get("started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        cid = g.get("correlation_id") or correlation_id()
        response.headers["X-Correlation-ID"] = cid
        svc.metrics.observe(route, request.method, response.status_code, elapsed)
        request_log.info(
            "request",
            extra={
                "method": request.method, "path": request.path, "route": route,
                "status": response.status_code, "duration_ms": round(elapsed * 1000, 3),
                "correlation_id": cid, "remote_addr": request.remote_addr,
                "forwarded_for": request.headers.get("X-Forwarded-For"),
            },
        )
        return response

    @app.teardown_request
    def _teardown(_exc: BaseException | None) -> None:
        if g.pop("counted_in_flight", False):
            services().metrics.in_flight.dec()


def _matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison: the time taken says nothing about how much matched."""
    return hmac.compare_digest((given or "").encode(), expected.encode())

"""The stock-quote API that Kong fronts and the autoscaler scales.

Run one instance (from the repository or image work directory)::

    PORT=18101 REDIS_URL=redis://127.0.0.1:16379/0 \\
        gunicorn -c python:stock_api.gunicorn_conf 'stock_api.app:create_app()'

Load the demo data set (deterministic, idempotent)::

    python -m stock_api.seed --symbols 500 --days 365

Endpoints: ``GET /live`` (liveness: the process answers; ``/health`` is the same probe),
``GET /ready`` (readiness: the store reachable and not shutting down, else 503 naming the
failing part; a dead Redis leaves it 200 with ``"status": "degraded"``, since reads fall
back to the store; ``degraded`` lists the dependencies that are down), ``GET /metrics``
(Prometheus; ``stock_api_dependency_up{dependency}`` says which dependency is down),
``GET /api/stocks`` (``page``, ``per_page`` <= 200, ``exchange``, ``sector``,
``min_price``, ``max_price``, ``q``, ``sort``), ``POST /api/stocks``,
``GET|PUT|DELETE /api/stocks/<symbol>``, ``GET /api/stocks/<symbol>/history``
(``range`` = 1m|3m|6m|1y|max, ``limit``). Errors are
``{"error": {"code": ..., "message": ..., "field": ...}}`` with 400/401/403/404/405/409/
413/415/422/503; a rejected request writes nothing. Bodies are limited in size
(``STOCK_API_MAX_BODY_BYTES``, 413) and nesting depth (``STOCK_API_MAX_BODY_DEPTH``, 400),
both named in the message; a currency that contradicts the exchange is a 422.

Environment (validated by :class:`stock_api.config.StockApiConfig`): ``PORT``, ``HOST``
(127.0.0.1), ``REDIS_URL``, ``MONGODB_URI`` (else the embedded montydb/sqlite store in
``STOCK_API_DATA_DIR``, safe for several processes), ``API_KEY`` (then header ``apikey``
is required except on /live, /health, /ready, /metrics), ``GATEWAY_SECRET`` (then header
``X-Gateway-Secret``, which only the gateway adds, is required on the same paths: 403
otherwise, compared in constant time), ``INSTANCE_ID``, ``LOG_FILE``,
``GRACEFUL_TIMEOUT``, and ``STOCK_API_*`` knobs: ``THREADS``, ``CACHE_ENABLED``,
``CACHE_TTL``, ``CACHE_PREFIX``, ``REDIS_TIMEOUT``, ``CACHE_RETRY_AFTER``, ``MONGODB_DB``,
``STORE_TIMEOUT``, ``MAX_BODY_BYTES``, ``MAX_BODY_DEPTH``, ``DEPENDENCY_CHECK`` (how stale
the dependency gauge may be when scraped, 5 s), ``DEBUG_ENDPOINTS``.

Behaviour worth knowing:

* Reads are cache-aside in Redis with a TTL; every write invalidates the symbol and all
  list pages (a version key). Redis down: reads come from the store, counted as
  ``stock_api_cache_requests_total{result="error"}``, never a 500.
* SIGTERM: gunicorn stops accepting (new connections are refused), ``/ready`` turns 503,
  and in-flight requests finish within ``GRACEFUL_TIMEOUT``.
* One JSON log line per request (``ts, level, msg, method, path, route, status,
  duration_ms, correlation_id, instance_id, remote_addr``) to stdout and ``LOG_FILE``; the
  correlation id comes from ``Kong-Request-ID`` / ``X-Kong-Request-Id`` /
  ``X-Correlation-ID`` (a new one if absent) and is echoed in ``X-Correlation-ID``.
* Debug-only ``GET /debug/slow?seconds=N`` exists when ``STOCK_API_DEBUG_ENDPOINTS=true``
  (drain tests and demos); it is not registered otherwise.
"""

from __future__ import annotations

__version__ = "0.1.0"

"""Redis cache-aside for reads, with TTL and invalidation on writes.

Redis is an accelerator, never a dependency of correctness: every Redis failure is
counted (``result="error"``) and the read is served from the store. After a failure the
cache is skipped for ``cache_retry_after_seconds`` so that a dead or hung Redis costs
requests nothing instead of one socket timeout each. Invalidations are always attempted.
As with any cache-aside, a read that loads from the store just before a write and caches
just after it can re-cache the old value; the TTL bounds how long that lasts.

Keys (``<prefix>`` = STOCK_API_CACHE_PREFIX):
  ``<prefix>:stock:<SYMBOL>``          one stock
  ``<prefix>:history:<SYMBOL>``        all bars of one symbol (range/limit applied after)
  ``<prefix>:list:<version>:<query>``  one list page; writes bump ``<prefix>:list_version``
                                       so every cached page becomes unreachable at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stock_api.config import StockApiConfig

T = TypeVar("T")
log = logging.getLogger("stock_api.cache")


class StockCache:
    """Cache-aside reads and write invalidation over one Redis connection pool."""

    def __init__(self, config: StockApiConfig, on_result: Callable[[str], None]) -> None:
        self.enabled = config.cache_enabled
        self._ttl = config.cache_ttl_seconds
        self._prefix = config.cache_prefix
        self._retry_after = config.cache_retry_after_seconds
        self._on_result = on_result
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._redis = redis.Redis.from_url(
            config.redis_url,
            socket_timeout=config.redis_timeout_seconds,
            socket_connect_timeout=config.redis_timeout_seconds,
            retry=Retry(NoBackoff(), 0),  # no hidden retries: one failure, one fallback
            max_connections=config.threads + 4,
            health_check_interval=0,
        )

    # -- keys ---------------------------------------------------------------------------
    def stock_key(self, symbol: str) -> str:
        return f"{self._prefix}:stock:{symbol}"

    def history_key(self, symbol: str) -> str:
        return f"{self._prefix}:history:{symbol}"

    @property
    def list_version_key(self) -> str:
        return f"{self._prefix}:list_version"

    # -- reads --------------------------------------------------------------------------
    def fetch(self, key: str, load: Callable[[], T | None]) -> T | None:
        """Return the cached value of ``key`` or ``load()`` it from the store and cache it."""
        if not self.enabled:
            return load()
        status, cached = self._get(key)
        if status == "hit":
            return cached  # type: ignore[no-any-return]
        value = load()
        if status == "miss" and value is not None:
            self._set(key, value)
        return value

    def fetch_list(self, query_key: str, load: Callable[[], T | None]) -> T | None:
        """Like fetch, for a list page: the key carries the current list version."""
        if not self.enabled:
            return load()
        if self._skipping():
            self._on_result("error")
            return load()
        try:
            version = self._redis.get(self.list_version_key)
        except redis.RedisError as exc:
            self._failed(exc)
            self._on_result("error")
            return load()
        tag = version.decode() if isinstance(version, bytes) else "0"
        return self.fetch(f"{self._prefix}:list:{tag}:{query_key}", load)

    def _skipping(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            first = not self._skipping()
            self._down_until = time.monotonic() + self._retry_after
        if first:
            log.warning("cache unavailable, serving from the store: %s", exc)

    def _get(self, key: str) -> tuple[str, Any]:
        if self._skipping():
            self._on_result("error")
            return "error", None
        try:
            raw: bytes | None = self._redis.get(key)  # type: ignore[assignment]
        except redis.RedisError as exc:
            self._failed(exc)
            self._on_result("error")
            return "error", None
        if raw is None:
            self._on_result("miss")
            return "miss", None
        try:
            value = json.loads(raw)
        except ValueError:
            self._on_result("miss")  # a foreign or truncated value: overwrite it
            return "miss", None
        self._on_result("hit")
        return "hit", value

    def _set(self, key: str, value: Any) -> None:
        try:
            self._redis.set(key, json.dumps(value, separators=(",", ":")), ex=self._ttl)
        except redis.RedisError as exc:
            self._failed(exc)

    # -- writes -------------------------------------------------------------------------
    def invalidate(self, symbol: str) -> bool:
        """Forget one symbol and every list page. False (and logged) if Redis failed."""
        if not self.enabled:
            return True
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(self.stock_key(symbol), self.history_key(symbol))
            pipe.incr(self.list_version_key)
            pipe.execute()
        except redis.RedisError as exc:
            # Entries written before the outage expire within the TTL.
            self._failed(exc)
            self._on_result("error")
            log.warning("cache invalidation of %s failed: %s", symbol, exc)
            return False
        return True

    # -- health -------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise redis.RedisError if Redis does not answer (ignores the skip window)."""
        self._redis.ping()
        with self._lock:
            self._down_until = 0.0

    def close(self) -> None:
        self._redis.close()

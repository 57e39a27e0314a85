"""A typed Kong Admin API client: one httpx pool, timeouts, retries, pagination, no leaks.

Errors (all ``GatewayError``)::

    KongAPIError          a non-success status Kong answered (status, code, name, message)
     └── DBLessError      405 with code 12: Kong runs without a database (use POST /config)
    KongUnavailableError  retries exhausted on connection errors, timeouts, 5xx or 429

Retries: exponential backoff with full jitter on transport errors, 5xx and 429 (``Retry-After``
honoured); other 4xx are final. Never plain HTTP across a network: an ``http://`` admin URL
must name a loopback address (Kong on this machine, or the local end of the SSH tunnel to the
Kong VM, ``tasks.providers.ssh_tunnel``); anything else needs ``https://`` or the explicit
override ``allow_plain_http`` / ``$KONGSTACK_KONG_ADMIN_ALLOW_PLAIN_HTTP=1``, which is logged
as a warning every time a client is built. The admin token is a ``SecretStr``; it is sent
as a header and never appears in ``repr``, error messages or logs. Secret values inside
request bodies (``SecretStr``) are unwrapped only when serialising, and scrubbed from Kong's
error echoes.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from kongstack.core.errors import ConfigError, GatewayError
from tasks.gateway.kong.auth import AdminAuth

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # Kong's maximum page size: fewest round trips
PLAIN_HTTP_OVERRIDE_ENV = "KONGSTACK_KONG_ADMIN_ALLOW_PLAIN_HTTP"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def check_admin_url(url: str, *, allow_plain_http: bool = False) -> None:
    """Refuse plain HTTP to a non-loopback Admin API: Kong OSS has no Admin API auth and
    the configuration carries consumer keys. The override is logged loudly."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https"):
        raise ConfigError(f"admin_url: {url!r} is not an http(s) URL")
    if parsed.scheme == "https" or is_loopback(parsed.host):
        return
    override = allow_plain_http or os.environ.get(PLAIN_HTTP_OVERRIDE_ENV, "") in ("1", "true")
    if not override:
        raise ConfigError(
            f"admin_url: {url} is plain HTTP to a non-loopback host; Kong's Admin API has no "
            "authentication and the configuration carries consumer keys. Reach it through an "
            "SSH tunnel (gateway option ssh_tunnel) or over https, or set "
            f"{PLAIN_HTTP_OVERRIDE_ENV}=1 to accept the risk")
    log.warning("INSECURE: Kong Admin API at %s over plain HTTP across the network "
                "(override %s): anyone on the path can read and change the gateway's "
                "configuration and its consumer keys", url,
                "allow_plain_http" if allow_plain_http else PLAIN_HTTP_OVERRIDE_ENV)


class KongAPIError(GatewayError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        info = body if isinstance(body, dict) else {}
        self.status = status
        self.code: int | None = info.get("code")
        self.name: str = str(info.get("name") or "")
        self.kong_message: str = str(info.get("message") or body or "")
        super().__init__(f"Kong {method} {path} -> {status}: {self.kong_message}")


class DBLessError(KongAPIError):
    """Kong refused a write with ``405``/code 12: it is DB-less (``database = off``)."""


class KongUnavailableError(GatewayError):
    """The Admin API stayed unreachable or failing after every retry."""


class _Transient(Exception):
    def __init__(self, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after


def _unwrap_secret(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _secrets_in(value: Any) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secrets_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _secrets_in(v)]
    return []


def _scrub(body: Any, secrets: list[str]) -> Any:
    if not secrets:
        return body
    text = json.dumps(body)
    for secret in secrets:
        if secret:
            text = text.replace(json.dumps(secret)[1:-1], "***")
    return json.loads(text)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class KongAdminClient:
    """Kong Admin API over one ``httpx.Client``. Counts every request sent (reads/writes)."""

    def __init__(
        self,
        *,
        base_url: str,
        auth: AdminAuth | None = None,
        timeout: float = 10.0,
        attempts: int = 6,
        backoff_initial: float = 0.25,
        backoff_max: float = 8.0,
        retry_after_max: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        allow_plain_http: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """``on_close`` runs after the pool closes (e.g. the SSH tunnel's ``close``)."""
        check_admin_url(base_url, allow_plain_http=allow_plain_http)
        self._on_close = on_close
        headers = {"Accept": "application/json"}
        if auth is not None:
            headers.update(auth.http_headers())
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
            transport=transport,
        )
        self._attempts = attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._retry_after_max = retry_after_max
        self._sleep = sleep
        self.reads = 0
        self.writes = 0

    def __repr__(self) -> str:  # never the headers: they hold the token
        return f"KongAdminClient(base_url={self.base_url!r}, auth=***)"

    def close(self) -> None:
        self._http.close()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    def __enter__(self) -> KongAdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        ceiling = min(self._backoff_max, self._backoff_initial * 2 ** (state.attempt_number - 1))
        delay = random.uniform(0, ceiling)  # full jitter: retries of many clients spread out
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self._retry_after_max))
        return delay

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        expect: tuple[int, ...] = (200, 201, 204),
    ) -> httpx.Response:
        """Send one request (retried when transient); return it if its status is expected."""
        content = None if body is None else json.dumps(body, default=_unwrap_secret)
        headers = {"Content-Type": "application/json"} if content is not None else None
        secrets = _secrets_in(body)

        def attempt() -> httpx.Response:
            if method == "GET":
                self.reads += 1
            else:
                self.writes += 1
            try:
                response = self._http.request(method, path, content=content, params=params,
                                              headers=headers)
            except httpx.TransportError as exc:  # connect errors, resets, timeouts
                raise _Transient(f"{type(exc).__name__}") from exc
            if response.status_code >= 500 or response.status_code == 429:
                raise _Transient(f"HTTP {response.status_code}", _retry_after(response))
            return response

        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda s: log.info(
                "kong %s %s failed (%s); retry %d", method, path,
                s.outcome.exception() if s.outcome else "?", s.attempt_number),
        )
        try:
            response = retrying(attempt)
        except _Transient as exc:
            raise KongUnavailableError(
                f"Kong {method} {path} failed after {self._attempts} attempts: {exc}") from None
        if response.status_code in expect:
            return response
        try:
            payload: Any = _scrub(response.json(), secrets)
        except ValueError:
            payload = response.text[:200]
        if response.status_code == 405 and isinstance(payload, dict) and payload.get("code") == 12:
            raise DBLessError(method, path, 405, payload)
        raise KongAPIError(method, path, response.status_code, payload)

    def get_json(self, path: str, *, expect_missing: bool = False) -> dict[str, Any] | None:
        """GET one entity; ``None`` for 404 when ``expect_missing``."""
        expect = (200, 404) if expect_missing else (200,)
        response = self.request("GET", path, expect=expect)
        if response.status_code == 404:
            return None
        data: dict[str, Any] = response.json()
        return data

    def paginate(self, path: str, *, tags: str | None = None) -> Iterator[dict[str, Any]]:
        """Every entity of a collection, following ``offset`` until Kong omits it."""
        params: dict[str, str | int] = {"size": PAGE_SIZE}
        if tags:
            params["tags"] = tags
        while True:
            page = self.request("GET", path, params=params, expect=(200,)).json()
            yield from page.get("data") or []
            offset = page.get("offset")
            if not offset or not page.get("next"):
                return
            params["offset"] = offset

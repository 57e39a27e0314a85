"""Verify the local stack: a real request through the gateway, and every component's health."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx

from kongstack.core.errors import InstallError
from tasks.providers.local.stack import LocalStack
from tasks.providers.protocol import Component, Verified

PROBE_TIMEOUT = 3.0


def _healthy(url: str) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return False, type(exc).__name__
    return response.status_code < 400, f"HTTP {response.status_code}"


def _redis_ok(url: str) -> tuple[bool, str]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT,
                                  socket_connect_timeout=PROBE_TIMEOUT)
    try:
        return bool(client.ping()), "PING ok"
    except redis.RedisError as exc:
        return False, f"PING failed: {type(exc).__name__}"
    finally:
        client.close()


def request_through_gateway(stack: LocalStack, timeout: float = 20.0) -> str:
    """GET a list page and then one stock through the gateway; returns what was seen.

    Sent with a read-only consumer's key; retried until ``timeout``: nginx may still be
    switching to the new configuration. Then the same GET without a key must get 401.
    """
    headers = {"apikey": stack.consumers().probe_key()}
    base = stack.gateway_url()
    deadline = time.monotonic() + timeout
    last = ""
    delay = 0.1
    while True:
        try:
            listing = httpx.get(f"{base}/api/stocks", params={"per_page": 1},
                                headers=headers, timeout=PROBE_TIMEOUT)
            if listing.status_code == 200 and listing.json().get("items"):
                symbol = listing.json()["items"][0]["symbol"]
                one = httpx.get(f"{base}/api/stocks/{symbol}", headers=headers,
                                timeout=PROBE_TIMEOUT)
                if one.status_code == 200 and one.json().get("symbol") == symbol:
                    via = one.headers.get("X-Correlation-ID", "")
                    return (f"GET /api/stocks/{symbol} -> 200 via gateway "
                            f"(total {listing.json().get('total')} symbols, "
                            f"correlation id {via or 'absent'}); "
                            + _refused_without_key(f"{base}/api/stocks/{symbol}"))
                last = f"GET /api/stocks/{symbol} -> {one.status_code}"
            else:
                last = f"GET /api/stocks -> {listing.status_code} {listing.text[:120]}"
        except (httpx.HTTPError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise InstallError(f"no answer from the stock API through the gateway {base}: {last}")
        time.sleep(delay)  # backoff between probe attempts, bounded by the deadline above
        delay = min(delay * 2, 1.0)


def _refused_without_key(url: str) -> str:
    """Key-auth is on: a request without a key gets 401 (else InstallError)."""
    try:
        status = httpx.get(url, timeout=PROBE_TIMEOUT).status_code
    except httpx.HTTPError as exc:
        raise InstallError(f"GET {url} without a key: {type(exc).__name__}: {exc}") from exc
    if status != 401:
        raise InstallError(f"GET {url} without a key -> {status}, expected 401: the gateway "
                           "does not enforce key-auth")
    return "without a key -> 401"


def check_names(stack: LocalStack) -> list[str]:
    """What verify checks, in order (the plan shows them)."""
    return ["every stock API instance answers /ready", *(f"health of {n}" for n in PROBED),
            "a stock through the gateway with a read-only key (list, then one "
            "symbol), then 401 without a key"]


PROBED = ("redis", "prometheus", "alertmanager", "node-exporter", "redis-exporter",
          "nginx-exporter", "nginx")


def verify_local(stack: LocalStack, components: list[Component]) -> Verified:
    """Probe every component, then request a stock through the gateway; the result's
    ``error`` names the unhealthy components."""
    s = stack.settings
    mon = stack.monitoring()
    probes = {
        "redis": lambda: _redis_ok(stack.redis_url),
        "prometheus": lambda: _healthy(f"{mon.prometheus_url}/-/ready"),
        "alertmanager": lambda: _healthy(f"{mon.alertmanager_url}/-/ready"),
        "node-exporter": lambda: _healthy(f"http://{s.host}:{mon.ports.node_exporter}/metrics"),
        "redis-exporter": lambda: _healthy(f"http://{s.host}:{mon.ports.redis_exporter}/metrics"),
        "nginx-exporter": lambda: _healthy(f"http://{s.host}:{mon.ports.nginx_exporter}/metrics"),
        "nginx": lambda: _healthy(mon.nginx_status_url or ""),
    }
    checked: list[Component] = []
    for comp in components:
        if comp.role == "stock-api":
            ok, detail = _healthy(f"{comp.url}/ready")
        elif comp.name in probes:
            ok, detail = probes[comp.name]()
        else:
            checked.append(comp)
            continue
        checked.append(replace(comp, status="healthy" if ok else "unhealthy", detail=detail))
    bad = [c for c in checked if c.status == "unhealthy"]
    if not bad:
        seen = request_through_gateway(stack)
        checked.append(Component("gateway request", "kong", "healthy", stack.gateway_url(), seen))
    checked += stack.substitutes()
    urls = {
        "stock API (gateway)": f"{stack.gateway_url()}/api/stocks",
        "Prometheus": mon.prometheus_url,
        "Alertmanager": mon.alertmanager_url,
        "nginx status": mon.nginx_status_url or "",
    }
    error = ("unhealthy: " + ", ".join(f"{c.name} ({c.detail})" for c in bad)) if bad else ""
    return Verified(components=tuple(checked), urls=urls, error=error)

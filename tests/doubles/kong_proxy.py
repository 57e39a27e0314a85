"""The proxy side of the Kong double: what Kong 3.x does with a request, from its entities.

Built from Kong's source (kong/router, kong/runloop/balancer, kong/plugins/{correlation-id,
key-auth,acl,rate-limiting}/handler.lua, kong/error_handlers.lua; kong-admin-api.md):

- a header line longer than 8 KiB (``large_client_header_buffers 4 8k``) → 400
  ``Request header or cookie too large``; no route for path and method → 404
  ``no Route matched with those values``;
- plugins run by priority (correlation-id 100001, key-auth 1250, acl 950, rate-limiting 910),
  each with the configuration of the most specific scope: consumer+route > consumer+service
  > route+service > consumer > route > service > global; the consumer is known from
  key-auth on;
- key-auth: the key from a header (or the query string with ``key_in_query``), 401 ``No API
  key found in request`` / ``Unauthorized`` / ``Duplicate API key found`` with
  ``WWW-Authenticate``; ACL: 403 ``You cannot consume this service``; rate-limiting (policy
  local): fixed clock-aligned windows, ``RateLimit-*``/``X-RateLimit-*``, 429 with
  ``Retry-After``;
- the upstream's balancer: weighted round robin over targets with weight > 0 that are not
  unhealthy (503 ``failure to get a peer from the ring-balancer`` when none), ``retries`` on
  connection failures, active checks (a prober thread) and passive checks on real traffic;
- every request is logged (what Kong's http-log plugin would send) with its request id and
  correlation id.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from tests.doubles.kong_store import Entity

if TYPE_CHECKING:
    from tests.doubles.kong_admin import KongAdmin

VERSION = "3.9.1"
HEADER_LINE_LIMIT = 8192
PRIORITY = {"correlation-id": 100001, "key-auth": 1250, "acl": 950, "rate-limiting": 910}
WINDOWS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}


class Exit(Exception):  # noqa: N818 - kong.response.exit
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class ProxyRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, list[str]]  # lower-case names
    body: bytes
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class _Context:
    route: Entity | None = None
    service: Entity | None = None
    consumer: Entity | None = None
    credential: Entity | None = None
    upstream_headers: dict[str, str | None] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    correlation: tuple[str, str] | None = None  # (header, value), echoed downstream


def _kind_rank(plugin: Entity) -> tuple[bool, ...]:
    consumer, route, service = (plugin.get(k) is not None for k in ("consumer", "route",
                                                                     "service"))
    return (consumer and route and service, consumer and route, consumer and service,
            route and service, consumer, route, service)


class KongProxy:
    """Request handling over a ``KongAdmin``'s entities; thread-safe."""

    def __init__(self, admin: KongAdmin, *, clock: Callable[[], float] = time.time) -> None:
        self.admin = admin
        self.clock = clock
        self.lock = threading.Lock()
        self.counters: dict[tuple[str, str, str, int], int] = {}
        self.rr_current: dict[str, int] = {}  # target id → smooth WRR current weight
        self.health: dict[str, dict[str, int]] = {}  # target id → failure/success counters
        self.log: list[dict[str, Any]] = []
        self.http = httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0),
                                 limits=httpx.Limits(max_keepalive_connections=64))
        self._stop = threading.Event()
        self._last_probe: dict[str, float] = {}
        self._checker = threading.Thread(target=self._active_checks, name="kong-checks",
                                         daemon=True)
        self._checker.start()

    def close(self) -> None:
        self._stop.set()
        self._checker.join(timeout=5)
        self.http.close()

    # -- entities (read under the admin lock, as a snapshot) -------------------------------

    def _rows(self, coll: str) -> list[Entity]:
        return [copy.deepcopy(r) for r in self.admin.store.rows[coll].values()]

    def _route(self, method: str, path: str) -> Entity | None:
        best: tuple[tuple[int, bool], Entity] | None = None
        for route in self._rows("routes"):
            if route["methods"] and method not in route["methods"]:
                continue
            for prefix in route["paths"] or ():
                if path.startswith(prefix):
                    rank = (len(prefix), bool(route["methods"]))
                    if best is None or rank > best[0]:
                        best = (rank, route)
        return best[1] if best else None

    def _plugin(self, name: str, ctx: _Context) -> Entity | None:
        ids = {"route": (ctx.route or {}).get("id"), "service": (ctx.service or {}).get("id"),
               "consumer": (ctx.consumer or {}).get("id")}
        found = [p for p in self._rows("plugins") if p["name"] == name and p["enabled"]
                 and all(p.get(k) is None or p[k]["id"] == ids[k] for k in ids)]
        return max(found, key=_kind_rank, default=None)

    # -- the request path -----------------------------------------------------------------

    def handle(self, request: ProxyRequest) -> ProxyResponse:
        ctx = _Context()
        upstream_addr = ""
        try:
            for name, values in request.headers.items():
                if any(len(name) + 2 + len(v) > HEADER_LINE_LIMIT for v in values):
                    raise Exit(400, "Request header or cookie too large")
            with self.admin.lock:
                ctx.route = self._route(request.method, request.path)
                if ctx.route is None:
                    raise Exit(404, "no Route matched with those values")
                service_id = (ctx.route.get("service") or {}).get("id")
                ctx.service = copy.deepcopy(
                    self.admin.store.rows["services"].get(str(service_id)))
                self._run_plugins(request, ctx)
            response, upstream_addr = self._proxy(request, ctx)
        except Exit as exc:
            body = json.dumps({"message": exc.message, "request_id": request.request_id})
            headers = {"Content-Type": "application/json; charset=utf-8",
                       "Server": f"kong/{VERSION}", "X-Kong-Response-Latency": "0",
                       "X-Kong-Request-Id": request.request_id, **ctx.response_headers,
                       **exc.headers}
            response = ProxyResponse(exc.status, list(headers.items()), body.encode())
        if ctx.correlation is not None:
            response.headers.append(ctx.correlation)
        with self.lock:
            self.log.append({
                "request_id": request.request_id, "status": response.status,
                "correlation_id": ctx.correlation[1] if ctx.correlation else None,
                "consumer": (ctx.consumer or {}).get("username"),
                "route": (ctx.route or {}).get("name"), "upstream_addr": upstream_addr,
                "method": request.method, "path": request.path})
        return response

    def _run_plugins(self, request: ProxyRequest, ctx: _Context) -> None:
        for name in sorted(PRIORITY, key=lambda n: -PRIORITY[n]):
            conf = self._plugin(name, ctx)
            if conf is None:
                continue
            if name == "correlation-id":
                self._correlation(request, ctx, conf)
            elif name == "key-auth":
                self._key_auth(request, ctx, conf)
            elif name == "acl":
                self._acl(ctx, conf)
            else:
                self._rate_limit(request, ctx, conf)

    def _correlation(self, request: ProxyRequest, ctx: _Context, plugin: Entity) -> None:
        conf = plugin["config"]
        header = conf["header_name"]
        value = request.header(header) or str(uuid.uuid4())
        ctx.upstream_headers[header] = value
        if conf["echo_downstream"]:
            ctx.correlation = (header, value)

    def _key_auth(self, request: ProxyRequest, ctx: _Context, plugin: Entity) -> None:
        conf = plugin["config"]
        challenge = {"WWW-Authenticate": f'Key realm="{conf["realm"]}"' if conf.get("realm")
                     else "Key"}
        key = None
        for name in conf["key_names"]:
            values = request.headers.get(name.lower()) if conf["key_in_header"] else None
            if not values and conf["key_in_query"]:
                values = request.query.get(name)
            if values and len(values) > 1:
                raise Exit(401, "Duplicate API key found", challenge)
            if values and values[0]:
                key = values[0]
                if conf["hide_credentials"]:
                    ctx.upstream_headers[name] = None
                break
        if key is None:
            raise Exit(401, "No API key found in request", challenge)
        credential = next((c for c in self._rows("keyauth_credentials") if c["key"] == key),
                          None)
        if credential is None:
            raise Exit(401, "Unauthorized", challenge)
        consumer = self.admin.store.rows["consumers"][credential["consumer"]["id"]]
        ctx.consumer, ctx.credential = copy.deepcopy(consumer), credential
        ctx.upstream_headers.update({"X-Consumer-ID": consumer["id"],
                                     "X-Consumer-Username": consumer["username"],
                                     "X-Credential-Identifier": credential["id"]})

    def _acl(self, ctx: _Context, plugin: Entity) -> None:
        conf = plugin["config"]
        if ctx.consumer is None:
            raise Exit(401, "Unauthorized")
        groups = [a["group"] for a in self._rows("acls")
                  if a["consumer"]["id"] == ctx.consumer["id"]]
        wanted = conf["deny"] or conf["allow"]
        in_group = bool(set(groups) & set(wanted))
        if not groups and not conf["deny"]:
            raise Exit(403, "You cannot consume this service")
        if in_group if conf["deny"] else not in_group:
            raise Exit(403, "You cannot consume this service")
        if not conf["hide_groups_header"]:
            ctx.upstream_headers["X-Consumer-Groups"] = ", ".join(groups)

    def _rate_limit(self, request: ProxyRequest, ctx: _Context, plugin: Entity) -> None:
        conf = plugin["config"]
        if conf["limit_by"] == "consumer" and (ctx.consumer or ctx.credential):
            identifier = (ctx.consumer or ctx.credential or {})["id"]
        elif conf["limit_by"] == "credential" and ctx.credential:
            identifier = ctx.credential["id"]
        else:
            identifier = request.header("X-Forwarded-For") or "127.0.0.1"
        now = self.clock()
        stop, best = None, None
        headers: dict[str, str] = {}
        with self.lock:
            usage = {}
            for period, size in WINDOWS:
                limit = conf.get(period)
                if not limit:
                    continue
                start = int(now // size * size)
                used = self.counters.get((plugin["id"], identifier, period, start), 0)
                usage[period] = (limit, size, start, used)
                if limit - used <= 0:
                    stop = period
            for period, (limit, size, start, used) in usage.items():
                remaining = limit - used - (1 if stop in (None, period) else 0)
                remaining = max(0, remaining)
                reset = max(1, size - int(now - start))
                title = period.capitalize()
                headers[f"X-RateLimit-Limit-{title}"] = str(limit)
                headers[f"X-RateLimit-Remaining-{title}"] = str(remaining)
                if best is None or remaining < best[1] or (remaining == best[1]
                                                           and size > best[2]):
                    best = (limit, remaining, size, reset)
            if stop is None:
                for period, (_, _, start, used) in usage.items():
                    self.counters[(plugin["id"], identifier, period, start)] = used + 1
        if best is None:
            return
        if not conf["hide_client_headers"]:
            headers.update({"RateLimit-Limit": str(best[0]), "RateLimit-Remaining": str(best[1]),
                            "RateLimit-Reset": str(best[3])})
            ctx.response_headers.update(headers)
        if stop is not None:
            retry = {} if conf["hide_client_headers"] else {"Retry-After": str(best[3])}
            raise Exit(conf["error_code"], conf["error_message"], retry)

    # -- balancer and upstream ------------------------------------------------------------

    def _upstream_of(self, service: Entity) -> tuple[Entity | None, list[Entity]]:
        upstream = next((u for u in self.admin.store.rows["upstreams"].values()
                         if u["name"] == service["host"]), None)
        if upstream is None:
            return None, []
        return copy.deepcopy(upstream), [copy.deepcopy(t) for t in
                                         self.admin.store.rows["targets"].values()
                                         if t["upstream"]["id"] == upstream["id"]]

    def _pick(self, targets: list[Entity], tried: set[str]) -> Entity | None:
        with self.lock:
            best, total = None, 0
            for t in targets:
                if t["weight"] == 0 or t["id"] in tried or self.state(t["id"]) == "UNHEALTHY":
                    continue
                self.rr_current[t["id"]] = self.rr_current.get(t["id"], 0) + t["weight"]
                total += t["weight"]
                if best is None or self.rr_current[t["id"]] > self.rr_current[best["id"]]:
                    best = t
            if best is not None:
                self.rr_current[best["id"]] -= total
            return best

    def state(self, target_id: str) -> str:
        return self.admin.store.health_overrides.get(target_id, "HEALTHY")

    def report(self, target_id: str, kind: str, checks: Entity) -> None:
        """One observation (success, tcp_failures, http_failures, timeouts) for a target."""
        with self.lock:
            if target_id not in self.admin.store.rows["targets"]:
                return
            counters = self.health.setdefault(target_id, {})
            overrides = self.admin.store.health_overrides
            unhealthy = overrides.get(target_id) == "UNHEALTHY"
            if kind == "success":
                for k in ("tcp_failures", "http_failures", "timeouts"):
                    counters[k] = 0
                needed = checks["healthy"]["successes"]
                if unhealthy and needed:
                    counters["success"] = counters.get("success", 0) + 1
                    if counters["success"] >= needed:
                        overrides[target_id] = "HEALTHY"
                        counters.clear()
                return
            limit = checks["unhealthy"].get(kind) or 0
            if not limit or unhealthy:
                return
            counters["success"] = 0
            counters[kind] = counters.get(kind, 0) + 1
            if counters[kind] >= limit:
                overrides[target_id] = "UNHEALTHY"
                counters.clear()

    def _proxy(self, request: ProxyRequest, ctx: _Context) -> tuple[ProxyResponse, str]:
        assert ctx.service is not None
        with self.admin.lock:
            upstream, targets = self._upstream_of(ctx.service)
        if upstream is None:
            raise Exit(503, "name resolution failed")
        passive = upstream["healthchecks"]["passive"]
        headers = {k: ", ".join(v) for k, v in request.headers.items()
                   if k not in ("host", "content-length", "connection")}
        for name, value in ctx.upstream_headers.items():
            headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
            if value is not None:
                headers[name] = value
        query: list[tuple[str, str | int | float | bool | None]] = [
            (k, v) for k, values in request.query.items() for v in values
                 if ctx.upstream_headers.get(k, "") is not None]
        tried: set[str] = set()
        for _ in range(int(ctx.service["retries"]) + 1):
            target = self._pick(targets, tried)
            if target is None:
                if tried:
                    break
                raise Exit(503, "failure to get a peer from the ring-balancer")
            tried.add(target["id"])
            started = time.perf_counter()
            try:
                upstream_response = self.http.request(
                    request.method, f"http://{target['target']}{request.path}",
                    params=query, headers=headers, content=request.body or None)
            except httpx.ConnectError:
                self.report(target["id"], "tcp_failures", passive)
                continue
            except httpx.TimeoutException:
                self.report(target["id"], "timeouts", passive)
                if request.method not in IDEMPOTENT:
                    raise Exit(504, "The upstream server is timing out") from None
                continue
            except httpx.TransportError:
                self.report(target["id"], "tcp_failures", passive)
                if request.method not in IDEMPOTENT:
                    raise Exit(502, "An invalid response was received from the upstream "
                                    "server") from None
                continue
            status = upstream_response.status_code
            if status in passive["unhealthy"]["http_statuses"]:
                self.report(target["id"], "http_failures", passive)
            elif status in passive["healthy"]["http_statuses"]:
                self.report(target["id"], "success", passive)
            latency = str(int((time.perf_counter() - started) * 1000))
            out = [(k, v) for k, v in upstream_response.headers.multi_items()
                   if k.lower() not in ("transfer-encoding", "connection", "content-length",
                                        "content-encoding")]
            out += [(k, v) for k, v in ctx.response_headers.items()]
            out += [("X-Kong-Upstream-Latency", latency), ("X-Kong-Proxy-Latency", "0"),
                    ("Via", f"1.1 kong/{VERSION}"), ("X-Kong-Request-Id", request.request_id)]
            return ProxyResponse(status, out, upstream_response.content), target["target"]
        raise Exit(502, "An invalid response was received from the upstream server")

    # -- active health checks -------------------------------------------------------------

    def _probe(self, target: Entity, active: Entity) -> None:
        try:
            response = httpx.get(f"http://{target['target']}{active['http_path']}",
                                 timeout=active["timeout"])
        except httpx.TimeoutException:
            self.report(target["id"], "timeouts", active)
            return
        except httpx.TransportError:
            self.report(target["id"], "tcp_failures", active)
            return
        if response.status_code in active["healthy"]["http_statuses"]:
            self.report(target["id"], "success", active)
        elif response.status_code in active["unhealthy"]["http_statuses"]:
            self.report(target["id"], "http_failures", active)

    def _active_checks(self) -> None:
        probing: dict[str, threading.Thread] = {}
        while not self._stop.wait(0.1):
            with self.admin.lock:
                upstreams = self._rows("upstreams")
                targets = self._rows("targets")
            now = time.monotonic()
            for upstream in upstreams:
                active = upstream["healthchecks"]["active"]
                for t in targets:
                    if t["upstream"]["id"] != upstream["id"] or t["weight"] == 0:
                        continue
                    side = "unhealthy" if self.state(t["id"]) == "UNHEALTHY" else "healthy"
                    interval = active[side]["interval"]
                    running = probing.get(t["id"])
                    if not interval or (running is not None and running.is_alive()):
                        continue
                    if now - self._last_probe.get(t["id"], 0.0) < interval:
                        continue
                    self._last_probe[t["id"]] = now
                    probing[t["id"]] = threading.Thread(target=self._probe, args=(t, active),
                                                        daemon=True)
                    probing[t["id"]].start()


def parse_request(method: str, target: str, header_items: list[tuple[str, str]],
                  body: bytes) -> ProxyRequest:
    url = urlsplit(target)
    query: dict[str, list[str]] = {}
    for k, v in parse_qsl(url.query, keep_blank_values=True):
        query.setdefault(k, []).append(v)
    headers: dict[str, list[str]] = {}
    for k, v in header_items:
        headers.setdefault(k.lower(), []).append(v)
    return ProxyRequest(method=method, path=url.path, query=query, headers=headers, body=body)

"""The Kong Admin API double served over real HTTP on a free loopback port, with faults.

Faults (seeded, per request): a 500/502/503 answer *before* the request is applied, a
dropped connection before it is applied, a dropped connection *after* it was applied (the
client never sees the answer: the case that makes non-idempotent writes duplicate), and
added latency. Scripted answers (e.g. one 429 with ``Retry-After``) can be queued too.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.doubles.kong_admin import KongAdmin
from tests.doubles.kong_proxy import KongProxy, parse_request


@dataclass
class Faults:
    failure_rate: float = 0.0  # share of requests that get a fault
    latency: float = 0.0  # seconds added to every request
    seed: int = 7
    # Answers for the next requests, in order: (status, headers); status 0 drops the
    # connection before the request is applied, -1 applies it and then drops the connection.
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick(self) -> str | None:
        with self._lock:
            if self._random.random() >= self.failure_rate:
                return None
            kind = self._random.choice(["status", "drop_before", "drop_after"])
            self.injected[kind] += 1
            return kind


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        payload = b"" if body is None or status == 204 else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _serve(self) -> None:
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        srv.requests[self.command] += 1
        srv.log.append((self.command, url.path))
        if srv.auth and self.headers.get(srv.auth[0]) != srv.auth[1]:
            self._send(401, {"message": "Invalid credentials. Token or User credentials "
                                        "required"}, {})
            return
        if srv.faults.latency:
            time.sleep(srv.faults.latency)
        fault: str | None
        if srv.faults.scripted:
            status, headers = srv.faults.scripted.pop(0)
            if status == 0:  # scripted connection drop
                self._drop()
                return
            if status > 0:
                self._send(status, {"message": "scripted"}, headers)
                return
            fault = "drop_after"  # -1: apply the request, then drop the connection
        else:
            fault = srv.faults.pick()
        if fault == "status":
            self._send(srv.faults._random.choice([500, 502, 503]),
                       {"message": "An unexpected error occurred"}, {})
            return
        if fault == "drop_before":
            self._drop()
            return
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, {"message": "Cannot parse JSON body"}, {})
                return
        status, out, headers = srv.admin.handle(self.command, url.path, query, body)
        if fault == "drop_after":
            self._drop()
            return
        self._send(status, out, headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class _ProxyHandler(BaseHTTPRequestHandler):
    """Kong's proxy port: every method goes through ``KongProxy.handle``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = parse_request(self.command, self.path, list(self.headers.items()), body)
        response = self.server.proxy.handle(request)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: KongProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients closing kept-alive connections are not errors


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out close their end; that is part of the tests, not an error.
        return
    admin: KongAdmin
    faults: Faults
    requests: Counter[str]
    log: list[tuple[str, str]]
    auth: tuple[str, str] | None


@dataclass
class KongDouble:
    admin: KongAdmin
    faults: Faults
    url: str
    server: _Server
    proxy: KongProxy | None = None
    proxy_url: str = ""

    @property
    def requests(self) -> Counter[str]:
        return self.server.requests

    def reset_counts(self) -> None:
        self.server.requests.clear()
        self.server.log.clear()

    def rows(self, coll: str) -> list[dict[str, Any]]:
        with self.admin.lock:
            return [dict(r) for r in self.admin.store.rows[coll].values()]


@contextmanager
def kong_double(*, dbless: bool = False, faults: Faults | None = None,
                auth: tuple[str, str] | None = None, proxy: bool = False
                ) -> Iterator[KongDouble]:
    """The Admin API on a free loopback port; with ``proxy`` also Kong's proxy port (the
    plugins, the balancer and its health checks) on another."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.admin = KongAdmin(dbless=dbless)
    server.faults = faults or Faults()
    server.requests = Counter()
    server.log = []
    server.auth = auth
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="kong-double", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    double = KongDouble(server.admin, server.faults, f"http://{host!s}:{port}", server)
    proxy_server: _ProxyServer | None = None
    proxy_thread: threading.Thread | None = None
    if proxy:
        proxy_server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        proxy_server.proxy = double.proxy = KongProxy(server.admin)
        proxy_thread = threading.Thread(target=proxy_server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, name="kong-proxy",
                                        daemon=True)
        proxy_thread.start()
        double.proxy_url = f"http://127.0.0.1:{proxy_server.server_address[1]}"
    try:
        yield double
    finally:
        if proxy_server is not None and proxy_thread is not None and double.proxy:
            proxy_server.shutdown()
            proxy_server.server_close()
            proxy_thread.join(timeout=5)
            double.proxy.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

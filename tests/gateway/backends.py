"""Small real HTTP backends on loopback for the gateway tests and benchmark.

Each answers ``/health`` (200, or 503 once ``healthy`` is cleared) and every other path for
every method with its own port, records every request it served (method, path and the
headers the gateway forwarded), and can hold a request open (``?hold=NAME``) until the test
releases it, to observe in-flight requests. ``stop()`` closes its listener (a dead
instance); ``start()`` brings it back on the same port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Backend:
    port: int
    hits: list[dict[str, Any]] = field(default_factory=list)
    holds: dict[str, threading.Event] = field(default_factory=dict)
    started: dict[str, threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    healthy: threading.Event = field(default_factory=threading.Event)
    server: _Server | None = None
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.healthy.set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def api_hits(self, method: str | None = None) -> int:
        with self.lock:
            return sum(1 for h in self.hits if h["path"].startswith("/api")
                       and (method is None or h["method"] == method))

    def hold(self, name: str) -> tuple[threading.Event, threading.Event]:
        """(started, release) events for a request to ``...?hold=name``."""
        with self.lock:
            self.started[name] = threading.Event()
            self.holds[name] = threading.Event()
            return self.started[name], self.holds[name]

    def start(self, server: _Server | None = None) -> None:
        server = server or _Server(("127.0.0.1", self.port), _Handler)
        server.backend = self
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Close the listener and every open connection: the instance is gone."""
        for event in self.holds.values():
            event.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server.close_connections()
            self.server = None
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def _serve(self) -> None:
        backend = self.server.backend
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if url.path == "/health":
            self._answer(200 if backend.healthy.is_set() else 503, {"status": "ok"})
            return
        with backend.lock:
            backend.hits.append({"method": self.command, "path": url.path,
                                 "query": url.query, "headers": dict(self.headers.items())})
        hold = parse_qs(url.query).get("hold", [""])[0]
        if hold:
            with backend.lock:
                started, release = backend.started.get(hold), backend.holds.get(hold)
            if started is not None and release is not None:
                started.set()
                release.wait(timeout=30)
        body: dict[str, Any] = {"backend": backend.port, "path": url.path,
                                "method": self.command}
        if url.path == "/api/big":  # larger than nginx's proxy buffers: spills to temp files
            body["pad"] = "x" * 512 * 1024
        self._answer(201 if self.command == "POST" else 200, body)

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        cid = self.headers.get("X-Correlation-ID")
        if cid:
            self.send_header("X-Correlation-ID", cid)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    backend: Backend

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()

    def track(self, connection: Any) -> None:
        with self._connections_lock:
            self._connections.append(connection)

    def close_connections(self) -> None:
        import socket

        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections.clear()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a gateway closing a kept-alive connection is not an error


@contextmanager
def backends(count: int) -> Iterator[list[Backend]]:
    pool: list[Backend] = []
    try:
        for _ in range(count):
            server = _Server(("127.0.0.1", 0), _Handler)
            backend = Backend(port=int(server.server_address[1]))
            backend.start(server)
            pool.append(backend)
        yield pool
    finally:
        for backend in pool:
            backend.stop()

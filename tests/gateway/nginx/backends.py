"""Small real HTTP backends on loopback for the nginx gateway tests and benchmark.

Each answers ``/health`` and ``/api/...`` with its own port, records every request it
served (path and the headers the gateway forwarded), and can hold a request open
(``/api/slow?hold=NAME``) until the test releases it, to observe in-flight requests.
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

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def api_hits(self) -> int:
        with self.lock:
            return sum(1 for h in self.hits if h["path"].startswith("/api"))

    def hold(self, name: str) -> tuple[threading.Event, threading.Event]:
        """(started, release) events for a request to ``/api/slow?hold=name``."""
        with self.lock:
            self.started[name] = threading.Event()
            self.holds[name] = threading.Event()
            return self.started[name], self.holds[name]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        backend = self.server.backend
        url = urlsplit(self.path)
        with backend.lock:
            backend.hits.append({"path": url.path, "headers": dict(self.headers.items())})
        hold = parse_qs(url.query).get("hold", [""])[0]
        if hold:
            with backend.lock:
                started, release = backend.started.get(hold), backend.holds.get(hold)
            if started is not None and release is not None:
                started.set()
                release.wait(timeout=30)
        body: dict[str, Any] = {"backend": backend.port, "path": url.path}
        if url.path == "/api/big":  # larger than nginx's proxy buffers: spills to temp files
            body["pad"] = "x" * 512 * 1024
        payload = json.dumps(body).encode()
        self.send_response(200)
        cid = self.headers.get("X-Correlation-ID")
        if cid:
            self.send_header("X-Correlation-ID", cid)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    backend: Backend


@contextmanager
def backends(count: int) -> Iterator[list[Backend]]:
    servers: list[_Server] = []
    threads: list[threading.Thread] = []
    try:
        for _ in range(count):
            server = _Server(("127.0.0.1", 0), _Handler)
            server.backend = Backend(port=int(server.server_address[1]))
            thread = threading.Thread(target=server.serve_forever,
                                      kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            servers.append(server)
            threads.append(thread)
        yield [s.backend for s in servers]
    finally:
        for server in servers:
            for event in server.backend.holds.values():
                event.set()
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)

"""The log forwarder's HTTP input behind the log token: the rendered nginx gate, run by a real
nginx in front of a stand-in for Fluent Bit's HTTP input (which has no shared-token option)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from kongstack.core.errors import InstallError
from kongstack.core.procs import Daemon, free_port, port_open
from tasks.providers.azure.role_files import log_gate_conf
from tests.support.services import require_binary

TOKEN = "log-token-0123456789abcdef"


class _Input(BaseHTTPRequestHandler):
    """Fluent Bit's HTTP input as the gate sees it: records what got through."""

    received: list[tuple[str, str | None, bytes]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Input.received.append((self.path, self.headers.get("Authorization"), body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str | None, bytes]]]]:
    nginx = require_binary("/usr/sbin/nginx")
    _Input.received = []
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Input)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = free_port()
    (tmp_path / "log-gate.conf").write_text(
        log_gate_conf(TOKEN, port, backend_port=int(backend.server_address[1])))
    temp = "".join(f"{kind}_temp_path {tmp_path}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\nerror_log {tmp_path}/error.log;\n"
        f"pid {tmp_path}/nginx.pid;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n{temp}include {tmp_path}/log-gate.conf;\n}}\n")
    daemon = Daemon(name=f"log-gate-{port}", run_dir=tmp_path)
    daemon.start([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                  "-g", "daemon off;"], ready=lambda: port_open("127.0.0.1", port),
                 log_file=tmp_path / "nginx.out", timeout=15)
    try:
        yield f"http://127.0.0.1:{port}", _Input.received
    finally:
        daemon.stop(grace=5)
        backend.shutdown()
        backend.server_close()


def test_only_kongs_posts_with_the_token_reach_the_input(
    gate: tuple[str, list[tuple[str, str | None, bytes]]]
) -> None:
    url, received = gate
    with httpx.Client(base_url=url, timeout=5) as http:
        ok = http.post("/kong", content=b'{"request":{}}',
                       headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 201
        assert received == [("/kong", None, b'{"request":{}}')]  # the token is not passed on
        refused = [
            http.post("/kong", content=b"{}"),                                     # no token
            http.post("/kong", content=b"{}", headers={"Authorization": "Bearer nope"}),
            http.post("/kong", content=b"{}",
                      headers={"Authorization": f"Bearer {TOKEN[:-1]}"}),      # a prefix
            http.post("/kong", content=b"{}", headers={"Authorization": TOKEN}),  # no scheme
        ]
        assert [r.status_code for r in refused] == [401, 401, 401, 401]
        assert http.get("/kong", headers={"Authorization": f"Bearer {TOKEN}"}).status_code \
            == 403
        assert http.post("/stock_api.x", content=b"{}",
                         headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
        big = http.post("/kong", content=b"x" * (2 * 1024 * 1024),
                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert big.status_code == 413
    assert len(received) == 1


def test_a_token_that_could_break_the_config_is_refused() -> None:
    for bad in ('short', 'x" 1; } server { listen 9999; #' + "a" * 20, "a" * 20 + "\n"):
        with pytest.raises(InstallError, match="log_token_secret"):
            log_gate_conf(bad, 8000)

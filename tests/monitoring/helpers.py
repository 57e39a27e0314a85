"""Test helpers for the monitoring area: a webhook receiver, API instances, PromQL polling."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from kongstack.core.procs import Daemon, free_port, http_ok
from kongstack.core.settings import REPO_ROOT


@dataclass
class WebhookInbox:
    """Alertmanager webhook payloads received on ``POST /alerts``."""

    url: str = ""
    payloads: list[dict[str, Any]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for payload in self.payloads:
                    if match(payload):
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching webhook call in {timeout}s: {self.payloads}")
                self.cond.wait(remaining)


@contextmanager
def webhook_server() -> Iterator[WebhookInbox]:
    inbox = WebhookInbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/alerts":
                self.send_response(404)
                self.end_headers()
                return
            with inbox.cond:
                inbox.payloads.append(json.loads(body))
                inbox.cond.notify_all()
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    inbox.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class ApiInstance:
    address: str
    daemon: Daemon
    log_file: Path


def start_stock_api(workdir: Path, redis_url: str) -> ApiInstance:
    """One real stock API instance (gunicorn, as the contract runs it) on a free port."""
    port = free_port()
    daemon = Daemon(name=f"stock-api-{port}", run_dir=workdir)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    env = {
        "PORT": str(port), "REDIS_URL": redis_url, "INSTANCE_ID": f"mon-test-{port}",
        "STOCK_API_DATA_DIR": str(workdir / "data"), "LOG_FILE": str(workdir / f"api-{port}.log"),
        "STOCK_API_DEBUG_ENDPOINTS": "true", "PYTHONPATH": str(REPO_ROOT),
    }
    daemon.start(
        [gunicorn, "-c", "python:stock_api.gunicorn_conf", "stock_api.app:create_app()"],
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/ready"),
        log_file=workdir / f"gunicorn-{port}.log", env=env, cwd=REPO_ROOT, timeout=60,
    )
    return ApiInstance(address=f"127.0.0.1:{port}", daemon=daemon,
                       log_file=Path(env["LOG_FILE"]))


class Prom:
    """A small client of a running Prometheus's HTTP API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10.0)

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/query", params={"query": promql})
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def parse_error(self, promql: str) -> str | None:
        """None when Prometheus accepts the expression, else its error message."""
        response = self.http.get("/api/v1/query", params={"query": promql})
        body = response.json()
        if response.status_code == 400 and body.get("errorType") == "bad_data":
            return str(body.get("error"))
        return None

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.http.get("/api/v1/targets").json()["data"][
            "activeTargets"
        ]
        return active

    def poll(self, probe: Callable[[], Any], timeout: float, what: str) -> Any:
        return poll(probe, timeout, what)


def poll(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    """Call ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen within {timeout}s (last: {last!r})")


@contextmanager
def nginx_with_stub_status(workdir: Path) -> Iterator[str]:
    """A real nginx serving only ``/nginx_status`` (what the local gateway's status server
    exposes) on a free loopback port; yields the status URL."""
    port = free_port()
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    temp = " ".join(f"{kind}_temp_path {workdir}/tmp/{kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"daemon off; worker_processes 1; pid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; {temp}\n"
        f"  server {{ listen 127.0.0.1:{port}; location = /nginx_status {{ stub_status; }} }}\n"
        "}\n"
    )
    url = f"http://127.0.0.1:{port}/nginx_status"
    daemon = Daemon(name=f"nginx-{port}", run_dir=workdir)
    daemon.start(["/usr/sbin/nginx", "-p", str(workdir), "-e", str(workdir / "error.log"),
                  "-c", str(conf)], ready=lambda: http_ok(url), log_file=workdir / "nginx.out",
                 timeout=15)
    try:
        yield url
    finally:
        daemon.stop(grace=5)

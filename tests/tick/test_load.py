"""``kongstack load``: bounded, open-loop, loopback-only unless told otherwise."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kongstack.cli.app import app
from kongstack.cli.load import LoadGenerator, check_url, pool_size
from kongstack.core.errors import ConfigError
from kongstack.core.procs import free_port


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    keys: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        _Handler.keys.append(self.headers.get("apikey"))
        status = 503 if self.path.startswith("/fail") else 200
        body = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_offers_the_requested_rate_for_the_requested_time(server: str) -> None:
    progress: list[Any] = []
    report = LoadGenerator(url=server, rps=50, duration=2).run(on_progress=progress.append)
    assert 95 <= report.sent <= 101  # 50 rps x 2 s, scheduled not best-effort
    assert report.failed == 0 and report.statuses == {"200": report.ok}
    assert progress and progress[-1].ok == report.ok


def test_server_errors_and_refused_connections_count_as_failed(server: str) -> None:
    report = LoadGenerator(url=server, rps=20, duration=0.5, paths=["/fail"]).run()
    assert report.ok == 0 and report.failed == report.sent > 0
    closed = f"http://127.0.0.1:{free_port()}"
    refused = LoadGenerator(url=closed, rps=20, duration=0.5).run()
    assert refused.failed == refused.sent > 0 and "ConnectError" in refused.errors


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://example.com", "ftp://127.0.0.1"])
def test_only_loopback_unless_allowed(url: str) -> None:
    with pytest.raises(ConfigError):
        check_url(url)


def test_bounds_are_enforced() -> None:
    with pytest.raises(ConfigError, match="rps"):
        LoadGenerator(url="http://127.0.0.1:1", rps=50_000, duration=1)
    with pytest.raises(ConfigError, match="duration"):
        LoadGenerator(url="http://127.0.0.1:1", rps=1, duration=86_400)


def test_cli_runs_and_reports(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONGSTACK_HOME", str(tmp_path))
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "autoscaler.prom").write_text(
        "kongstack_autoscaler_current_instances 4\nkongstack_autoscaler_desired_instances 5\n")
    assert pool_size(metrics / "autoscaler.prom") == (4, 5)
    monkeypatch.delenv("KONGSTACK_API_KEY", raising=False)
    monkeypatch.setenv("KONGSTACK_KEY_READER", "reader-key-from-env")  # the default consumer
    _Handler.keys.clear()
    result = CliRunner().invoke(app, ["load", "--rps", "20", "--duration", "1", "--url", server])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output
    assert set(_Handler.keys) == {"reader-key-from-env"}
    unknown = CliRunner().invoke(app, ["load", "--consumer", "nobody", "--url", server])
    assert unknown.exit_code == 2 and "'nobody' is not one of" in unknown.output


def test_key_commands_list_consumers_and_print_one_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONGSTACK_KEY_WRITER", "writer-key-from-env")
    listing = CliRunner().invoke(app, ["keys"])
    assert listing.exit_code == 0, listing.output
    assert "kongstack-key-reader" in listing.output and "writer-key-from-env" not in listing.output
    shown = CliRunner().invoke(app, ["key", "writer"])
    assert (shown.exit_code, shown.output) == (0, "writer-key-from-env\n")

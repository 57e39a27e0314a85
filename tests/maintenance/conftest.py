from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from kongstack.core.procs import Daemon, free_port, http_ok
from tests.support.services import require_binary


@contextmanager
def prometheus(workdir: Path, *, admin_api: bool) -> Iterator[str]:
    """A real Prometheus on a free loopback port scraping itself every second."""
    binary = require_binary("prometheus")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    if admin_api:
        argv.append("--web.enable-admin-api")
    daemon = Daemon(name=f"prometheus-{port}", run_dir=workdir)
    url = f"http://127.0.0.1:{port}"
    daemon.start(argv, ready=lambda: http_ok(f"{url}/-/ready"), log_file=workdir / "prom.log",
                 timeout=30)
    try:
        yield url
    finally:
        daemon.stop(grace=5)


def series_count(url: str, query: str, at: float | None = None) -> int:
    params = {"query": query} | ({"time": f"{at:.3f}"} if at is not None else {})
    body = httpx.get(f"{url}/api/v1/query", params=params, timeout=5).json()
    return len(body["data"]["result"])


def sample_time(url: str) -> float:
    """Timestamp of the newest ``up{job="self"}`` sample."""
    query = 'timestamp(up{job="self"})'
    body = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()
    return float(body["data"]["result"][0]["value"][1])


@pytest.fixture()
def prometheus_admin(tmp_path: Path) -> Iterator[str]:
    with prometheus(tmp_path / "prom-admin", admin_api=True) as url:
        yield url


@pytest.fixture()
def prometheus_plain(tmp_path: Path) -> Iterator[str]:
    with prometheus(tmp_path / "prom-plain", admin_api=False) as url:
        yield url

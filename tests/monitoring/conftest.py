"""Session fixtures: one real monitoring stack (Prometheus, Alertmanager, node_exporter,
redis_exporter) on free loopback ports, scraping two real stock API instances."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kongstack.core.procs import free_port
from tasks.providers.local.monitoring import NGINX_EXPORTER, LocalMonitoring, MonitoringPorts
from tests.monitoring.helpers import (
    ApiInstance,
    Prom,
    WebhookInbox,
    nginx_with_stub_status,
    start_stock_api,
    webhook_server,
)
from tests.support.services import require_binary

SCRAPE_INTERVAL_S = 1.0
RATE_WINDOW = "10s"  # recorded series are named for it (job:stock_api_requests:rate10s)


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookInbox]:
    with webhook_server() as inbox:
        yield inbox


@pytest.fixture(scope="session")
def api_instances(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[list[ApiInstance]]:
    workdir: Path = tmp_path_factory.mktemp("stock-api")
    instances: list[ApiInstance] = []
    try:
        for _ in range(2):
            instances.append(start_stock_api(workdir, redis_url))
        yield instances
    finally:
        for instance in instances:
            instance.daemon.stop(grace=5)


def have_nginx_exporter() -> bool:
    return all(Path(p).exists() for p in ("/usr/sbin/nginx", NGINX_EXPORTER))


@pytest.fixture(scope="session")
def nginx_status(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """The local gateway's stub_status URL (a real nginx), or None without the nginx exporter."""
    if not have_nginx_exporter():
        yield None
        return
    with nginx_with_stub_status(tmp_path_factory.mktemp("nginx")) as url:
        yield url


@pytest.fixture(scope="session")
def monitoring(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, webhook: WebhookInbox,
    nginx_status: str | None,
) -> Iterator[LocalMonitoring]:
    for binary in ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter",
                   "prometheus-redis-exporter"):
        require_binary(binary)
    mon = LocalMonitoring(
        home=tmp_path_factory.mktemp("monitoring"),
        ports=MonitoringPorts(prometheus=free_port(), alertmanager=free_port(),
                              node_exporter=free_port(), redis_exporter=free_port(),
                              nginx_exporter=free_port() if nginx_status else None),
        webhook_url=webhook.url,
        redis_url=redis_url,
        nginx_status_url=nginx_status,
        scrape_interval="1s",
        evaluation_interval="1s",
        group_wait="0s",
        overrides={
            "scrape": {"rate_window": RATE_WINDOW, "file_sd_refresh": "5s"},
            "alerts": {"instance_down": {"for": "1s"}},
            "alertmanager": {"group_interval": "1s"},
        },
    )
    try:
        mon.start()
        yield mon
    finally:
        mon.stop()


@pytest.fixture(scope="session")
def prom(monitoring: LocalMonitoring) -> Prom:
    return Prom(monitoring.prometheus_url)

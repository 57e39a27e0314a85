"""The local monitoring role: ports and paths from LocalSettings, idempotent start."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from kongstack.core.procs import free_port
from kongstack.core.settings import LocalSettings
from tasks.providers.local.monitoring import LocalMonitoring, MonitoringPorts
from tests.monitoring.helpers import Prom, WebhookInbox
from tests.support.services import require_binary


def test_from_settings_uses_the_settings_ports_and_var_layout(tmp_path: Path) -> None:
    settings = LocalSettings(home=tmp_path, prometheus_port=29090, alertmanager_port=29093,
                             webhook_port=28090, gateway_status_port=28081)
    mon = LocalMonitoring.from_settings(settings, redis_url="redis://127.0.0.1:26379/0",
                                        nginx_status=True)
    files = mon.write_config()
    assert files.prometheus_config == tmp_path / "prometheus" / "prometheus.yml"
    assert files.stock_api_targets == tmp_path / "prometheus" / "targets" / "stock_api.json"
    assert mon.textfile_dir == tmp_path / "metrics" and mon.textfile_dir.is_dir()
    assert mon.nginx_status_url == "http://127.0.0.1:28081/nginx_status"

    prom = yaml.safe_load(files.prometheus_config.read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:29090"]
    assert set(jobs) == {"prometheus", "nginx", "stock_api", "redis", "node"}
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:29093"]
    am = yaml.safe_load(files.alertmanager_config.read_text())
    webhook = next(r for r in am["receivers"] if r["name"] == "autoscale-fastpath")
    assert webhook["webhook_configs"][0]["url"] == "http://127.0.0.1:28090/alerts"
    # A later process (kongstack monitoring stop, a second start) finds the same exporters.
    again = LocalMonitoring.from_settings(settings, redis_url="redis://127.0.0.1:26379/0",
                                          nginx_status=True)
    assert again.ports == mon.ports


def test_start_is_idempotent(monitoring: LocalMonitoring) -> None:
    before = {d.name: d.pid() for d in monitoring.daemons()}
    assert all(before.values())
    monitoring.start()
    assert {d.name: d.pid() for d in monitoring.daemons()} == before
    assert all(monitoring.status().values())


def test_reload_applies_a_changed_threshold(monitoring: LocalMonitoring) -> None:
    original = monitoring.overrides
    alerts = original.get("alerts")
    assert isinstance(alerts, dict)
    monitoring.overrides = {**original, "alerts": {**alerts, "slow_responses": {"value": 4321}}}
    try:
        monitoring.reload()
        rules = httpx.get(f"{monitoring.prometheus_url}/api/v1/rules", timeout=10).json()
        slow = next(r for g in rules["data"]["groups"] for r in g["rules"]
                    if r["name"] == "SlowResponses")
        assert slow["query"].endswith("> 4.321")  # 4321 ms, compared in seconds
    finally:
        monitoring.overrides = original
        monitoring.reload()


def test_mongodb_exporter_gets_the_uri_from_the_environment_not_argv(
    tmp_path: Path, webhook: WebhookInbox
) -> None:
    require_binary("prometheus-mongodb-exporter")
    secret_uri = "mongodb://kongstack:pw-31337@127.0.0.1:1/kongstack"  # nothing listens there
    mon = LocalMonitoring(
        home=tmp_path,
        ports=MonitoringPorts(prometheus=free_port(), alertmanager=free_port(),
                              node_exporter=free_port(), mongodb_exporter=free_port()),
        webhook_url=webhook.url, mongodb_uri=secret_uri,
    )
    try:
        mon.start()
        exporter = next(d for d in mon.daemons() if d.name == "mongodb-exporter")
        pid = exporter.pid()
        assert pid is not None
        assert b"pw-31337" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"pw-31337" not in mon.files.prometheus_config.read_bytes()
        prom = Prom(mon.prometheus_url)
        prom.poll(lambda: any(t["labels"]["job"] == "mongodb" for t in prom.targets()), 15,
                  "mongodb scrape target")
    finally:
        assert "mongodb-exporter" in mon.stop()

"""The monitoring role on this machine: Prometheus, Alertmanager and exporters as daemons.

Everything listens on loopback ports (LocalSettings, or the ports given), keeps its config and
data under ``home`` (``var/`` by default) and is tracked by a pid file, so start is idempotent
and stop only touches what we started::

    mon = LocalMonitoring.from_settings(load_settings(), redis_url="redis://127.0.0.1:16379/0")
    mon.start()   # renders config; starts node/redis exporters, Alertmanager, Prometheus
    mon.stop()

Layout under ``home``: ``prometheus/{prometheus.yml,rules/,targets/stock_api.json,data/}``,
``alertmanager/{alertmanager.yml,data/}``, ``metrics/`` (node_exporter textfile directory, where
the autoscaler writes ``autoscaler.prom``), ``log/<daemon>.log``, ``run/<daemon>.pid``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kongstack.core.errors import SetupError
from kongstack.core.monitoring_config import parse_monitoring_config
from kongstack.core.procs import Daemon, free_port, http_ok, port_open
from kongstack.core.settings import LocalSettings
from tasks.monitoring import (
    MonitoringConfig,
    MonitoringFiles,
    monitoring_paths,
    write_monitoring_files,
)

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
REDIS_EXPORTER = "/usr/bin/prometheus-redis-exporter"
NGINX_EXPORTER = "/usr/bin/prometheus-nginx-exporter"
MONGODB_EXPORTER = "/usr/bin/prometheus-mongodb-exporter"
_START_TIMEOUT = 30.0


def _binary(path: str) -> str:
    found = shutil.which(path) or (path if Path(path).exists() else None)
    if not found:
        raise SetupError(f"{path} is not installed (run scripts/setup)")
    return found


@dataclass(frozen=True)
class MonitoringPorts:
    prometheus: int
    alertmanager: int
    node_exporter: int
    redis_exporter: int | None = None
    nginx_exporter: int | None = None
    mongodb_exporter: int | None = None


@dataclass
class LocalMonitoring:
    """Prometheus + Alertmanager + exporters for the local stack."""

    home: Path
    ports: MonitoringPorts
    webhook_url: str
    redis_url: str | None = None
    nginx_status_url: str | None = None  # e.g. http://127.0.0.1:18081/nginx_status
    mongodb_uri: str | None = None  # only with a real MongoDB (MONGODB_URI); may hold a password
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    group_wait: str = "10s"
    overrides: dict[str, object] = field(default_factory=dict)  # extra MonitoringConfig fields
    host: str = "127.0.0.1"

    @classmethod
    def from_settings(
        cls, settings: LocalSettings, *, redis_url: str | None = None,
        nginx_status: bool = False, mongodb_uri: str | None = None, **kwargs: object,
    ) -> LocalMonitoring:
        """Ports from LocalSettings. Exporters have no fixed ports: free ones are picked once and
        remembered in ``run/monitoring-ports.json``, so a later process finds the same daemons."""
        remembered = settings.run_dir / "monitoring-ports.json"
        try:
            known: dict[str, int] = json.loads(remembered.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            known = {}

        def port(name: str, wanted: bool) -> int | None:
            if not wanted:
                return None
            known.setdefault(name, free_port())
            return known[name]

        ports = MonitoringPorts(
            prometheus=settings.prometheus_port, alertmanager=settings.alertmanager_port,
            node_exporter=port("node_exporter", True) or 0,
            redis_exporter=port("redis_exporter", redis_url is not None),
            nginx_exporter=port("nginx_exporter", nginx_status),
            mongodb_exporter=port("mongodb_exporter", mongodb_uri is not None),
        )
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(json.dumps(known, indent=2, sort_keys=True))
        status = (f"http://{settings.host}:{settings.gateway_status_port}/nginx_status"
                  if nginx_status else None)
        return cls(home=settings.home, ports=ports, redis_url=redis_url, nginx_status_url=status,
                   mongodb_uri=mongodb_uri,
                   webhook_url=f"http://{settings.host}:{settings.webhook_port}/alerts",
                   **kwargs)  # type: ignore[arg-type]

    # -- configuration -------------------------------------------------------------------
    def config(self) -> MonitoringConfig:
        h, p = self.host, self.ports
        scrape: dict[str, object] = {
            "scrape_interval": self.scrape_interval,
            "evaluation_interval": self.evaluation_interval,
            "gateway": "nginx",
            "prometheus": [f"{h}:{p.prometheus}"],
            "alertmanagers": [f"{h}:{p.alertmanager}"],
            "node_exporter": [f"{h}:{p.node_exporter}"],
            "redis_exporter": [f"{h}:{p.redis_exporter}"] if p.redis_exporter else [],
            "nginx_exporter": [f"{h}:{p.nginx_exporter}"] if p.nginx_exporter else [],
            "mongodb_exporter": [f"{h}:{p.mongodb_exporter}"] if p.mongodb_exporter else [],
        }
        data: dict[str, object] = {
            "scrape": scrape,
            "alertmanager": {"webhook": {"url": self.webhook_url},
                             "group_wait": self.group_wait},
        }
        for key, value in self.overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}  # type: ignore[dict-item]
            else:
                data[key] = value
        return parse_monitoring_config(data)

    def write_config(self) -> MonitoringFiles:
        files = write_monitoring_files(self.config(), self.home, resolve_secrets=True)
        self.textfile_dir.mkdir(parents=True, exist_ok=True)
        return files

    @property
    def files(self) -> MonitoringFiles:
        return monitoring_paths(self.home, self.config())

    @property
    def textfile_dir(self) -> Path:
        return self.home / "metrics"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.ports.prometheus}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.host}:{self.ports.alertmanager}"

    def _daemon(self, name: str) -> Daemon:
        return Daemon(name=name, run_dir=self.home / "run")

    def _log(self, name: str) -> Path:
        return self.home / "log" / f"{name}.log"

    # -- lifecycle -----------------------------------------------------------------------
    def daemons(self) -> list[Daemon]:
        names = ["prometheus", "alertmanager", "node-exporter"]
        if self.ports.redis_exporter:
            names.append("redis-exporter")
        if self.ports.nginx_exporter:
            names.append("nginx-exporter")
        if self.ports.mongodb_exporter:
            names.append("mongodb-exporter")
        return [self._daemon(n) for n in names]

    def start(self) -> MonitoringFiles:
        """Render config, then start exporters, Alertmanager and Prometheus (idempotent)."""
        files = self.write_config()
        h, p = self.host, self.ports
        self._start("node-exporter", [
            _binary(NODE_EXPORTER), f"--web.listen-address={h}:{p.node_exporter}",
            f"--collector.textfile.directory={self.textfile_dir}",
        ], f"http://{h}:{p.node_exporter}/metrics")
        if p.redis_exporter and self.redis_url:
            self._start("redis-exporter", [
                _binary(REDIS_EXPORTER), "-redis.addr", self.redis_url,
                "-web.listen-address", f"{h}:{p.redis_exporter}",
            ], f"http://{h}:{p.redis_exporter}/metrics")
        if p.nginx_exporter and self.nginx_status_url:
            self._start("nginx-exporter", [
                _binary(NGINX_EXPORTER), "-nginx.scrape-uri", self.nginx_status_url,
                "-web.listen-address", f"{h}:{p.nginx_exporter}",
                "-nginx.retries", "10", "-nginx.retry-interval", "1s",
            ], f"http://{h}:{p.nginx_exporter}/metrics")
        if p.mongodb_exporter and self.mongodb_uri:
            # The URI goes in the environment, not argv, where `ps` would show its password.
            self._start("mongodb-exporter", [
                _binary(MONGODB_EXPORTER), "-web.listen-address", f"{h}:{p.mongodb_exporter}",
            ], None, port=p.mongodb_exporter, env={"MONGODB_URL": self.mongodb_uri})
        am_data = self.home / "alertmanager" / "data"
        am_data.mkdir(parents=True, exist_ok=True)
        self._start("alertmanager", [
            _binary(ALERTMANAGER), f"--config.file={files.alertmanager_config}",
            f"--storage.path={am_data}", f"--web.listen-address={h}:{p.alertmanager}",
            "--cluster.listen-address=",  # single node: no gossip port
        ], f"{self.alertmanager_url}/-/ready")
        prom_data = self.home / "prometheus" / "data"
        prom_data.mkdir(parents=True, exist_ok=True)
        self._start("prometheus", [
            _binary(PROMETHEUS), f"--config.file={files.prometheus_config}",
            f"--storage.tsdb.path={prom_data}", f"--web.listen-address={h}:{p.prometheus}",
            "--web.enable-lifecycle",  # POST /-/reload after a config change
            "--storage.tsdb.retention.time=7d",
        ], f"{self.prometheus_url}/-/ready")
        return files

    def _start(self, name: str, argv: list[str], ready_url: str | None, *,
               port: int | None = None, env: dict[str, str] | None = None) -> None:
        def ready() -> bool:
            # The mongodb exporter queries MongoDB on every scrape: probe the port, not /metrics.
            return http_ok(ready_url) if ready_url else port_open(self.host, port or 0)

        self._daemon(name).start(argv, ready=ready, log_file=self._log(name), env=env,
                                 cwd=self.home, timeout=_START_TIMEOUT)

    def stop(self) -> list[str]:
        """Stop every daemon this stack started; returns the names that were running."""
        stopped = []
        for daemon in reversed(self.daemons()):
            if daemon.stop(grace=10.0):
                stopped.append(daemon.name)
        return stopped

    def status(self) -> dict[str, bool]:
        return {d.name: d.running() for d in self.daemons()}

    def reload(self) -> None:
        """Re-render config and ask both servers to reload it (file_sd needs no reload)."""
        self.write_config()
        for url in (f"{self.prometheus_url}/-/reload", f"{self.alertmanager_url}/-/reload"):
            try:
                response = httpx.post(url, timeout=10.0)
            except httpx.HTTPError as exc:
                raise SetupError(f"reload {url} failed: {exc}") from exc
            if response.status_code >= 400:
                raise SetupError(f"reload {url} failed: {response.status_code} {response.text}")

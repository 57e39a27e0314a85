"""Monitoring for the stack: Prometheus config, rules, Alertmanager routing, file_sd targets.

Public surface::

    cfg = load_monitoring_config(Path("deployments/prometheus/monitoring.yaml"))
    files = write_monitoring_files(cfg, Path("var"))      # prometheus.yml, rules, alertmanager.yml
    write_stock_api_targets(files.stock_api_targets, ["127.0.0.1:18101"], {"stack": "kongstack"})

Recording-rule names (``level:metric:operations``, base units) are documented in
``tasks.monitoring.rules`` (``RecordedNames``: ``job:stock_api_requests:rate1m``, ...).
``python -m tasks.monitoring CONFIG OUT_DIR`` regenerates the committed files under deployments/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kongstack.core.files import write_if_changed
from kongstack.core.monitoring_config import (
    AlertmanagerConfig,
    AlertsConfig,
    MonitoringConfig,
    ScrapeConfig,
    SecretRef,
    load_monitoring_config,
    parse_monitoring_config,
)
from tasks.monitoring.alertmanager import render_alertmanager_config, write_alertmanager_secrets
from tasks.monitoring.file_sd import read_stock_api_targets, write_stock_api_targets
from tasks.monitoring.prometheus import render_prometheus_config
from tasks.monitoring.rules import RECORDED_NAMES, RecordedNames, render_rules

__all__ = [
    "RECORDED_NAMES", "RecordedNames", "AlertmanagerConfig",
    "AlertsConfig", "MonitoringConfig", "MonitoringFiles", "ScrapeConfig", "SecretRef",
    "RULES_FILE", "load_monitoring_config", "monitoring_paths", "parse_monitoring_config",
    "read_stock_api_targets",
    "render_alertmanager_config", "render_prometheus_config", "render_rules",
    "write_alertmanager_secrets", "write_monitoring_files", "write_stock_api_targets",
]

RULES_FILE = "rules/kongstack.rules.yml"


@dataclass(frozen=True)
class MonitoringFiles:
    prometheus_config: Path
    rules: Path
    alertmanager_config: Path
    stock_api_targets: Path
    secrets_dir: Path


def monitoring_paths(
    out_dir: Path, cfg: MonitoringConfig, secrets_dir: Path | None = None
) -> MonitoringFiles:
    """Layout: ``OUT/prometheus/{prometheus.yml,rules/,targets/}``, ``OUT/alertmanager/``."""
    prom = out_dir / "prometheus"
    return MonitoringFiles(
        prometheus_config=prom / "prometheus.yml",
        rules=prom / RULES_FILE,
        alertmanager_config=out_dir / "alertmanager" / "alertmanager.yml",
        stock_api_targets=prom / cfg.scrape.stock_api_file_sd,
        secrets_dir=secrets_dir or out_dir / "alertmanager" / "secrets",
    )


def write_monitoring_files(
    cfg: MonitoringConfig,
    out_dir: Path,
    *,
    resolve_secrets: bool = False,
    secrets_dir: Path | None = None,
) -> MonitoringFiles:
    """Render every file (idempotent: unchanged files are not rewritten).

    ``resolve_secrets`` also writes the Alertmanager secret files from env/Secret blocks; leave
    it off when rendering files that get committed. ``secrets_dir`` is where Alertmanager will
    find them (default ``OUT/alertmanager/secrets``).
    """
    files = monitoring_paths(out_dir, cfg, secrets_dir)
    write_if_changed(files.rules, render_rules(cfg))
    write_if_changed(files.prometheus_config, render_prometheus_config(cfg, [RULES_FILE]))
    write_if_changed(files.alertmanager_config,
                      render_alertmanager_config(cfg, files.secrets_dir))
    if not files.stock_api_targets.exists():
        write_stock_api_targets(files.stock_api_targets, [])
    if resolve_secrets:
        write_alertmanager_secrets(cfg, files.secrets_dir)
    return files

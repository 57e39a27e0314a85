"""Prefect tasks over the monitoring helpers, for the deploy-stack install step and the
autoscale flow (one I/O step each; plain-data arguments, no live clients)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from kongstack.core.retry import retry_if
from tasks.monitoring import parse_monitoring_config, write_monitoring_files
from tasks.monitoring.elasticsearch import ElasticsearchClient, LogStoreError
from tasks.monitoring.file_sd import write_stock_api_targets


def log_store_unreachable(exc: BaseException) -> bool:
    """Transient: the store failed or could not be reached; a rejected (4xx) template will not
    improve on a retry, and neither will any other error."""
    return isinstance(exc, LogStoreError) and "HTTP 4" not in str(exc)


@task(name="render-monitoring-config", cache_policy=NO_CACHE, timeout_seconds=60)
def render_monitoring_config(
    config: dict[str, Any] | None, out_dir: str, resolve_secrets: bool = True
) -> dict[str, str]:
    """Write prometheus.yml, rules and alertmanager.yml (+ secret files) under ``out_dir``."""
    files = write_monitoring_files(parse_monitoring_config(config), Path(out_dir),
                                   resolve_secrets=resolve_secrets)
    return {"prometheus": str(files.prometheus_config), "rules": str(files.rules),
            "alertmanager": str(files.alertmanager_config),
            "stock_api_targets": str(files.stock_api_targets)}


@task(name="update-stock-api-targets", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=[0.2, 1.0], timeout_seconds=10)
def update_stock_api_targets(
    path: str, addresses: list[str], labels: dict[str, str] | None = None
) -> bool:
    """Rewrite the file_sd list when the pool changed; False when it was already current."""
    return write_stock_api_targets(Path(path), addresses, labels)


@task(name="install-log-store", cache_policy=NO_CACHE, retries=3,
      retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_if(log_store_unreachable),
      timeout_seconds=120)
def install_log_store() -> str:
    """Install the index template, ILM policy and ingest pipeline when ELASTICSEARCH_URL is set."""
    client = ElasticsearchClient.from_env()
    if client is None:
        return "skipped: ELASTICSEARCH_URL is not set"
    with client:
        client.install()
        return f"installed index template, ILM policy and pipeline at {client.url}"

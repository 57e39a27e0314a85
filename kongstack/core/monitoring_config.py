"""The typed monitoring configuration: what is scraped, alert thresholds, where alerts go.

Parsed once at the edge (``load_monitoring_config``); unknown keys are rejected and errors name
the field. Secrets (SMTP password, Slack URL) are *references* to an environment variable or a
Prefect Secret block, resolved only when the runtime secret files are written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from kongstack.core.errors import ConfigError
from kongstack.core.yamlfile import load_yaml

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$")


def _duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError(f"{value!r} is not a Prometheus duration such as 30s, 5m or 1h30m")
    return value


_UNIT_SECONDS: dict[str, float] = {
    "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000,
}


def duration_seconds(value: str) -> float:
    """Seconds in a Prometheus duration (``1m30s`` -> 90.0)."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", value)
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in parts))


def _host_port(value: str) -> str:
    if not _HOST_PORT.match(value):
        raise ValueError(f"{value!r} is not host:port")
    return value


Duration = Annotated[str, AfterValidator(_duration)]
HostPort = Annotated[str, AfterValidator(_host_port)]
Severity = Literal["info", "warning", "critical"]
FASTPATH_MIN_GROUP_INTERVAL_S = 10


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Threshold(_Strict):
    """An alert that fires when a value stays beyond ``value`` for ``for``."""

    value: float
    for_: Duration = Field(default="5m", alias="for")
    severity: Severity = "warning"


class Condition(_Strict):
    """An alert with no tunable threshold (a state that must hold for ``for``)."""

    for_: Duration = Field(default="1m", alias="for")
    severity: Severity = "critical"


def _t(value: float, for_: str, severity: str = "warning") -> Threshold:
    return Threshold.model_validate({"value": value, "for": for_, "severity": severity})


def _c(for_: str, severity: str = "critical") -> Condition:
    return Condition.model_validate({"for": for_, "severity": severity})


class AlertsConfig(_Strict):
    """Thresholds of the seed's alert system (defaults follow its scale-up conditions)."""

    host_high_cpu: Threshold = _t(85, "5m")  # percent busy, whole host
    host_high_memory: Threshold = _t(85, "5m")  # percent used, whole host
    instance_high_cpu: Threshold = _t(80, "3m")  # percent of one core
    instance_high_memory: Threshold = _t(512, "5m")  # resident MiB
    slow_responses: Threshold = _t(1000, "2m")  # p95 ms per job
    instance_slow_responses: Threshold = _t(1000, "2m")  # p95 ms
    high_error_rate: Threshold = _t(0.05, "2m", "critical")  # 5xx ratio
    high_request_rate: Threshold = _t(60, "0s")  # API requests/s per stock API instance
    instance_down: Condition = _c("1m")
    upstream_target_unhealthy: Condition = _c("1m")
    scrape_target_down: Condition = _c("2m")
    dependency_down: Condition = _c("1m", "warning")  # instances serve degraded
    autoscaler_pinned_at_max: Condition = _c("10m", "warning")
    autoscale_ticks_failing: Threshold = _t(3, "0s", "critical")
    autoscaler_stale: Threshold = _t(120, "1m", "critical")  # seconds
    # Each alert's runbook_url is this plus "#<alert name, lower case>" (docs/runbook.md has one
    # section per alert): point it at where operators read the docs, e.g. the repository
    # browser's URL of docs/runbook.md.
    runbook_url: str = "docs/runbook.md"


class ScrapeConfig(_Strict):
    """What Prometheus scrapes. Empty target lists leave the job out."""

    scrape_interval: Duration = "15s"
    evaluation_interval: Duration = "15s"
    scrape_timeout: Duration | None = None  # None: Prometheus uses min(10s, interval)
    rate_window: Duration = "1m"  # window of rate() in recording rules; >= 4 scrape intervals
    gateway: Literal["kong", "nginx"] = "nginx"
    kong: list[HostPort] = ["127.0.0.1:8001"]  # Admin API (8001) or Status API (8100)
    kong_metrics_path: str = "/metrics"
    nginx_exporter: list[HostPort] = []
    stock_api_file_sd: str = "targets/stock_api.json"  # relative to prometheus.yml's directory
    file_sd_refresh: Duration = "30s"  # fallback re-read; changes are normally seen by inotify
    redis_exporter: list[HostPort] = []
    mongodb_exporter: list[HostPort] = []
    node_exporter: list[HostPort] = []
    prometheus: list[HostPort] = ["127.0.0.1:9090"]
    alertmanagers: list[HostPort] = ["127.0.0.1:9093"]
    external_labels: dict[str, str] = {"stack": "kongstack"}


class SecretRef(_Strict):
    """Where a secret comes from: an environment variable or a Prefect Secret block."""

    env: str | None = None
    block: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.block is None):
            raise ValueError("give exactly one of 'env' or 'block'")
        return self

    def resolve(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"secret environment variable {self.env} is not set")
            return value
        from prefect.blocks.system import Secret  # lazy: prefect import costs ~0.7 s

        name = str(self.block)
        try:
            block: Any = Secret.load(name)
            return str(block.get())
        except ValueError as exc:
            raise ConfigError(f"Prefect Secret block {self.block!r} not found") from exc


class WebhookReceiver(_Strict):
    """The autoscale fast path (kongstack/cli/fastpath.py) or any Alertmanager-webhook consumer."""

    url: str = "http://127.0.0.1:18090/alerts"
    send_resolved: bool = True


class EmailReceiver(_Strict):
    to: str
    from_: str = Field(alias="from")
    smarthost: HostPort
    auth_username: str | None = None
    auth_password: SecretRef | None = None
    require_tls: bool = True


class SlackReceiver(_Strict):
    channel: str
    api_url: SecretRef  # the incoming-webhook URL is itself the credential


class TeamsReceiver(_Strict):
    """Alertmanager 0.25 (Debian 12) has no msteams_configs: alerts go through a
    prometheus-msteams bridge, which holds the Teams connector URL in its own config."""

    bridge_url: str
    send_resolved: bool = True


class AlertmanagerConfig(_Strict):
    group_by: list[str] = ["alertname", "job"]
    group_wait: Duration = "10s"
    group_interval: Duration = "1m"
    repeat_interval: Duration = "4h"
    # The autoscale fast-path route: group_wait is 0s; group_interval also bounds how long a
    # webhook delivery may take (Alertmanager's notify timeout), so it must stay >= 10s.
    fastpath_group_interval: Duration = "10s"
    fastpath_repeat_interval: Duration = "1m"
    webhook: WebhookReceiver = WebhookReceiver()
    email: EmailReceiver | None = None
    slack: SlackReceiver | None = None
    teams: TeamsReceiver | None = None
    notify_severities: list[Severity] = ["warning", "critical"]  # sent to people

    @model_validator(mode="after")
    def _fastpath_interval_long_enough(self) -> AlertmanagerConfig:
        if duration_seconds(self.fastpath_group_interval) < FASTPATH_MIN_GROUP_INTERVAL_S:
            raise ValueError(
                f"fastpath_group_interval must be at least {FASTPATH_MIN_GROUP_INTERVAL_S}s "
                "(webhook deliveries time out within one group interval)")
        return self


class MonitoringConfig(_Strict):
    scrape: ScrapeConfig = ScrapeConfig()
    alerts: AlertsConfig = AlertsConfig()
    alertmanager: AlertmanagerConfig = AlertmanagerConfig()


def parse_monitoring_config(data: object) -> MonitoringConfig:
    """Validate a mapping; ConfigError names each bad field (``alerts.host_high_cpu.value``)."""
    try:
        return MonitoringConfig.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid monitoring config: {problems}") from exc


def load_monitoring_config(path: Path) -> MonitoringConfig:
    return parse_monitoring_config(load_yaml(path, what="monitoring config"))

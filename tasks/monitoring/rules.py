"""Prometheus recording and alerting rules, generated from ``MonitoringConfig``.

Recording rules follow Prometheus' ``level:metric:operations`` naming, in base units (seconds,
ratios 0..1, CPU in cores = CPU-seconds per second). ``W`` is ``scrape.rate_window`` (the
committed config: ``1m``), so a name says which window it was computed over.

- ``job:stock_api_requests:rateW`` {job}: API requests/s (``instance:`` the same per instance).
- ``job:stock_api_request_duration_seconds:p95_W`` {job}: p95 latency in seconds; absent when
  there was no traffic (``instance:`` per instance).
- ``job:stock_api_request_errors_per_requests:ratio_rateW`` {job}: 5xx / all (0..1); absent with
  no traffic (``instance:`` per instance).
- ``instance:process_cpu_seconds:rateW`` {job, instance}: CPU of one stock API instance, in
  cores (0.8 = 80 % of one core); ``job:process_cpu_seconds:avg_rateW``: the pool's mean.
- ``job:up:sum`` {job}: stock API targets that answered their last scrape (0 when all are down).
- ``instance:node_cpu_utilisation:rateW``, ``instance:node_memory_utilisation:ratio``
  {job, instance}: per host (node_exporter), 0..1.
- Kong (per service): ``service:kong_http_requests:rateW``,
  ``service:kong_request_latency_seconds:p95_W`` (the plugin's ms histogram / 1000),
  ``service:kong_http_request_errors_per_requests:ratio_rateW``; nginx (rate only, stub_status
  has no latency or codes): ``job:nginx_http_requests:rateW``.

Stock API request rules count only API routes (``route=~"/api.*"``): probes, scrapes and debug
routes (``/health``, ``/ready``, ``/metrics``, ``/debug/*``) are not load, and a 503 from
``/ready`` during start-up is not an error rate.

The autoscaler (tasks/tick/observe.py) reads the request rate, p95 and error ratio rules first.

Alerts carry ``severity``, ``autoscale="true"`` when the autoscale fast path should react, and
``summary``, ``description`` and ``runbook_url`` (a section of docs/runbook.md, one per alert)
annotations. Thresholds in the config keep the units people think in (%, ms, MiB); the
expressions compare base units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from kongstack.core.monitoring_config import Condition, MonitoringConfig, Threshold

STOCK_API_JOB = "stock_api"
API_ROUTES = "/api.*"  # Flask URL rules of the API; regexes are anchored
INST = "{{ $labels.instance }}"  # Prometheus alert templates, rendered per alert
JOB = "{{ $labels.job }}"
_API_REQS = "stock_api_requests_total"
_API_HIST = "stock_api_request_duration_seconds"


@dataclass(frozen=True)
class RecordedNames:
    """The recorded series for one rate window (``RecordedNames("1m").request_rate``)."""

    window: str

    @property
    def request_rate(self) -> str:
        return f"job:stock_api_requests:rate{self.window}"

    @property
    def latency_p95(self) -> str:
        return f"job:{_API_HIST}:p95_{self.window}"

    @property
    def error_ratio(self) -> str:
        return f"job:stock_api_request_errors_per_requests:ratio_rate{self.window}"

    @property
    def instance_request_rate(self) -> str:
        return f"instance:stock_api_requests:rate{self.window}"

    @property
    def instance_latency_p95(self) -> str:
        return f"instance:{_API_HIST}:p95_{self.window}"

    @property
    def instance_error_ratio(self) -> str:
        return f"instance:stock_api_request_errors_per_requests:ratio_rate{self.window}"

    @property
    def instance_cpu(self) -> str:
        return f"instance:process_cpu_seconds:rate{self.window}"

    @property
    def pool_cpu(self) -> str:
        return f"job:process_cpu_seconds:avg_rate{self.window}"

    @property
    def pool_size(self) -> str:
        return "job:up:sum"

    @property
    def host_cpu(self) -> str:
        return f"instance:node_cpu_utilisation:rate{self.window}"

    @property
    def host_memory(self) -> str:
        return "instance:node_memory_utilisation:ratio"

    @property
    def kong_request_rate(self) -> str:
        return f"service:kong_http_requests:rate{self.window}"

    @property
    def kong_latency_p95(self) -> str:
        return f"service:kong_request_latency_seconds:p95_{self.window}"

    @property
    def kong_error_ratio(self) -> str:
        return f"service:kong_http_request_errors_per_requests:ratio_rate{self.window}"

    @property
    def nginx_request_rate(self) -> str:
        return f"job:nginx_http_requests:rate{self.window}"

    def all(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in (
            "request_rate", "latency_p95", "error_ratio", "instance_request_rate",
            "instance_latency_p95", "instance_error_ratio", "instance_cpu", "pool_cpu",
            "pool_size", "host_cpu", "host_memory", "kong_request_rate", "kong_latency_p95",
            "kong_error_ratio", "nginx_request_rate"))


DEFAULT_WINDOW = "1m"
RECORDED_NAMES = RecordedNames(DEFAULT_WINDOW).all()
"""The recorded series of the default (and committed) rate window."""


def _ratio(total: str, errors: str, by: str) -> str:
    """5xx/all; 0 when traffic had no errors; absent (not NaN) when there was no traffic."""
    return (
        f"(sum by ({by}) (rate({errors})) or 0 * sum by ({by}) (rate({total})))"
        f" / (sum by ({by}) (rate({total})) > 0)"
    )


def _p95(buckets: str, count: str, by: str, scale: str) -> str:
    """p95 from a histogram; filtered to where there was traffic so it is never NaN."""
    return (
        f"{scale}histogram_quantile(0.95, sum by ({by}, le) (rate({buckets})))"
        f" and on ({by}) (sum by ({by}) (rate({count})) > 0)"
    )


def recording_rules(cfg: MonitoringConfig) -> list[dict[str, Any]]:
    w = cfg.scrape.rate_window
    n = RecordedNames(w)
    # Only API routes are load: probes and scrapes stay out of the autoscaler's inputs.
    api = f'{{job="{STOCK_API_JOB}",route=~"{API_ROUTES}"}}'
    api5 = f'{{job="{STOCK_API_JOB}",route=~"{API_ROUTES}",status=~"5.."}}'
    up = f'{{job="{STOCK_API_JOB}"}}'
    rules = [
        (n.request_rate, f"sum by (job) (rate({_API_REQS}{api}[{w}]))"),
        (n.latency_p95, _p95(f"{_API_HIST}_bucket{api}[{w}]", f"{_API_HIST}_count{api}[{w}]",
                             "job", "")),
        (n.error_ratio, _ratio(f"{_API_REQS}{api}[{w}]", f"{_API_REQS}{api5}[{w}]", "job")),
        (n.instance_request_rate, f"sum by (job, instance) (rate({_API_REQS}{api}[{w}]))"),
        (n.instance_latency_p95, _p95(f"{_API_HIST}_bucket{api}[{w}]",
                                      f"{_API_HIST}_count{api}[{w}]", "job, instance", "")),
        (n.instance_error_ratio, _ratio(f"{_API_REQS}{api}[{w}]", f"{_API_REQS}{api5}[{w}]",
                                        "job, instance")),
        (n.instance_cpu,
         f"sum by (job, instance) (rate(process_cpu_seconds_total{up}[{w}]))"),
        (n.pool_cpu, f"avg by (job) ({n.instance_cpu})"),
        (n.pool_size, f"sum by (job) (up{up})"),  # 0, not absent, when all are down
        (n.host_cpu,
         f'1 - avg by (job, instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{w}]))'),
        (n.host_memory, "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"),
    ]
    if cfg.scrape.gateway == "kong":
        kong = 'job="kong"'
        rules += [
            (n.kong_request_rate,
             f"sum by (job, service) (rate(kong_http_requests_total{{{kong}}}[{w}]))"),
            (n.kong_latency_p95, _p95(f"kong_request_latency_ms_bucket{{{kong}}}[{w}]",
                                      f"kong_request_latency_ms_count{{{kong}}}[{w}]",
                                      "job, service", "0.001 * ")),
            (n.kong_error_ratio, _ratio(f"kong_http_requests_total{{{kong}}}[{w}]",
                                        f'kong_http_requests_total{{{kong},code=~"5.."}}[{w}]',
                                        "job, service")),
        ]
    elif cfg.scrape.nginx_exporter:
        rules.append((n.nginx_request_rate,
                      f'sum by (job) (rate(nginx_http_requests_total{{job="nginx"}}[{w}]))'))
    return [{"record": name, "expr": expr} for name, expr in rules]


@dataclass(frozen=True)
class _Alert:
    name: str
    expr: str
    spec: Threshold | Condition
    summary: str
    description: str
    autoscale: bool = False


def runbook_anchor(alert: str) -> str:
    """The section of docs/runbook.md for ``alert`` (its heading is the alert's name)."""
    return re.sub(r"[^a-z0-9-]", "", alert.lower())


def _alerts(cfg: MonitoringConfig) -> list[_Alert]:
    a = cfg.alerts
    n = RecordedNames(cfg.scrape.rate_window)
    api = f'job="{STOCK_API_JOB}"'
    value = "{{ $value | humanize }}"
    pct = "{{ $value | humanizePercentage }}"
    secs = "{{ $value | humanizeDuration }}"
    return [
        _Alert("HostHighCpu", f"{n.host_cpu} > {a.host_high_cpu.value / 100:g}", a.host_high_cpu,
               f"Host {INST} CPU above {a.host_high_cpu.value:g}%",
               f"Host {INST} has been {pct} busy for {a.host_high_cpu.for_} "
               f"(threshold {a.host_high_cpu.value:g}%)."),
        _Alert("HostHighMemory", f"{n.host_memory} > {a.host_high_memory.value / 100:g}",
               a.host_high_memory,
               f"Host {INST} memory above {a.host_high_memory.value:g}%",
               f"Host {INST} has {pct} of its memory in use for {a.host_high_memory.for_} "
               f"(threshold {a.host_high_memory.value:g}%)."),
        _Alert("InstanceHighCpu", f"{n.instance_cpu} > {a.instance_high_cpu.value / 100:g}",
               a.instance_high_cpu,
               f"Instance {INST} CPU above {a.instance_high_cpu.value:g}% of a core",
               f"Stock API instance {INST} uses {pct} of a core "
               f"(threshold {a.instance_high_cpu.value:g}%); the autoscaler should add "
               "instances.", True),
        _Alert("InstanceHighMemory",
               f"process_resident_memory_bytes{{{api}}}"
               f" > {a.instance_high_memory.value * 1048576:.0f}",
               a.instance_high_memory,
               f"Instance {INST} uses more than {a.instance_high_memory.value:g} MiB",
               f"Stock API instance {INST} holds {{{{ $value | humanize1024 }}}}B resident "
               f"for {a.instance_high_memory.for_} "
               f"(threshold {a.instance_high_memory.value:g} MiB)."),
        _Alert("SlowResponses", f"{n.latency_p95} > {a.slow_responses.value / 1000:g}",
               a.slow_responses,
               f"p95 latency of {JOB} above {a.slow_responses.value:g} ms",
               f"The p95 response time of {JOB} is {secs} "
               f"(threshold {a.slow_responses.value:g} ms); the autoscaler should add "
               "instances.", True),
        _Alert("InstanceSlowResponses",
               f"{n.instance_latency_p95} > {a.instance_slow_responses.value / 1000:g}",
               a.instance_slow_responses,
               f"Instance {INST} p95 above {a.instance_slow_responses.value:g} ms",
               f"Stock API instance {INST} answers its p95 in {secs} "
               f"(threshold {a.instance_slow_responses.value:g} ms)."),
        _Alert("HighErrorRate", f"{n.error_ratio} > {a.high_error_rate.value:g}",
               a.high_error_rate,
               f"5xx ratio of {JOB} above {a.high_error_rate.value:g}",
               f"{pct} of the API requests to {JOB} fail with 5xx "
               f"(threshold {a.high_error_rate.value:g}).", True),
        _Alert("HighRequestRate",
               f'{n.request_rate}{{{api}}} / ({n.pool_size}{{{api}}} > 0)'
               f" > {a.high_request_rate.value:g}",
               a.high_request_rate,
               f"Stock API request rate above {a.high_request_rate.value:g} req/s per instance",
               f"Each stock API instance serves {value} API requests/s "
               f"(threshold {a.high_request_rate.value:g}); the autoscaler should add "
               "instances.", True),
        _Alert("InstanceDown", f"up{{{api}}} == 0", a.instance_down,
               f"Stock API instance {INST} does not answer scrapes",
               f"Prometheus has not scraped stock API instance {INST} for "
               f"{a.instance_down.for_}; the autoscaler repairs the pool.", True),
        _Alert("UpstreamTargetUnhealthy",
               'label_replace(kong_upstream_target_health{state=~"unhealthy|dns_error"} == 1, '
               '"instance", "$1", "target", "(.*)")',
               a.upstream_target_unhealthy,
               "Kong marks target {{ $labels.target }} of {{ $labels.upstream }} unhealthy",
               "Kong's health checks have failed for target {{ $labels.target }} of upstream "
               "{{ $labels.upstream }} (state {{ $labels.state }}) for "
               f"{a.upstream_target_unhealthy.for_}.", True),
        # One alert per dependency, not per instance: a shared dependency is down for every
        # instance at once, and replacing instances cannot fix it (no autoscale label).
        _Alert("StockApiDependencyDown",
               f"count by (dependency) (stock_api_dependency_up{{{api}}} == 0) > 0",
               a.dependency_down,
               "Stock API instances report {{ $labels.dependency }} down",
               f"{value} stock API instance(s) have seen {{{{ $labels.dependency }}}} down for "
               f"{a.dependency_down.for_} and serve degraded (Redis: every read from the "
               "store; store: only cached reads, /ready 503). Fix the dependency; replacing "
               "instances does not help."),
        _Alert("ScrapeTargetDown", f'up{{job!="{STOCK_API_JOB}"}} == 0', a.scrape_target_down,
               "{{ $labels.job }} target {{ $labels.instance }} is down",
               "Prometheus has not scraped {{ $labels.job }} at {{ $labels.instance }} for "
               f"{a.scrape_target_down.for_}; its dashboards are blank meanwhile."),
        _Alert("AutoscalerPinnedAtMax",
               "kongstack_autoscaler_current_instances >= kongstack_autoscaler_max_instances",
               a.autoscaler_pinned_at_max,
               "Autoscaler has been at max_instances for " + a.autoscaler_pinned_at_max.for_,
               f"The pool has run {value} instances, its ceiling, for "
               f"{a.autoscaler_pinned_at_max.for_}: demand may exceed what it can add."),
        _Alert("AutoscaleTicksFailing",
               "increase(kongstack_autoscaler_tick_failures_total[10m]) >= "
               f"{a.autoscale_ticks_failing.value:g}",
               a.autoscale_ticks_failing,
               f"Autoscale ticks failed {a.autoscale_ticks_failing.value:g}+ times in 10 minutes",
               f"{value} autoscale ticks failed in the last 10 minutes "
               f"(threshold {a.autoscale_ticks_failing.value:g}): the pool is not being "
               "managed."),
        _Alert("AutoscalerStale",
               "time() - kongstack_autoscaler_last_tick_timestamp_seconds > "
               f"{a.autoscaler_stale.value:g}",
               a.autoscaler_stale,
               f"No autoscale tick for more than {a.autoscaler_stale.value:g} s",
               f"The last autoscale tick finished {secs} ago "
               f"(threshold {a.autoscaler_stale.value:g} s): the autoscale deployment is not "
               "running."),
    ]


def alert_rules(cfg: MonitoringConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for alert in _alerts(cfg):
        labels: dict[str, str] = {"severity": alert.spec.severity}
        if alert.autoscale:
            labels["autoscale"] = "true"
        out.append({
            "alert": alert.name,
            "expr": alert.expr,
            "for": alert.spec.for_,
            "labels": labels,
            "annotations": {
                "summary": alert.summary,
                "description": alert.description,
                "runbook_url": f"{cfg.alerts.runbook_url}#{runbook_anchor(alert.name)}",
            },
        })
    return out


def rules_document(cfg: MonitoringConfig) -> dict[str, Any]:
    interval = cfg.scrape.evaluation_interval
    return {"groups": [
        {"name": "kongstack-autoscaler-inputs", "interval": interval,
         "rules": recording_rules(cfg)},
        {"name": "kongstack-alerts", "interval": interval, "rules": alert_rules(cfg)},
    ]}


def render_rules(cfg: MonitoringConfig) -> str:
    header = "# Generated by tasks.monitoring from the monitoring config. Do not edit by hand.\n"
    return header + yaml.safe_dump(rules_document(cfg), sort_keys=False, width=1000)

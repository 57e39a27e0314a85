"""Prometheus recording and alerting rules, generated from ``MonitoringConfig``.

Recording rules (stable names; the autoscaler's default PromQL uses them). Every series also
carries ``layer`` = ``backend`` | ``gateway`` | ``host``.

- ``kongstack:request_rate:rps`` {job[, service]}: requests/s over ``rate_window``
  (job ``stock_api``; ``kong`` per service; ``nginx`` when its exporter is scraped).
- ``kongstack:latency_p95:ms`` {job[, service]}: p95 latency; absent when there was no traffic.
- ``kongstack:error_rate:ratio`` {job[, service]}: 5xx / all (0..1); absent with no traffic.
- ``kongstack:instance_request_rate:rps``, ``kongstack:instance_latency_p95:ms``,
  ``kongstack:instance_error_rate:ratio`` {job, instance}: the same per stock API instance.
- ``kongstack:instance_cpu:percent`` {job, instance}: CPU of one instance, % of one core.
- ``kongstack:cpu_utilisation:percent`` {job}: mean instance CPU over the pool.
- ``kongstack:pool_size:instances`` {job}: stock API targets that answered their last scrape.
- ``kongstack:host_cpu:percent``, ``kongstack:host_memory:percent`` {job, instance}: per host
  (node_exporter).

Stock API request rules count only API routes (``route=~"/api.*"``): probes, scrapes and debug
routes (``/health``, ``/ready``, ``/metrics``, ``/debug/*``) are not load, and a 503 from
``/ready`` during start-up is not an error rate.

Default autoscaler queries: ``kongstack:request_rate:rps{job="stock_api"}``,
``kongstack:latency_p95:ms{job="stock_api"}``, ``kongstack:error_rate:ratio{job="stock_api"}``.

Sources: the stock API contract metrics (``stock_api_*``, ``process_*`` from prometheus_client),
Kong's prometheus plugin (``kong_http_requests_total``, ``kong_request_latency_ms``), the nginx
exporter (``nginx_http_requests_total``: rate only, stub_status has no latency or status codes).

Alerts carry ``severity``, ``autoscale="true"`` when the autoscale fast path should react, and
``summary`` and ``runbook`` (what to check, what to do) annotations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from kongstack.core.monitoring_config import Condition, MonitoringConfig, Threshold

REQUEST_RATE = "kongstack:request_rate:rps"
LATENCY_P95 = "kongstack:latency_p95:ms"
ERROR_RATE = "kongstack:error_rate:ratio"
INSTANCE_REQUEST_RATE = "kongstack:instance_request_rate:rps"
INSTANCE_LATENCY_P95 = "kongstack:instance_latency_p95:ms"
INSTANCE_ERROR_RATE = "kongstack:instance_error_rate:ratio"
INSTANCE_CPU = "kongstack:instance_cpu:percent"
POOL_CPU = "kongstack:cpu_utilisation:percent"
POOL_SIZE = "kongstack:pool_size:instances"
HOST_CPU = "kongstack:host_cpu:percent"
HOST_MEMORY = "kongstack:host_memory:percent"

RECORDED_NAMES = (
    REQUEST_RATE, LATENCY_P95, ERROR_RATE, INSTANCE_REQUEST_RATE, INSTANCE_LATENCY_P95,
    INSTANCE_ERROR_RATE, INSTANCE_CPU, POOL_CPU, POOL_SIZE, HOST_CPU, HOST_MEMORY,
)

STOCK_API_JOB = "stock_api"
API_ROUTES = "/api.*"  # Flask URL rules of the API; regexes are anchored
INST = "{{ $labels.instance }}"  # Prometheus alert templates, rendered per alert
JOB = "{{ $labels.job }}"
_API_REQS = "stock_api_requests_total"
_API_HIST = "stock_api_request_duration_seconds"


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
    # Only API routes are load: probes and scrapes stay out of the autoscaler's inputs.
    api = f'{{job="{STOCK_API_JOB}",route=~"{API_ROUTES}"}}'
    api5 = f'{{job="{STOCK_API_JOB}",route=~"{API_ROUTES}",status=~"5.."}}'
    up = f'{{job="{STOCK_API_JOB}"}}'
    b, h, g = "backend", "host", "gateway"
    rules = [
        (REQUEST_RATE, b, f"sum by (job) (rate({_API_REQS}{api}[{w}]))"),
        (LATENCY_P95, b, _p95(f"{_API_HIST}_bucket{api}[{w}]", f"{_API_HIST}_count{api}[{w}]",
                              "job", "1000 * ")),
        (ERROR_RATE, b, _ratio(f"{_API_REQS}{api}[{w}]", f"{_API_REQS}{api5}[{w}]", "job")),
        (INSTANCE_REQUEST_RATE, b, f"sum by (job, instance) (rate({_API_REQS}{api}[{w}]))"),
        (INSTANCE_LATENCY_P95, b, _p95(f"{_API_HIST}_bucket{api}[{w}]",
                                       f"{_API_HIST}_count{api}[{w}]", "job, instance",
                                       "1000 * ")),
        (INSTANCE_ERROR_RATE, b, _ratio(f"{_API_REQS}{api}[{w}]", f"{_API_REQS}{api5}[{w}]",
                                        "job, instance")),
        (INSTANCE_CPU, b,
         f"100 * sum by (job, instance) (rate(process_cpu_seconds_total{up}[{w}]))"),
        (POOL_CPU, b, f"avg by (job) ({INSTANCE_CPU})"),
        (POOL_SIZE, b, f"sum by (job) (up{up})"),  # 0, not absent, when all are down
        (HOST_CPU, h,
         f'100 * (1 - avg by (job, instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{w}])))'),
        (HOST_MEMORY, h,
         "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)"),
    ]
    if cfg.scrape.gateway == "kong":
        kong = 'job="kong"'
        rules += [
            (REQUEST_RATE, g,
             f"sum by (job, service) (rate(kong_http_requests_total{{{kong}}}[{w}]))"),
            (LATENCY_P95, g, _p95(f"kong_request_latency_ms_bucket{{{kong}}}[{w}]",
                                  f"kong_request_latency_ms_count{{{kong}}}[{w}]",
                                  "job, service", "")),
            (ERROR_RATE, g, _ratio(f"kong_http_requests_total{{{kong}}}[{w}]",
                                   f'kong_http_requests_total{{{kong},code=~"5.."}}[{w}]',
                                   "job, service")),
        ]
    elif cfg.scrape.nginx_exporter:
        rules.append((REQUEST_RATE, g,
                      f'sum by (job) (rate(nginx_http_requests_total{{job="nginx"}}[{w}]))'))
    # ``layer`` keeps backend and gateway series of one name apart (promtool's duplicate lint).
    return [{"record": name, "expr": expr, "labels": {"layer": layer}}
            for name, layer, expr in rules]


@dataclass(frozen=True)
class _Alert:
    name: str
    expr: str
    spec: Threshold | Condition
    summary: str
    runbook: str
    autoscale: bool = False


def _alerts(cfg: MonitoringConfig) -> list[_Alert]:
    a = cfg.alerts
    api = f'job="{STOCK_API_JOB}"'
    return [
        _Alert("HostHighCpu", f"{HOST_CPU} > {a.host_high_cpu.value:g}", a.host_high_cpu,
               f"Host {INST} CPU above {a.host_high_cpu.value:g}%",
               "Find the busy process (top); if it is the API pool, check the autoscaler is not "
               "pinned at max; otherwise add cores or move the role to a bigger VM."),
        _Alert("HostHighMemory", f"{HOST_MEMORY} > {a.host_high_memory.value:g}",
               a.host_high_memory,
               f"Host {INST} memory above {a.host_high_memory.value:g}%",
               "Check per-instance resident memory on the backend-pool dashboard for a leak; "
               "restart the leaking instance (the autoscaler repairs the pool) or resize the VM."),
        _Alert("InstanceHighCpu", f"{INSTANCE_CPU} > {a.instance_high_cpu.value:g}",
               a.instance_high_cpu,
               f"Instance {INST} CPU above {a.instance_high_cpu.value:g}% of a core",
               "Expected under load: the autoscaler should add instances. If the pool is at max, "
               "raise max_instances or find the slow route on the gateway dashboard.", True),
        _Alert("InstanceHighMemory",
               f"process_resident_memory_bytes{{{api}}} / 1048576"
               f" > {a.instance_high_memory.value:g}",
               a.instance_high_memory,
               f"Instance {INST} uses more than {a.instance_high_memory.value:g} MiB",
               "A growing resident size suggests a leak: capture the instance log, then stop it "
               "(kongstack instance stop); the autoscaler replaces it."),
        _Alert("SlowResponses", f"{LATENCY_P95} > {a.slow_responses.value:g}", a.slow_responses,
               f"p95 latency of {JOB} above {a.slow_responses.value:g} ms",
               "Check CPU per instance and Redis/MongoDB latency; the autoscaler should scale up. "
               "If it does not, check the autoscale flow runs in Prefect.", True),
        _Alert("InstanceSlowResponses",
               f"{INSTANCE_LATENCY_P95} > {a.instance_slow_responses.value:g}",
               a.instance_slow_responses,
               f"Instance {INST} p95 above {a.instance_slow_responses.value:g} ms",
               "One slow instance among healthy ones: compare its CPU and memory with its peers; "
               "drain and replace it if it stays slow."),
        _Alert("HighErrorRate", f"{ERROR_RATE} > {a.high_error_rate.value:g}", a.high_error_rate,
               f"5xx ratio of {JOB} above {a.high_error_rate.value:g}",
               "Search the logs for level=error by correlation id (Kibana saved search "
               "'kongstack errors by correlation id'); check Redis and MongoDB are up.", True),
        _Alert("HighRequestRate",
               f'{REQUEST_RATE}{{{api}}} / ({POOL_SIZE}{{{api}}} > 0)'
               f" > {a.high_request_rate.value:g}",
               a.high_request_rate,
               f"Stock API request rate above {a.high_request_rate.value:g} req/s per instance",
               "Demand per instance is past its comfortable rate: the autoscaler should add "
               "instances now. If the pool is at max, raise max_instances; check the gateway "
               "dashboard for one client or route driving the load.", True),
        _Alert("InstanceDown", f"up{{{api}}} == 0", a.instance_down,
               "Stock API instance {{ $labels.instance }} does not answer scrapes",
               "The autoscaler repairs the pool on its next tick: check the autoscale flow log. "
               "If it keeps failing, read the instance log (kongstack logs).", True),
        _Alert("UpstreamTargetUnhealthy",
               'label_replace(kong_upstream_target_health{state=~"unhealthy|dns_error"} == 1, '
               '"instance", "$1", "target", "(.*)")',
               a.upstream_target_unhealthy,
               "Kong marks target {{ $labels.target }} of {{ $labels.upstream }} unhealthy",
               "Kong's health checks fail for this target: check GET /ready on it; the "
               "autoscaler replaces it. GET /upstreams/{u}/health shows Kong's view.", True),
        _Alert("ScrapeTargetDown", f'up{{job!="{STOCK_API_JOB}"}} == 0', a.scrape_target_down,
               "{{ $labels.job }} target {{ $labels.instance }} is down",
               "The exporter or service stopped: check its systemd unit or "
               "'kongstack monitoring status' locally; dashboards for it are blank meanwhile."),
        _Alert("AutoscalerPinnedAtMax",
               "kongstack_autoscaler_current_instances >= kongstack_autoscaler_max_instances",
               a.autoscaler_pinned_at_max,
               "Autoscaler has been at max_instances for " + a.autoscaler_pinned_at_max.for_,
               "Demand exceeds the pool's ceiling: raise max_instances in the stack config, or "
               "add capacity to the backend host."),
        _Alert("AutoscaleTicksFailing",
               "increase(kongstack_autoscaler_tick_failures_total[10m]) >= "
               f"{a.autoscale_ticks_failing.value:g}",
               a.autoscale_ticks_failing,
               f"Autoscale ticks failed {a.autoscale_ticks_failing.value:g}+ times in 10 minutes",
               "Open the failed autoscale flow runs in the Prefect UI; a tick-failed event names "
               "the step (observe, act or record) and its error."),
        _Alert("AutoscalerStale",
               "time() - kongstack_autoscaler_last_tick_timestamp_seconds > "
               f"{a.autoscaler_stale.value:g}",
               a.autoscaler_stale,
               f"No autoscale tick for more than {a.autoscaler_stale.value:g} s",
               "The autoscale deployment is not running: check the Prefect worker and the "
               "deployment's schedule (prefect deployment ls)."),
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
                "runbook": alert.runbook,
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

"""Metric names the stack exports, for checking that dashboards and rules reference real series.

Live sources (scraped by the tests): the stock API, node_exporter, redis_exporter, Prometheus.
Documented sources (cannot run here): Kong's prometheus plugin (reference/kong-admin-api.md §5,
``kong/plugins/prometheus/exporter.lua``), prometheus-nginx-exporter 0.11 (stub_status metrics,
README "Exported Metrics"), prometheus-mongodb-exporter (Debian's 2018 snapshot of
dcu/mongodb_exporter: ``collector/*.go``), and the autoscaler's textfile (cross-team contract).
"""

from __future__ import annotations

import re

import httpx

from tasks.monitoring import RECORDED_NAMES

AUTOSCALER_TEXTFILE = {
    "kongstack_autoscaler_current_instances", "kongstack_autoscaler_desired_instances",
    "kongstack_autoscaler_min_instances", "kongstack_autoscaler_max_instances",
    "kongstack_autoscaler_last_tick_timestamp_seconds", "kongstack_autoscaler_last_tick_success",
    "kongstack_autoscaler_tick_failures_total",
}


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


KONG_PLUGIN = (
    {"kong_http_requests_total", "kong_bandwidth_bytes", "kong_upstream_target_health",
     "kong_nginx_connections_total", "kong_nginx_requests_total", "kong_nginx_timers",
     "kong_datastore_reachable", "kong_node_info", "kong_memory_workers_lua_vms_bytes",
     "kong_memory_lua_shared_dict_bytes", "kong_memory_lua_shared_dict_total_bytes"}
    | _histogram("kong_kong_latency_ms") | _histogram("kong_upstream_latency_ms")
    | _histogram("kong_request_latency_ms")
)
NGINX_EXPORTER = {
    "nginx_up", "nginx_http_requests_total", "nginx_connections_accepted",
    "nginx_connections_active", "nginx_connections_handled", "nginx_connections_reading",
    "nginx_connections_waiting", "nginx_connections_writing",
}
MONGODB_EXPORTER = {
    "mongodb_up", "mongodb_connections", "mongodb_op_counters_total", "mongodb_memory",
    "mongodb_network_bytes_total", "mongodb_asserts_total", "mongodb_instance_uptime_seconds",
}
PROMETHEUS_SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds",
                        "scrape_samples_scraped"}
DOCUMENTED = (AUTOSCALER_TEXTFILE | KONG_PLUGIN | NGINX_EXPORTER | MONGODB_EXPORTER
              | PROMETHEUS_SYNTHETIC | set(RECORDED_NAMES))

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", re.MULTILINE)


def scrape_names(url: str) -> set[str]:
    """Every sample name on a /metrics page."""
    response = httpx.get(url, timeout=10.0)
    response.raise_for_status()
    return set(_SAMPLE.findall(response.text))


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
             "and", "or", "unless", "inf", "nan", "atan2"}
_GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                 "$instance": ".+", "$route": ".+"}  # the template variables' "All"


def substitute_grafana_vars(expr: str) -> str:
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords or label names)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names

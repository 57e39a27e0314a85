"""The roles a VM can run, and what their named ports are (imports nothing above it)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    KONG = "kong"
    NGINX = "nginx"
    STOCK_API = "stock-api"
    REDIS = "redis"
    MONGODB = "mongodb"
    ELASTICSEARCH = "elasticsearch"
    KIBANA = "kibana"
    LOG_FORWARDER = "log-forwarder"
    PROMETHEUS = "prometheus"
    ALERTMANAGER = "alertmanager"
    EXPORTERS = "exporters"
    GRAFANA = "grafana"


# What each role's named ports are, for the rule that only the gateway's API port may face
# the Internet (and for its error messages). Unlisted names of a role take its "*" entry.
PORT_KINDS: dict[Role, dict[str, str]] = {
    Role.KONG: {"proxy": "API", "admin": "admin", "status": "metrics"},
    Role.NGINX: {"http": "API"},
    Role.STOCK_API: {"*": "backend"},
    Role.REDIS: {"*": "data"},
    Role.MONGODB: {"*": "data"},
    Role.ELASTICSEARCH: {"*": "data"},
    Role.LOG_FORWARDER: {"*": "log input"},
    Role.EXPORTERS: {"*": "metrics"},
    Role.PROMETHEUS: {"*": "admin"},
    Role.ALERTMANAGER: {"*": "admin"},
    Role.KIBANA: {"*": "admin"},
    Role.GRAFANA: {"*": "admin"},
}
# Ports Kong needs: the public proxy, the Admin API (bound to loopback on the VM), and the
# Status API (/status and /metrics, for Prometheus and health checks).
KONG_PORTS = ("proxy", "admin", "status")


def port_kind(role: Role, name: str) -> str:
    kinds = PORT_KINDS.get(role, {})
    return kinds.get(name, kinds.get("*", "internal"))

"""The desired gateway state mapped onto what nginx can do (the Kong plugins' equivalents).

key-auth → a ``map`` from the ``apikey`` header (or query argument) to the consumer, 401
with Kong's messages otherwise; rate-limiting → ``limit_req`` per consumer (a burst of the
per-minute limit, refilled at the same rate); passive health checks → ``max_fails``;
correlation-id → forwarded as ``X-Correlation-ID`` and ``Kong-Request-ID``; prometheus →
``stub_status`` plus the JSON access log (status, latency, upstream address per request).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kongstack.core.errors import ConfigError
from tasks.gateway.kong.model import GatewayState, PluginSpec


class NginxSite(BaseModel):
    """Everything the rendered nginx.conf depends on, apart from the targets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str
    paths: tuple[str, ...] = ("/api",)
    strip_path: bool = False
    key_names: tuple[str, ...] | None = None  # None: no key-auth on the route
    consumers: dict[str, SecretStr] = Field(default_factory=dict)  # username → key
    hide_credentials: bool = True
    rate_per_minute: int | None = None
    rate_by: str = "consumer"  # consumer | ip
    connect_timeout_ms: int = 60000
    read_timeout_ms: int = 60000
    write_timeout_ms: int = 60000
    retries: int = 5
    max_fails: int = 0  # 0 disables nginx's passive failure accounting
    fail_timeout_s: int = 10
    correlation_header: str = "Kong-Request-ID"

    def public_view(self) -> dict[str, Any]:
        """The fields as shown in a plan: consumer names only, never keys."""
        view = self.model_dump(mode="json", exclude={"consumers"})
        view["consumers"] = sorted(self.consumers)
        return view


def _per_minute(config: dict[str, Any]) -> int:
    for unit, factor in (("second", 60.0), ("minute", 1.0), ("hour", 1 / 60),
                         ("day", 1 / 1440)):
        if config.get(unit):
            return max(1, round(float(config[unit]) * factor))
    raise ConfigError("plugins: rate-limiting needs one of second, minute, hour or day")


def site_from_state(state: GatewayState, *, upstream: str) -> NginxSite:
    """Translate the Kong-shaped desired state for the service that fronts ``upstream``."""
    service = next((s for s in state.services if s.host == upstream), None)
    if service is None:
        raise ConfigError(f"services: none has host {upstream!r} (the nginx upstream)")
    route = next((r for r in state.routes if r.service == service.name), None)
    if route is None:
        raise ConfigError(f"routes: none for service {service.name!r}")

    def plugin(name: str) -> PluginSpec | None:
        scopes = [p for p in state.plugins if p.name == name and p.enabled and p.consumer is None
                  and p.route in (None, route.name) and p.service in (None, service.name)]
        return scopes[0] if scopes else None

    fields: dict[str, Any] = {
        "upstream": upstream, "paths": route.paths, "strip_path": route.strip_path,
        "connect_timeout_ms": service.connect_timeout, "read_timeout_ms": service.read_timeout,
        "write_timeout_ms": service.write_timeout, "retries": service.retries,
    }
    key_auth = plugin("key-auth")
    if key_auth is not None:
        fields["key_names"] = tuple(key_auth.config.get("key_names") or ("apikey",))
        fields["hide_credentials"] = bool(key_auth.config.get("hide_credentials", False))
        fields["consumers"] = {k.consumer: k.key for k in state.keyauth_credentials}
    limit = plugin("rate-limiting")
    if limit is not None:
        fields["rate_per_minute"] = _per_minute(limit.config)
        fields["rate_by"] = "ip" if limit.config.get("limit_by") == "ip" else "consumer"
    correlation = plugin("correlation-id")
    if correlation is not None:
        fields["correlation_header"] = correlation.config.get("header_name", "Kong-Request-ID")
    up = next((u for u in state.upstreams if u.name == upstream), None)
    passive = ((up.healthchecks if up else {}).get("passive") or {}).get("unhealthy") or {}
    failures = [int(passive.get(k) or 0) for k in ("http_failures", "tcp_failures", "timeouts")]
    fields["max_fails"] = min((f for f in failures if f > 0), default=0)
    return NginxSite(**fields)

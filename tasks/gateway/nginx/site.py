"""The desired state mapped onto the local gateway (nginx + Lua): Kong's plugins' semantics.

Routes by path and method (Kong's router); key-auth → the consumer by key (header, or query
string when allowed), 401 with Kong's messages; ACL → allowed/denied groups per route, 403;
rate-limiting → fixed windows per consumer (its own limits, else the service default) with
Kong's headers and 429; the upstream's active and passive health checks in Kong's shape
(defaults merged); correlation-id → forwarded and echoed; prometheus → ``stub_status`` plus
the JSON access log. This is the part that needs a reload when it changes; the targets do
not (they change at run time through the gateway's loopback admin endpoint).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kongstack.core.errors import ConfigError
from tasks.gateway.kong.model import GatewayState, PluginSpec, RouteSpec

WINDOWS = ("second", "minute", "hour", "day")
# Kong 3.x upstream healthchecks defaults (kong/db/schema/entities/upstreams.lua).
HEALTHCHECK_DEFAULTS: dict[str, Any] = {
    "active": {
        "type": "http", "timeout": 1, "http_path": "/",
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                      "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
    },
    "passive": {
        "type": "http",
        "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300,
                                      301, 302, 303, 304, 305, 306, 307, 308], "successes": 0},
        "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0,
                      "http_failures": 0},
    },
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AclRule(_Frozen):
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] | None = None
    hide_groups_header: bool = False


class SiteRoute(_Frozen):
    name: str
    paths: tuple[str, ...]
    methods: tuple[str, ...] | None = None
    strip_path: bool = False
    acl: AclRule | None = None


class KeyAuth(_Frozen):
    key_names: tuple[str, ...] = ("apikey",)
    key_in_header: bool = True
    key_in_query: bool = True
    hide_credentials: bool = False
    realm: str | None = None


class SiteConsumer(_Frozen):
    key: SecretStr
    groups: tuple[str, ...] = ()
    limits: dict[str, int] | None = None  # its own rate-limiting plugin; None: the default


class NginxSite(_Frozen):
    """Everything the rendered nginx.conf and the Lua site file depend on, apart from the
    targets."""

    upstream: str
    routes: tuple[SiteRoute, ...]
    key_auth: KeyAuth | None = None
    consumers: dict[str, SiteConsumer] = Field(default_factory=dict)
    limits: dict[str, int] | None = None  # the service/route rate limit (the default)
    limit_by: Literal["consumer", "ip"] = "consumer"
    connect_timeout_ms: int = 60000
    read_timeout_ms: int = 60000
    write_timeout_ms: int = 60000
    retries: int = 5
    healthchecks: dict[str, Any] = Field(default_factory=dict)
    correlation_header: str = "Kong-Request-ID"
    # Kong's request-transformer on the service: headers removed from every request, then
    # headers added (e.g. X-Gateway-Secret: the instances answer only the gateway). The
    # values are secrets: in the 0600 site file only, never in nginx.conf or a plan.
    remove_headers: tuple[str, ...] = ()
    add_headers: dict[str, SecretStr] = Field(default_factory=dict)

    @property
    def paths(self) -> tuple[str, ...]:
        """Distinct route paths, longest first (nginx picks the longest prefix anyway)."""
        return tuple(sorted({p for r in self.routes for p in r.paths}, key=lambda p: -len(p)))

    def public_view(self) -> dict[str, Any]:
        """The fields as shown in a plan: consumers with groups and limits, never keys."""
        view = self.model_dump(mode="json", exclude={"consumers", "add_headers"})
        view["consumers"] = {name: {"groups": list(c.groups), "limits": c.limits}
                             for name, c in sorted(self.consumers.items())}
        view["add_headers"] = sorted(self.add_headers)  # names only
        return view

    def lua_document(self) -> str:
        """What the gateway's Lua reads at a configuration load (holds the keys: 0600)."""
        doc = self.model_dump(mode="json")
        doc["consumers"] = {name: {**doc["consumers"][name], "key": c.key.get_secret_value()}
                            for name, c in self.consumers.items()}
        doc["add_headers"] = {name: value.get_secret_value()
                              for name, value in self.add_headers.items()}
        return json.dumps(doc, sort_keys=True)


def _limits(plugin: PluginSpec) -> dict[str, int]:
    config = plugin.config
    unsupported = [u for u in ("month", "year") if config.get(u)]
    if unsupported:
        raise ConfigError(f"plugins: rate-limiting {unsupported[0]!r} windows are not "
                          "supported by the local gateway (use second, minute, hour or day)")
    limits = {w: int(config[w]) for w in WINDOWS if config.get(w)}
    if not limits:
        raise ConfigError("plugins: rate-limiting needs one of second, minute, hour or day")
    return limits


def _merge(defaults: Any, value: Any) -> Any:
    if isinstance(defaults, dict) and isinstance(value, dict):
        out = copy.deepcopy(defaults)
        for key, item in value.items():
            out[key] = _merge(defaults.get(key), item)
        return out
    return copy.deepcopy(value)


_HEADER = re.compile(r"^[A-Za-z0-9-]+$")
TRANSFORMS = ("remove", "add")  # of request-transformer's remove/rename/replace/add/append


def _request_transformer(plugin: PluginSpec) -> dict[str, Any]:
    """Kong's request-transformer, headers only: ``remove.headers`` (names) and
    ``add.headers`` (``"Name:value"`` entries, a value may be a SecretStr such as the gateway
    secret). Kong runs remove before add, so a client cannot choose an added header's value.
    Anything else is refused, naming it, rather than silently not done."""
    config = plugin.config
    for section, value in config.items():
        if not value:
            continue
        parts = value if isinstance(value, dict) else {}
        unsupported = ([section] if section not in TRANSFORMS else
                       [f"{section}.{k}" for k, v in parts.items() if v and k != "headers"])
        if unsupported:
            raise ConfigError(f"plugins: request-transformer {unsupported[0]!r} is not "
                              "supported by the local gateway (remove.headers and add.headers "
                              "are)")
    removed = tuple(str(h) for h in (config.get("remove") or {}).get("headers") or ())
    added: dict[str, SecretStr] = {}
    for entry in (config.get("add") or {}).get("headers") or ():
        raw = entry.get_secret_value() if isinstance(entry, SecretStr) else str(entry)
        name, sep, value = raw.partition(":")
        if not sep or not _HEADER.match(name):
            shown = name if isinstance(entry, SecretStr) else raw
            raise ConfigError(f"plugins: request-transformer add.headers entry {shown!r}: "
                              "expected 'Name:value'")
        added.setdefault(name, SecretStr(value))  # add: the first value of a name wins
    for name in removed:
        if not _HEADER.match(name):
            raise ConfigError(f"plugins: request-transformer remove.headers {name!r}: "
                              "letters, digits and '-' only")
    return {"remove_headers": removed, "add_headers": added}


def _healthchecks(configured: dict[str, Any]) -> dict[str, Any]:
    """Kong's shape with defaults merged; a side whose every criterion is 0 is left out."""
    merged = _merge(HEALTHCHECK_DEFAULTS, configured)
    out: dict[str, Any] = {}
    active = merged["active"]
    if active["healthy"]["interval"] > 0 or active["unhealthy"]["interval"] > 0:
        out["active"] = active
    passive = merged["passive"]
    if any(passive["unhealthy"][k] for k in ("tcp_failures", "timeouts", "http_failures")):
        out["passive"] = passive
    return out


def site_from_state(state: GatewayState, *, upstream: str) -> NginxSite:
    """Translate the Kong-shaped desired state for the service that fronts ``upstream``."""
    service = next((s for s in state.services if s.host == upstream), None)
    if service is None:
        raise ConfigError(f"services: none has host {upstream!r} (the nginx upstream)")
    routes = [r for r in state.routes if r.service == service.name]
    if not routes:
        raise ConfigError(f"routes: none for service {service.name!r}")

    def plugin(name: str, route: RouteSpec | None = None,
               consumer: str | None = None) -> PluginSpec | None:
        """Kong's precedence: consumer+route > consumer > route > service > global."""
        found = [p for p in state.plugins if p.name == name and p.enabled
                 and p.consumer in (None, consumer)
                 and p.route in (None, route.name if route else None)
                 and p.service in (None, service.name)]
        return max(found, key=lambda p: (p.consumer is not None and p.route is not None,
                                         p.consumer is not None, p.route is not None,
                                         p.service is not None), default=None)

    def acl_rule(route: RouteSpec) -> AclRule | None:
        found = plugin("acl", route)
        if found is None:
            return None
        allow, deny = found.config.get("allow"), found.config.get("deny")
        return AclRule(allow=tuple(allow) if allow else None, deny=tuple(deny) if deny else None,
                       hide_groups_header=bool(found.config.get("hide_groups_header", False)))

    site_routes = tuple(SiteRoute(name=r.name, paths=r.paths, methods=r.methods,
                                  strip_path=r.strip_path, acl=acl_rule(r)) for r in routes)
    key_auths = {id(p): p for r in routes if (p := plugin("key-auth", r)) is not None}
    if len(key_auths) > 1:
        raise ConfigError("plugins: the local gateway needs one key-auth for all routes of "
                          f"service {service.name!r}")
    fields: dict[str, Any] = {
        "upstream": upstream, "routes": site_routes,
        "connect_timeout_ms": service.connect_timeout, "read_timeout_ms": service.read_timeout,
        "write_timeout_ms": service.write_timeout, "retries": service.retries,
    }
    if key_auths:
        conf = next(iter(key_auths.values())).config
        fields["key_auth"] = KeyAuth(
            key_names=tuple(conf.get("key_names") or ("apikey",)),
            key_in_header=bool(conf.get("key_in_header", True)),
            key_in_query=bool(conf.get("key_in_query", True)),
            hide_credentials=bool(conf.get("hide_credentials", False)),
            realm=conf.get("realm"))
    groups: dict[str, list[str]] = {}
    for a in state.acls:
        groups.setdefault(a.consumer, []).append(a.group)
    consumers: dict[str, SiteConsumer] = {}
    for credential in state.keyauth_credentials:
        own = next((p for p in state.plugins if p.name == "rate-limiting" and p.enabled
                    and p.consumer == credential.consumer and p.route is None
                    and p.service in (None, service.name)), None)
        consumers[credential.consumer] = SiteConsumer(
            key=credential.key, groups=tuple(sorted(groups.get(credential.consumer, ()))),
            limits=_limits(own) if own is not None else None)
    fields["consumers"] = consumers
    default = plugin("rate-limiting", routes[0])
    if default is not None:
        fields["limits"] = _limits(default)
        fields["limit_by"] = "ip" if default.config.get("limit_by") == "ip" else "consumer"
    scoped = [p for p in state.plugins if p.name == "request-transformer" and p.enabled
              and (p.route is not None or p.consumer is not None)]
    if scoped:
        raise ConfigError("plugins: the local gateway applies request-transformer to the "
                          "whole service only, not per route or consumer")
    transformer = plugin("request-transformer")
    if transformer is not None:
        fields.update(_request_transformer(transformer))
    correlation = plugin("correlation-id")
    if correlation is not None:
        fields["correlation_header"] = correlation.config.get("header_name", "Kong-Request-ID")
    up = next((u for u in state.upstreams if u.name == upstream), None)
    fields["healthchecks"] = _healthchecks(up.healthchecks if up else {})
    return NginxSite(**fields)

"""The stack's desired gateway state, built from a small typed config.

One service for the stock API with two routes on ``/api``: reads (GET, HEAD, OPTIONS) and
writes (POST, PUT, PATCH, DELETE). key-auth on the service (the key in a header only);
Kong's ACL plugin on each route: reads need the ``readers`` group, writes the ``writers``
group, so a read-only consumer gets 403 on a write. One consumer per client application,
each with its key-auth credential, its ACL groups and its own rate limit (a rate-limiting
plugin scoped to the consumer; the service-level one is the default for any other
consumer). An upstream with active health checks on ``/health`` plus passive checks,
prometheus (status codes, latency, upstream health), correlation-id, and http-log to the log
pipeline when an endpoint is configured. Kong applies it as is; the local gateway (nginx with
Lua) maps the same state onto its own directives and Lua modules.

With ``upstream_secret`` set, a request-transformer plugin on the service removes any
client-sent ``X-Gateway-Secret`` header and adds the secret, so instances (which require it,
``GATEWAY_SECRET``) answer only requests that came through the gateway; http-log then drops
that header from Kong's log records. A gateway that renders its own configuration (nginx)
takes the header and value from ``upstream_secret_header(state)``. With ``log_token`` set,
http-log sends ``Authorization: Bearer <token>`` to the log forwarder's HTTP input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr

from tasks.gateway.kong.model import (
    AclSpec,
    ConsumerSpec,
    GatewayState,
    KeyAuthSpec,
    PluginSecret,
    PluginSpec,
    RouteSpec,
    ServiceSpec,
    TargetSpec,
    UpstreamSpec,
)

# The header the gateway adds and the stock API checks (stock_api.app.GATEWAY_SECRET_HEADER).
GATEWAY_SECRET_HEADER = "X-Gateway-Secret"
GATEWAY_SECRET_ENV = "DECK_GATEWAY_SECRET"  # decK placeholder in the committed template
LOG_TOKEN_ENV = "DECK_LOG_TOKEN"
READ_METHODS = ("GET", "HEAD", "OPTIONS")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
MAX_RATE_PER_MINUTE = 6_000_000  # 100,000 req/s: far above what one gateway node serves


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsumerConfig(_Config):
    """One client application: its key, whether it may write, and its own rate limit."""

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    key: SecretStr = Field(description="the key-auth key (from a Secret block or env)")
    access: Literal["read", "write"] = Field(
        default="read", description="read: GET/HEAD/OPTIONS only; write: also POST/PUT/"
        "PATCH/DELETE (member of the writers group)")
    rate_limit_per_minute: int | None = Field(
        default=None, ge=1, le=MAX_RATE_PER_MINUTE,
        description="this consumer's own limit; unset: the stack's default")


class HealthCheckConfig(_Config):
    # Active probes every 2 s, 2 failures in a row: a dead target is unhealthy within ~4 s
    # even without traffic (passive checks catch it sooner under load).
    path: str = "/health"
    interval: int = Field(default=2, ge=1, le=300, description="seconds between active probes")
    successes: int = Field(default=2, ge=1)
    http_failures: int = Field(default=2, ge=1)
    tcp_failures: int = Field(default=2, ge=1)
    timeouts: int = Field(default=2, ge=1)
    passive_successes: int = Field(default=5, ge=1)
    passive_http_failures: int = Field(default=5, ge=1)
    passive_tcp_failures: int = Field(default=3, ge=1)
    passive_timeouts: int = Field(default=3, ge=1)
    probe_timeout: int = Field(default=1, ge=1, le=60, description="seconds")


class GatewayStackConfig(_Config):
    stack: str = Field(default="kongstack", pattern=r"^[a-z0-9][a-z0-9-]*$")
    service: str = "stock-api"
    route: str = Field(default="stock-api", description="the read route")
    write_route: str = "stock-api-write"
    upstream: str = "stock-api-upstream"
    route_path: str = Field(default="/api", pattern=r"^/")
    strip_path: bool = False  # the stock API itself serves /api/...
    rate_limit_per_minute: int = Field(default=600, ge=1, le=MAX_RATE_PER_MINUTE,
                                       description="default per consumer")
    key_names: tuple[str, ...] = ("apikey",)
    key_in_query: bool = Field(default=False, description="keys in URLs end up in logs")
    readers_group: str = "readers"
    writers_group: str = "writers"
    consumers: tuple[ConsumerConfig, ...] = ()
    healthchecks: HealthCheckConfig = HealthCheckConfig()
    correlation_header: str = "Kong-Request-ID"
    log_endpoint: AnyHttpUrl | None = None
    upstream_secret: SecretStr | None = Field(
        default=None, min_length=16,
        description=f"added to every proxied request as {GATEWAY_SECRET_HEADER} (a Secret block)")
    log_token: SecretStr | None = Field(
        default=None, min_length=16,
        description="presented by http-log to the log forwarder (a Secret block)")
    connect_timeout_ms: int = Field(default=5000, ge=1)
    read_timeout_ms: int = Field(default=30000, ge=1)
    write_timeout_ms: int = Field(default=30000, ge=1)
    retries: int = Field(default=2, ge=0)


def upstream_healthchecks(hc: HealthCheckConfig) -> dict[str, object]:
    """Kong upstream ``healthchecks``: active probes on ``/health`` and a passive breaker."""
    return {
        "active": {
            "type": "http", "http_path": hc.path, "timeout": hc.probe_timeout,
            "healthy": {"interval": hc.interval, "successes": hc.successes},
            "unhealthy": {"interval": hc.interval, "http_failures": hc.http_failures,
                          "tcp_failures": hc.tcp_failures, "timeouts": hc.timeouts},
        },
        "passive": {
            "type": "http",
            "healthy": {"successes": hc.passive_successes},
            "unhealthy": {"http_failures": hc.passive_http_failures,
                          "tcp_failures": hc.passive_tcp_failures,
                          "timeouts": hc.passive_timeouts},
        },
    }


def rate_limit_config(per_minute: int) -> dict[str, object]:
    return {"minute": per_minute, "limit_by": "consumer", "policy": "local",
            "fault_tolerant": True, "hide_client_headers": False}


def consumer_groups(cfg: GatewayStackConfig, consumer: ConsumerConfig) -> tuple[str, ...]:
    if consumer.access == "write":
        return (cfg.readers_group, cfg.writers_group)
    return (cfg.readers_group,)


def build_gateway_state(cfg: GatewayStackConfig,
                        targets: Iterable[str] | None = None) -> GatewayState:
    """The desired state; ``targets=None`` leaves the upstream's targets to the autoscaler."""
    plugins = [
        PluginSpec(name="key-auth", service=cfg.service,
                   config={"key_names": list(cfg.key_names), "hide_credentials": True,
                           "key_in_header": True, "key_in_query": cfg.key_in_query,
                           "key_in_body": False}),
        # The default for any consumer without its own limit (consumer scope wins in Kong).
        PluginSpec(name="rate-limiting", service=cfg.service,
                   config=rate_limit_config(cfg.rate_limit_per_minute)),
        PluginSpec(name="acl", route=cfg.route,
                   config={"allow": [cfg.readers_group], "hide_groups_header": False}),
        PluginSpec(name="acl", route=cfg.write_route,
                   config={"allow": [cfg.writers_group], "hide_groups_header": False}),
        *[PluginSpec(name="rate-limiting", consumer=c.username,
                     config=rate_limit_config(c.rate_limit_per_minute))
          for c in cfg.consumers if c.rate_limit_per_minute is not None],
        PluginSpec(name="prometheus",
                   config={"per_consumer": False, "status_code_metrics": True,
                           "latency_metrics": True, "upstream_health_metrics": True,
                           "bandwidth_metrics": True}),
        PluginSpec(name="correlation-id",
                   config={"header_name": cfg.correlation_header, "generator": "uuid",
                           "echo_downstream": True}),
    ]
    if cfg.upstream_secret is not None:
        plugins.append(gateway_secret_plugin(cfg.service, cfg.upstream_secret))
    if cfg.log_endpoint is not None:
        # Global like correlation-id (deployments/logging/kong-http-log.yaml): every request
        # Kong answers is logged, including rejected keys and unmatched paths.
        log_config: dict[str, object] = {
            "http_endpoint": str(cfg.log_endpoint), "method": "POST",
            "content_type": "application/json", "timeout": 10000, "keepalive": 60000}
        if cfg.log_token is not None:
            log_config["headers"] = {"Authorization": PluginSecret(
                cfg.log_token.get_secret_value(), env=LOG_TOKEN_ENV, prefix="Bearer ")}
        if cfg.upstream_secret is not None:  # the secret stays out of the request logs
            log_config["custom_fields_by_lua"] = {
                f"request.headers.{GATEWAY_SECRET_HEADER.lower()}": "return nil"}
        plugins.append(PluginSpec(name="http-log", config=log_config))
    return GatewayState(
        stack=cfg.stack,
        upstreams=(UpstreamSpec(name=cfg.upstream,
                                healthchecks=upstream_healthchecks(cfg.healthchecks)),),
        targets=None if targets is None else tuple(
            TargetSpec(upstream=cfg.upstream, target=t) for t in targets),
        services=(ServiceSpec(name=cfg.service, host=cfg.upstream, port=80,
                              retries=cfg.retries, connect_timeout=cfg.connect_timeout_ms,
                              read_timeout=cfg.read_timeout_ms,
                              write_timeout=cfg.write_timeout_ms),),
        routes=(RouteSpec(name=cfg.route, service=cfg.service, paths=(cfg.route_path,),
                          methods=READ_METHODS, strip_path=cfg.strip_path),
                RouteSpec(name=cfg.write_route, service=cfg.service, paths=(cfg.route_path,),
                          methods=WRITE_METHODS, strip_path=cfg.strip_path)),
        consumers=tuple(ConsumerSpec(username=c.username) for c in cfg.consumers),
        keyauth_credentials=tuple(KeyAuthSpec(consumer=c.username, key=c.key)
                                  for c in cfg.consumers),
        acls=tuple(AclSpec(consumer=c.username, group=g) for c in cfg.consumers
                   for g in consumer_groups(cfg, c)),
        plugins=tuple(plugins),
    )


def gateway_secret_plugin(service: str, secret: SecretStr) -> PluginSpec:
    """request-transformer: drop whatever the client sent as the header, then add ours
    (Kong runs remove before add, so a client cannot choose the value)."""
    return PluginSpec(name="request-transformer", service=service, config={
        "remove": {"headers": [GATEWAY_SECRET_HEADER]},
        "add": {"headers": [PluginSecret(secret.get_secret_value(), env=GATEWAY_SECRET_ENV,
                                         prefix=f"{GATEWAY_SECRET_HEADER}:")]},
    })


def upstream_secret_header(state: GatewayState) -> tuple[str, SecretStr] | None:
    """(header, secret) that the gateway must set on every request to the instances
    (overwriting any value the client sent), or None. For gateways that render their own
    configuration from the state, e.g. nginx: ``proxy_set_header <header> <secret>;``."""
    for plugin in state.plugins:
        if plugin.name != "request-transformer" or not plugin.enabled:
            continue
        for entry in (plugin.config.get("add") or {}).get("headers") or ():
            if isinstance(entry, PluginSecret) and entry.prefix == f"{GATEWAY_SECRET_HEADER}:":
                return GATEWAY_SECRET_HEADER, entry.secret()
    return None


# -- what deploy-stack registers, on every provider ---------------------------------------------

API_CONSUMER = "api"
"""The consumer of the stack file's ``api_key_secret`` (an older single-key setup): kept, with
write access, so its clients go on working next to the per-application consumers."""
CONSUMER_PLUGINS = ("key-auth", "acl")
"""Plugins that need an authenticated consumer: left out when the stack has no consumer."""


def registration_state(stack: str, *, consumers: Sequence[ConsumerConfig] = (),
                       api_key: str | SecretStr | None = None,
                       targets: Iterable[str] | None = None, log_endpoint: str | None = None,
                       rate_limit_per_minute: int | None = None,
                       upstream_secret: SecretStr | None = None,
                       log_token: SecretStr | None = None) -> GatewayState:
    """The gateway state deploy-stack registers (Kong on Azure, the local gateway here): the
    stack's service, read and write routes, upstream and plugins, one consumer per client
    application (``consumers``: key, access, own limit; tasks.gateway.consumers) and, when
    ``api_key`` is given, the ``api`` consumer holding it. With no consumer at all there is
    no key-auth (only tests and a bare template do that). ``targets=None`` leaves the
    upstream's targets to the autoscaler. ``upstream_secret`` and ``log_token``: see the
    module docstring."""
    key = SecretStr(api_key) if isinstance(api_key, str) else api_key
    everyone = tuple(consumers)
    if key is not None:
        if any(c.username == API_CONSUMER for c in everyone):
            raise ValueError(f"consumers: {API_CONSUMER!r} is taken by api_key_secret's "
                             "consumer; rename the stack file's consumer")
        everyone += (ConsumerConfig(username=API_CONSUMER, key=key, access="write"),)
    limits = {} if rate_limit_per_minute is None else {
        "rate_limit_per_minute": rate_limit_per_minute}
    cfg = GatewayStackConfig.model_validate({
        "stack": stack, "consumers": everyone, "log_endpoint": log_endpoint,
        "upstream_secret": upstream_secret, "log_token": log_token, **limits})
    state = build_gateway_state(cfg, targets=targets)
    if everyone:
        return state
    return state.model_copy(update={
        "plugins": tuple(p for p in state.plugins if p.name not in CONSUMER_PLUGINS)})

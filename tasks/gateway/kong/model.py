"""The desired gateway state in Kong's terms: flat entity specs referencing each other by name.

This is decK's internal state model: services, routes, plugins, consumers with key-auth
credentials and ACL groups, upstreams and targets. Both gateways consume it (Kong directly;
nginx maps it onto its own directives and Lua). Every entity carries the owner tags so that
a reconcile only ever sees and touches what kongstack created.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

OWNER_TAG = "kongstack"
# Namespace of the deterministic ids kongstack gives plugins and credentials, so that a
# retried or repeated PUT addresses the same entity instead of creating a duplicate.
ID_NAMESPACE = uuid.UUID("6f1c2f9e-5b0e-4c7a-9d43-0b6a3f1d2e55")

Kind = Literal[
    "upstream", "target", "service", "route", "consumer", "keyauth_credential", "acl", "plugin"
]
# Dependency order (decK's dependencyOrder): creates top-down, deletes bottom-up.
CREATE_ORDER: tuple[Kind, ...] = (
    "upstream", "target", "service", "route", "consumer", "keyauth_credential", "acl", "plugin"
)


def owner_tags(stack: str) -> tuple[str, str]:
    """The tags every kongstack entity carries: ``kongstack`` and ``kongstack-<stack>``."""
    return (OWNER_TAG, f"{OWNER_TAG}-{stack}")


def deterministic_id(*parts: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, "/".join(parts)))


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tags: tuple[str, ...] = ()


class UpstreamSpec(_Spec):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    algorithm: Literal["round-robin", "consistent-hashing", "least-connections", "latency"] = (
        "round-robin"
    )
    slots: int = Field(default=10000, ge=10, le=65536)
    healthchecks: dict[str, Any] = Field(default_factory=dict)


class TargetSpec(_Spec):
    upstream: str
    target: str
    weight: int = Field(default=100, ge=0, le=65535)

    @field_validator("target")
    @classmethod
    def _default_port(cls, value: str) -> str:
        # Kong normalises a target without a port to port 8000 (kong/db/dao/targets.lua).
        return value if ":" in value else f"{value}:8000"


class ServiceSpec(_Spec):
    name: str
    host: str
    port: int = Field(default=80, ge=1, le=65535)
    protocol: Literal["http", "https"] = "http"
    path: str | None = None
    retries: int = Field(default=5, ge=0)
    connect_timeout: int = Field(default=60000, ge=1)
    write_timeout: int = Field(default=60000, ge=1)
    read_timeout: int = Field(default=60000, ge=1)


class RouteSpec(_Spec):
    name: str
    service: str
    paths: tuple[str, ...]
    protocols: tuple[str, ...] = ("http", "https")
    methods: tuple[str, ...] | None = None
    strip_path: bool = False
    preserve_host: bool = False


class ConsumerSpec(_Spec):
    username: str
    custom_id: str | None = None


class KeyAuthSpec(_Spec):
    consumer: str
    key: SecretStr

    @property
    def id(self) -> str:
        # Derived from the consumer and a hash of the key: a rotated key is a new credential.
        return deterministic_id("keyauth", self.consumer, self.key.get_secret_value())


class PluginSecret(SecretStr):
    """A secret inside a plugin's config, e.g. the gateway secret in request-transformer's
    ``add.headers`` entry ``"X-Gateway-Secret:<secret>"``: ``prefix`` is the part that may be
    shown. It is sent to Kong as ``prefix + secret``, compared, scrubbed and never logged like
    any ``SecretStr``; the declarative export writes ``prefix`` and a decK environment
    placeholder named ``env`` instead of the secret."""

    def __init__(self, secret: str, *, env: str, prefix: str = "") -> None:
        super().__init__(prefix + secret)
        self.env = env
        self.prefix = prefix

    def secret(self) -> SecretStr:
        """The secret without its prefix."""
        return SecretStr(self.get_secret_value()[len(self.prefix):])

    def placeholder(self) -> str:
        return self.prefix + '${{ env "' + self.env + '" }}'
class AclSpec(_Spec):
    """A consumer's membership of an ACL group (Kong's ``acls`` entity, the ACL plugin's
    notion of a consumer group)."""

    consumer: str
    group: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")


class PluginSpec(_Spec):
    name: str
    service: str | None = None
    route: str | None = None
    consumer: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @property
    def scope(self) -> tuple[str, str, str, str]:
        """Kong allows one plugin of a name per (service, route, consumer) scope."""
        return (self.name, self.service or "", self.route or "", self.consumer or "")

    @property
    def label(self) -> str:
        where = [f"{k}:{v}" for k, v in
                 (("service", self.service), ("route", self.route), ("consumer", self.consumer))
                 if v]
        return f"{self.name}@{','.join(where) or 'global'}"

    def id_for(self, stack: str) -> str:
        return deterministic_id("plugin", stack, *self.scope)


class GatewayState(BaseModel):
    """Everything kongstack wants in the gateway. ``targets=None`` leaves targets alone
    (the autoscaler owns them); a list makes ``apply`` reconcile them too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str = "kongstack"
    upstreams: tuple[UpstreamSpec, ...] = ()
    targets: tuple[TargetSpec, ...] | None = None
    services: tuple[ServiceSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    consumers: tuple[ConsumerSpec, ...] = ()
    keyauth_credentials: tuple[KeyAuthSpec, ...] = ()
    acls: tuple[AclSpec, ...] = ()
    plugins: tuple[PluginSpec, ...] = ()

    @property
    def tags(self) -> tuple[str, str]:
        return owner_tags(self.stack)

    @model_validator(mode="after")
    def _check_references(self) -> GatewayState:
        def unique(kind: str, keys: list[Any]) -> None:
            dupes = sorted({str(k) for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate {', '.join(dupes)}")

        upstreams = [u.name for u in self.upstreams]
        services = [s.name for s in self.services]
        routes = [r.name for r in self.routes]
        consumers = [c.username for c in self.consumers]
        unique("upstreams", upstreams)
        unique("services", services)
        unique("routes", routes)
        unique("consumers", consumers)
        unique("plugins", [p.scope for p in self.plugins])
        unique("targets", [(t.upstream, t.target) for t in self.targets or ()])
        unique("acls", [(a.consumer, a.group) for a in self.acls])
        keys = [k.key.get_secret_value() for k in self.keyauth_credentials]
        if len(set(keys)) != len(keys):  # Kong's key is unique; never name the key itself
            owners = sorted({k.consumer for k in self.keyauth_credentials
                             if keys.count(k.key.get_secret_value()) > 1})
            raise ValueError(f"keyauth_credentials: consumers {', '.join(owners)} share a key")
        for t in self.targets or ():
            if t.upstream not in upstreams:
                raise ValueError(f"targets: {t.target} references unknown upstream {t.upstream!r}")
        for r in self.routes:
            if r.service not in services:
                raise ValueError(f"routes: {r.name} references unknown service {r.service!r}")
        for k in self.keyauth_credentials:
            if k.consumer not in consumers:
                raise ValueError(f"keyauth_credentials: unknown consumer {k.consumer!r}")
        for a in self.acls:
            if a.consumer not in consumers:
                raise ValueError(f"acls: unknown consumer {a.consumer!r}")
        for p in self.plugins:
            for ref, known in ((p.service, services), (p.route, routes),
                               (p.consumer, consumers)):
                if ref is not None and ref not in known:
                    raise ValueError(f"plugins: {p.label} references unknown entity {ref!r}")
        return self

    def normalized(self) -> GatewayState:
        """The same state with every collection in a canonical order (for comparisons)."""
        return self.model_copy(update={
            "upstreams": tuple(sorted(self.upstreams, key=lambda u: u.name)),
            "targets": None if self.targets is None else tuple(
                sorted(self.targets, key=lambda t: (t.upstream, t.target))),
            "services": tuple(sorted(self.services, key=lambda s: s.name)),
            "routes": tuple(sorted(self.routes, key=lambda r: r.name)),
            "consumers": tuple(sorted(self.consumers, key=lambda c: c.username)),
            "keyauth_credentials": tuple(sorted(self.keyauth_credentials,
                                                key=lambda k: (k.consumer, k.id))),
            "acls": tuple(sorted(self.acls, key=lambda a: (a.consumer, a.group))),
            "plugins": tuple(sorted(self.plugins, key=lambda p: p.scope)),
        })

    def with_targets(self, targets: list[TargetSpec] | None) -> GatewayState:
        return self.model_copy(update={"targets": None if targets is None else tuple(targets)})

"""The desired state as a Kong declarative document (``_format_version: "3.0"``), and back.

The export nests entities the way decK and Kong's ``kong.yml`` do (services → routes →
plugins, consumers → keyauth_credentials and acls, upstreams → targets) and uses only fields that
Debian's decK 1.4.0 schema accepts (kong-admin-api.md §4: no ``_transform``, no upstream
``use_srv_name``, no plugin ``instance_name``/``ordering``, no service ``enabled``), so
``deck validate -s FILE`` passes; ``_info.select_tags`` carries the owner tags. ``parse``
turns a document back into the same ``GatewayState`` (round trip).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from kongstack.core.errors import ConfigError
from kongstack.core.yamlfile import load_yaml
from tasks.gateway.kong.model import (
    OWNER_TAG,
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

FORMAT_VERSION = "3.0"
Doc = dict[str, Any]


def secret_placeholder(username: str) -> str:
    """decK's environment substitution for a consumer key kept out of committed files."""
    env = "DECK_KEYAUTH_" + "".join(c if c.isalnum() else "_" for c in username).upper()
    return '${{ env "' + env + '" }}'


def _config(value: Any, reveal: bool) -> Any:
    """A plugin config with its secrets kept as ``SecretStr`` (for the wire: serialised and
    scrubbed by the client) or replaced by decK placeholders (for files)."""
    if isinstance(value, SecretStr):
        if reveal:
            return value
        return value.placeholder() if isinstance(value, PluginSecret) else \
            '${{ env "DECK_PLUGIN_SECRET" }}'
    if isinstance(value, dict):
        return {k: _config(v, reveal) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_config(v, reveal) for v in value]
    return value


def _plugin_doc(p: PluginSpec, tags: list[str], nested_under: str | None,
                reveal: bool = False) -> Doc:
    doc: Doc = {"name": p.name}
    for ref in ("service", "route", "consumer"):
        value = getattr(p, ref)
        if value is not None and ref != nested_under:
            doc[ref] = value
    doc.update({"config": _config(dict(p.config), reveal), "enabled": p.enabled,
                "tags": tags + list(p.tags)})
    return doc


def export(state: GatewayState, *, reveal_secrets: bool = False,
           ids: Mapping[tuple[str, str], str] | None = None) -> Doc:
    """The declarative document. Keys are decK env placeholders unless ``reveal_secrets``
    (only for pushing to a DB-less Kong). ``ids`` keeps existing entity ids stable."""
    tags = list(state.tags)
    ids = ids or {}

    def with_id(kind: str, name: str, doc: Doc) -> Doc:
        return {"id": ids[(kind, name)], **doc} if (kind, name) in ids else doc

    # decK scopes a sync to select_tags (only our entities are read, changed or deleted);
    # Kong's own loader does not know _info, so pushes to DB-less Kong leave it out.
    doc: Doc = {"_format_version": FORMAT_VERSION, "_info": {"select_tags": tags}}
    services = []
    for s in state.services:
        svc = with_id("service", s.name, {
            "name": s.name, "protocol": s.protocol, "host": s.host, "port": s.port,
            **({"path": s.path} if s.path else {}), "retries": s.retries,
            "connect_timeout": s.connect_timeout, "write_timeout": s.write_timeout,
            "read_timeout": s.read_timeout, "tags": tags + list(s.tags)})
        routes = []
        for r in (r for r in state.routes if r.service == s.name):
            route = with_id("route", r.name, {
                "name": r.name, "paths": list(r.paths), "protocols": list(r.protocols),
                **({"methods": list(r.methods)} if r.methods else {}),
                "strip_path": r.strip_path, "preserve_host": r.preserve_host,
                "tags": tags + list(r.tags)})
            plugins = [_plugin_doc(p, tags, "route", reveal_secrets) for p in state.plugins
                       if p.route == r.name and p.service is None and p.consumer is None]
            if plugins:
                route["plugins"] = plugins
            routes.append(route)
        if routes:
            svc["routes"] = routes
        plugins = [_plugin_doc(p, tags, "service", reveal_secrets) for p in state.plugins
                   if p.service == s.name and p.route is None and p.consumer is None]
        if plugins:
            svc["plugins"] = plugins
        services.append(svc)
    nested = {id(p) for p in state.plugins
              if (p.service is None) != (p.route is None) and p.consumer is None}
    upstreams = []
    for u in state.upstreams:
        up = with_id("upstream", u.name, {"name": u.name, "algorithm": u.algorithm,
                                          "slots": u.slots, "tags": tags + list(u.tags)})
        if u.healthchecks:
            up["healthchecks"] = u.healthchecks
        if state.targets is not None:
            up["targets"] = [{"target": t.target, "weight": t.weight, "tags": tags + list(t.tags)}
                             for t in state.targets if t.upstream == u.name]
        upstreams.append(up)
    consumers = []
    for c in state.consumers:
        con = with_id("consumer", c.username, {
            "username": c.username, **({"custom_id": c.custom_id} if c.custom_id else {}),
            "tags": tags + list(c.tags)})
        creds = [{"key": k.key.get_secret_value() if reveal_secrets
                  else secret_placeholder(c.username), "tags": tags + list(k.tags)}
                 for k in state.keyauth_credentials if k.consumer == c.username]
        if creds:
            con["keyauth_credentials"] = creds
        groups = [{"group": a.group, "tags": tags + list(a.tags)}
                  for a in state.acls if a.consumer == c.username]
        if groups:
            con["acls"] = groups
        consumers.append(con)
    for key, value in (("services", services), ("upstreams", upstreams),
                       ("consumers", consumers)):
        if value:
            doc[key] = value
    top = [_plugin_doc(p, tags, None, reveal_secrets) for p in state.plugins
           if id(p) not in nested]
    if top:
        doc["plugins"] = top
    return doc


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def dump(doc: Doc) -> str:
    return yaml.safe_dump(_plain(doc), sort_keys=False, default_flow_style=False)


def write(state: GatewayState, path: Path, *, reveal_secrets: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(export(state, reveal_secrets=reveal_secrets)))
    if reveal_secrets:
        path.chmod(0o600)
    return path


def _own_tags(tags: Any) -> tuple[str, ...]:
    return tuple(t for t in tags or () if t != OWNER_TAG and not t.startswith(f"{OWNER_TAG}-"))


def _stack_of(doc: Doc) -> str:
    for tag in (doc.get("_info") or {}).get("select_tags") or ():
        if tag.startswith(f"{OWNER_TAG}-"):
            return str(tag[len(OWNER_TAG) + 1:])
    for group in ("services", "upstreams", "consumers", "plugins"):
        for entity in doc.get(group) or ():
            for tag in entity.get("tags") or ():
                if tag.startswith(f"{OWNER_TAG}-"):
                    return str(tag[len(OWNER_TAG) + 1:])
    return "kongstack"


def _plugin(p: Doc, **refs: str) -> PluginSpec:
    scope = {k: p.get(k, refs.get(k)) for k in ("service", "route", "consumer")}
    return PluginSpec(name=p["name"], config=p.get("config") or {},
                      enabled=p.get("enabled", True), tags=_own_tags(p.get("tags")), **scope)


def parse(doc: Doc) -> GatewayState:
    """A declarative document (as ``export`` writes it) back into a ``GatewayState``."""
    if str(doc.get("_format_version")) != FORMAT_VERSION:
        raise ConfigError(f"_format_version: expected {FORMAT_VERSION!r}, "
                          f"got {doc.get('_format_version')!r}")
    services, routes, plugins, upstreams, consumers, creds = [], [], [], [], [], []
    acls: list[AclSpec] = []
    targets: list[TargetSpec] | None = None
    for s in doc.get("services") or ():
        fields = {k: s[k] for k in ("name", "protocol", "host", "port", "path", "retries",
                                    "connect_timeout", "write_timeout", "read_timeout") if k in s}
        services.append(ServiceSpec(**fields, tags=_own_tags(s.get("tags"))))
        for r in s.get("routes") or ():
            routes.append(RouteSpec(
                service=s["name"], tags=_own_tags(r.get("tags")),
                **{k: r[k] for k in ("name", "paths", "protocols", "methods", "strip_path",
                                     "preserve_host") if k in r}))
            plugins += [_plugin(p, route=r["name"]) for p in r.get("plugins") or ()]
        plugins += [_plugin(p, service=s["name"]) for p in s.get("plugins") or ()]
    for u in doc.get("upstreams") or ():
        upstreams.append(UpstreamSpec(name=u["name"], algorithm=u.get("algorithm", "round-robin"),
                                      slots=u.get("slots", 10000),
                                      healthchecks=u.get("healthchecks") or {},
                                      tags=_own_tags(u.get("tags"))))
        if "targets" in u:
            targets = (targets or []) + [
                TargetSpec(upstream=u["name"], target=t["target"], weight=t.get("weight", 100),
                           tags=_own_tags(t.get("tags"))) for t in u["targets"]]
    for c in doc.get("consumers") or ():
        consumers.append(ConsumerSpec(username=c["username"], custom_id=c.get("custom_id"),
                                      tags=_own_tags(c.get("tags"))))
        creds += [KeyAuthSpec(consumer=c["username"], key=k["key"], tags=_own_tags(k.get("tags")))
                  for k in c.get("keyauth_credentials") or ()]
        acls += [AclSpec(consumer=c["username"], group=a["group"], tags=_own_tags(a.get("tags")))
                 for a in c.get("acls") or ()]
    plugins += [_plugin(p) for p in doc.get("plugins") or ()]
    return GatewayState(stack=_stack_of(doc), services=tuple(services), routes=tuple(routes),
                        plugins=tuple(plugins), upstreams=tuple(upstreams),
                        targets=None if targets is None else tuple(targets),
                        consumers=tuple(consumers), keyauth_credentials=tuple(creds),
                        acls=tuple(acls))


def load(path: Path) -> GatewayState:
    return parse(load_yaml(path, what="Kong declarative config"))

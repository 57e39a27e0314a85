"""Pure diff: current Kong entities (as read, owner-tagged only) vs the desired state.

The result is a list of plain-data ``Operation``s in dependency order (decK's
``dependencyOrder``): deletes first, bottom-up (plugin → … → upstream), then creates and
updates top-down (upstream → target → service → route → consumer → credential → ACL group
→ plugin).
Equal entities produce nothing, so re-applying an unchanged state plans zero operations.

Write methods are chosen so a retried request is harmless: name-keyed entities and
deterministic-id plugins/credentials and ACL groups (``PUT /consumers/{c}/acls/{group}``, an
upsert by group name in Kong's acl API) are upserted with ``PUT``; targets (no upsert in Kong
3.x) are created with ``POST`` (409 = already there) and deleted with ``DELETE`` (404 = gone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from tasks.gateway.kong.model import CREATE_ORDER, GatewayState, Kind
from tasks.gateway.protocol import Operation

Entity = dict[str, Any]
# Fields Kong manages itself; never part of a comparison.
_SERVER_FIELDS = {"id", "created_at", "updated_at"}
_REF_KEYS = {"service": "services", "route": "routes", "consumer": "consumers",
             "upstream": "upstreams"}


@dataclass
class CurrentState:
    """Owner-tagged entities as the Admin API returned them (ids for references)."""

    upstreams: list[Entity] = field(default_factory=list)
    targets: list[Entity] = field(default_factory=list)
    services: list[Entity] = field(default_factory=list)
    routes: list[Entity] = field(default_factory=list)
    consumers: list[Entity] = field(default_factory=list)
    keyauth_credentials: list[Entity] = field(default_factory=list)
    acls: list[Entity] = field(default_factory=list)
    plugins: list[Entity] = field(default_factory=list)

    def names_by_id(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for group in (self.upstreams, self.services, self.routes):
            names.update({e["id"]: e["name"] for e in group})
        names.update({e["id"]: e["username"] for e in self.consumers})
        return names

    def ids_by_name(self) -> dict[tuple[str, str], str]:
        """``(kind, name) -> id`` for the entities that others reference by id."""
        return {(kind, e[key]): e["id"]
                for kind, group, key in (("service", self.services, "name"),
                                         ("route", self.routes, "name"),
                                         ("consumer", self.consumers, "username"),
                                         ("upstream", self.upstreams, "name"))
                for e in group}

    def entities(self, kind: Kind) -> list[Entity]:
        return list(getattr(self, _COLLECTION[kind]))


_COLLECTION: dict[Kind, str] = {
    "upstream": "upstreams", "target": "targets", "service": "services", "route": "routes",
    "consumer": "consumers", "keyauth_credential": "keyauth_credentials", "acl": "acls",
    "plugin": "plugins",
}


@dataclass(frozen=True)
class _Desired:
    key: tuple[str, ...]
    name: str
    body: dict[str, Any]
    create: tuple[str, str]  # (method, path)
    update: tuple[str, str]


def _q(value: str) -> str:
    return quote(value, safe=":")


def _ref(kind: str, name: str | None) -> dict[str, str] | None:
    if name is None:
        return None
    return {"username": name} if kind == "consumer" else {"name": name}


def desired_entities(state: GatewayState, kind: Kind) -> list[_Desired]:
    """Kong request bodies for one kind, keyed like ``_current_key`` keys what Kong returns."""
    tags = list(state.tags)
    out: list[_Desired] = []
    if kind == "upstream":
        for u in state.upstreams:
            body = {"name": u.name, "algorithm": u.algorithm, "slots": u.slots,
                    "healthchecks": u.healthchecks, "tags": tags + list(u.tags)}
            path = f"/upstreams/{_q(u.name)}"
            out.append(_Desired((u.name,), u.name, body, ("PUT", path), ("PUT", path)))
    elif kind == "target":
        for t in state.targets or ():
            body = {"target": t.target, "weight": t.weight, "tags": tags + list(t.tags)}
            base = f"/upstreams/{_q(t.upstream)}/targets"
            out.append(_Desired((t.upstream, t.target), f"{t.upstream}/{t.target}", body,
                                ("POST", base), ("PATCH", f"{base}/{_q(t.target)}")))
    elif kind == "service":
        for s in state.services:
            body = {"name": s.name, "protocol": s.protocol, "host": s.host, "port": s.port,
                    "path": s.path, "retries": s.retries, "connect_timeout": s.connect_timeout,
                    "write_timeout": s.write_timeout, "read_timeout": s.read_timeout,
                    "tags": tags + list(s.tags)}
            path = f"/services/{_q(s.name)}"
            out.append(_Desired((s.name,), s.name, body, ("PUT", path), ("PUT", path)))
    elif kind == "route":
        for r in state.routes:
            body = {"name": r.name, "service": _ref("service", r.service),
                    "paths": list(r.paths), "protocols": list(r.protocols),
                    "methods": list(r.methods) if r.methods else None,
                    "strip_path": r.strip_path, "preserve_host": r.preserve_host,
                    "tags": tags + list(r.tags)}
            path = f"/routes/{_q(r.name)}"
            out.append(_Desired((r.name,), r.name, body, ("PUT", path), ("PUT", path)))
    elif kind == "consumer":
        for c in state.consumers:
            body = {"username": c.username, "custom_id": c.custom_id,
                    "tags": tags + list(c.tags)}
            path = f"/consumers/{_q(c.username)}"
            out.append(_Desired((c.username,), c.username, body, ("PUT", path), ("PUT", path)))
    elif kind == "keyauth_credential":
        for k in state.keyauth_credentials:
            body = {"key": k.key, "tags": tags + list(k.tags)}
            path = f"/consumers/{_q(k.consumer)}/key-auth/{k.id}"
            # The key is secret: identity and display use the consumer and derived id only.
            out.append(_Desired((k.consumer, k.key.get_secret_value()), f"{k.consumer}/{k.id}",
                                body, ("PUT", path), ("PUT", path)))
    elif kind == "acl":
        for a in state.acls:
            path = f"/consumers/{_q(a.consumer)}/acls/{_q(a.group)}"
            out.append(_Desired((a.consumer, a.group), f"{a.consumer}/{a.group}",
                                {"group": a.group, "tags": tags + list(a.tags)},
                                ("PUT", path), ("PUT", path)))
    elif kind == "plugin":
        for p in state.plugins:
            body = {"name": p.name, "config": p.config, "enabled": p.enabled,
                    "tags": tags + list(p.tags)}
            for ref_kind in ("service", "route", "consumer"):
                ref = _ref(ref_kind, getattr(p, ref_kind))
                if ref is not None:
                    body[ref_kind] = ref
            path = f"/plugins/{p.id_for(state.stack)}"
            out.append(_Desired(p.scope, p.label, body, ("PUT", path), ("PUT", path)))
    return out


def _ref_name(entity: Entity, key: str, names: dict[str, str]) -> str:
    ref = entity.get(key)
    if isinstance(ref, dict) and ref.get("id"):
        return names.get(str(ref["id"]), str(ref["id"]))
    return ""


def _current_key(kind: Kind, e: Entity, names: dict[str, str]) -> tuple[str, ...]:
    if kind == "target":
        return (_ref_name(e, "upstream", names), str(e["target"]))
    if kind == "consumer":
        return (str(e["username"]),)
    if kind == "keyauth_credential":
        return (_ref_name(e, "consumer", names), str(e["key"]))
    if kind == "acl":
        return (_ref_name(e, "consumer", names), str(e["group"]))
    if kind == "plugin":
        return (str(e["name"]), _ref_name(e, "service", names), _ref_name(e, "route", names),
                _ref_name(e, "consumer", names))
    return (str(e["name"]),)


def current_name(kind: Kind, e: Entity, names: dict[str, str]) -> str:
    if kind == "keyauth_credential":
        return f"{_ref_name(e, 'consumer', names)}/{e['id']}"
    if kind == "plugin":
        scope = [f"{k}:{_ref_name(e, k, names)}" for k in ("service", "route", "consumer")
                 if _ref_name(e, k, names)]
        return f"{e['name']}@{','.join(scope) or 'global'}"
    if kind in ("target", "acl"):
        return "/".join(_current_key(kind, e, names))
    return _current_key(kind, e, names)[0]


def _delete_path(kind: Kind, e: Entity, names: dict[str, str]) -> str:
    if kind == "target":
        return f"/upstreams/{e['upstream']['id']}/targets/{e['id']}"
    if kind == "keyauth_credential":
        return f"/consumers/{e['consumer']['id']}/key-auth/{e['id']}"
    if kind == "acl":
        return f"/consumers/{e['consumer']['id']}/acls/{e['id']}"
    return f"/{_COLLECTION[kind]}/{e['id']}"


def subset_equal(want: Any, have: Any, names: dict[str, str]) -> bool:
    """True when every field we specify matches what Kong holds (Kong adds defaults)."""
    if isinstance(want, SecretStr):
        return bool(have == want.get_secret_value())
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        if set(want) in ({"name"}, {"username"}) and "id" in have:  # a reference
            return bool(names.get(str(have["id"])) == next(iter(want.values())))
        return all(subset_equal(v, have.get(k), names) for k, v in want.items()
                   if not (v is None and k not in have))
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(
            subset_equal(w, h, names) for w, h in zip(want, have, strict=True))
    return bool(want == have)


def _matches(body: dict[str, Any], current: Entity, names: dict[str, str]) -> bool:
    fields = {k: v for k, v in body.items() if k not in _SERVER_FIELDS and k != "tags"}
    return subset_equal(fields, current, names) and set[Any](body.get("tags") or ()) == set(
        current.get("tags") or ())


def plan(current: CurrentState, desired: GatewayState) -> list[Operation]:
    """The ordered operations that turn ``current`` into ``desired``."""
    names = current.names_by_id()
    deletes: list[list[Operation]] = []
    upserts: list[Operation] = []
    for kind in CREATE_ORDER:
        have = {_current_key(kind, e, names): e for e in current.entities(kind)}
        want = desired_entities(desired, kind)
        wanted_keys = {d.key for d in want}
        for d in want:
            existing = have.get(d.key)
            if existing is None:
                upserts.append(Operation("create", kind, d.name, d.body, *d.create))
            elif not _matches(d.body, existing, names):
                method, path = d.update
                if kind == "plugin":  # address the entity Kong already has
                    path = f"/plugins/{existing['id']}"
                elif kind == "keyauth_credential":
                    path = f"{path.rsplit('/', 1)[0]}/{existing['id']}"
                upserts.append(Operation("update", kind, d.name, d.body, method, path))
        managed = kind != "target" or desired.targets is not None
        deletes.append([
            Operation("delete", kind, current_name(kind, e, names), {}, "DELETE",
                      _delete_path(kind, e, names))
            for key, e in have.items() if managed and key not in wanted_keys
        ])
    return [op for group in reversed(deletes) for op in group] + upserts

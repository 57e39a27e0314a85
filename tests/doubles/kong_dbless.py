"""``/config`` of the Kong double: DB-less declarative load (POST) and export (GET).

POST accepts the document itself or ``{"config": "<yaml/json>"}``, nested (services →
routes → plugins, consumers → keyauth_credentials, upstreams → targets) or flat with
references by name or id; it replaces the whole configuration or changes nothing (400 with
code 14). GET returns ``{"config": "<yaml>"}``: flat, references as ids, ``_transform: false``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import yaml

from tests.doubles.kong_store import FOREIGN, Entity, KongError, Store

if TYPE_CHECKING:
    from tests.doubles.kong_admin import KongAdmin, Response

ORDER = ("services", "routes", "upstreams", "targets", "consumers", "keyauth_credentials",
         "acls", "plugins")
NESTED = {"services": {"routes": ("routes", "service"), "plugins": ("plugins", "service")},
          "routes": {"plugins": ("plugins", "route")},
          "consumers": {"keyauth_credentials": ("keyauth_credentials", "consumer"),
                        "acls": ("acls", "consumer"), "plugins": ("plugins", "consumer")},
          "upstreams": {"targets": ("targets", "upstream")}}
NAME_OF = {"services": "name", "routes": "name", "upstreams": "name", "consumers": "username"}


def _invalid(message: str) -> KongError:
    return KongError(400, {"code": 14, "name": "invalid declarative configuration",
                           "message": f"declarative config is invalid: {message}",
                           "fields": {"@entity": [message]}})


def _flatten(doc: Entity) -> dict[str, list[Entity]]:
    flat: dict[str, list[Entity]] = {c: [] for c in ORDER}

    def visit(coll: str, entity: Entity, parent: tuple[str, Entity] | None) -> None:
        entity = dict(entity)
        if parent is not None:
            entity[parent[0]] = parent[1]
        children = NESTED.get(coll, {})
        nested = {k: entity.pop(k) for k in list(entity) if k in children}
        flat[coll].append(entity)
        for key, items in nested.items():
            child_coll, field = children[key]
            for item in items or ():
                visit(child_coll, item, (field, entity))

    for coll in ORDER:
        for entity in doc.get(coll) or ():
            if not isinstance(entity, dict):
                raise _invalid(f"{coll}: expected a record")
            visit(coll, entity, None)
    return flat


def load(doc: Any) -> Store:
    """A new store from a declarative document (raises KongError code 14 when invalid)."""
    if isinstance(doc, dict) and isinstance(doc.get("config"), str):
        doc = yaml.safe_load(doc["config"])
    if not isinstance(doc, dict):
        raise _invalid("expected an object")
    if str(doc.get("_format_version")) not in ("1.1", "2.1", "3.0"):
        raise _invalid("_format_version: expected one of: 1.1, 2.1, 3.0")
    unknown = [k for k in doc if k not in ORDER and k not in (
        "_format_version", "_transform", "_comment", "_ignore", "_workspace")]
    if unknown:
        raise _invalid(f"{unknown[0]}: unknown field")
    flat = _flatten(copy.deepcopy(doc))
    store = Store()
    inserted: dict[int, str] = {}  # id(document entity) → stored id, for nested parents
    for coll in ORDER:
        for entity in flat[coll]:
            body = {k: v for k, v in entity.items() if k not in FOREIGN.get(coll, {})}
            for field, target in FOREIGN.get(coll, {}).items():
                ref = entity.get(field)
                if ref is None:
                    continue
                if isinstance(ref, dict) and id(ref) in inserted:
                    body[field] = {"id": inserted[id(ref)]}
                    continue
                key = ref.get("id") or ref.get(NAME_OF.get(target, "id")) if isinstance(
                    ref, dict) else ref
                found = store.find(target, str(key))
                if found is None:
                    raise _invalid(f"{coll}: {field} {key!r} not found")
                body[field] = {"id": found["id"]}
            try:
                row = store.insert(coll, body)
            except KongError as err:
                raise _invalid(f"{coll}: {err.body.get('message')}") from None
            inserted[id(entity)] = row["id"]
    return store


def export(store: Store) -> Entity:
    doc: Entity = {"_format_version": "3.0", "_transform": False}
    for coll in ORDER:
        rows = []
        for row in store.rows[coll].values():
            row = copy.deepcopy(row)
            for field in FOREIGN.get(coll, {}):
                if isinstance(row.get(field), dict):
                    row[field] = row[field]["id"]
            rows.append({k: v for k, v in row.items() if v is not None})
        if rows:
            doc[coll] = rows
    return doc


def config_endpoint(admin: KongAdmin, method: str, body: Any) -> Response:
    if not admin.dbless:
        return 400, {"message": "this endpoint is only available when Kong is configured to "
                                "not use a database"}, {}
    if method == "GET":
        return 200, {"config": yaml.safe_dump(export(admin.store), sort_keys=False)}, {}
    if method != "POST":
        return 405, {"message": "Method not allowed"}, {}
    store = load(body)
    admin.store = store
    entities = {coll: {r["id"]: r for r in store.rows[coll].values()} for coll in ORDER}
    return 201, entities, {}

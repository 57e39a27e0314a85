"""Routing of the Kong Admin API double (Kong 3.x semantics, kong-admin-api.md §0-§3).

``KongAdmin.handle(method, path, query, body) -> (status, body, headers)`` is pure request
handling; ``tests.doubles.kong_server`` serves it over real HTTP with fault injection.
"""

from __future__ import annotations

import base64
import copy
import threading
from typing import Any
from urllib.parse import quote, unquote

from tests.doubles import kong_dbless
from tests.doubles.kong_store import UUID_RE, Entity, KongError, Store

Response = tuple[int, Any, dict[str, str]]
COLLECTIONS = {"services": "services", "routes": "routes", "upstreams": "upstreams",
               "consumers": "consumers", "plugins": "plugins", "key-auths": "keyauth_credentials",
               "acls": "acls", "targets": "targets"}
VERBS = {"POST": "create", "PUT": "create or update", "PATCH": "update", "DELETE": "remove"}
NOT_FOUND: Response = (404, {"message": "Not found"}, {})
NOT_ALLOWED: Response = (405, {"message": "Method not allowed"}, {})


def _tags_match(entity: Entity, tags: str | None) -> bool:
    if not tags:
        return True
    have = set(entity.get("tags") or ())
    if "/" in tags:
        return bool(have & set(tags.split("/")))
    return set(tags.split(",")) <= have


class KongAdmin:
    def __init__(self, *, dbless: bool = False) -> None:
        self.dbless = dbless
        self.store = Store()
        self.lock = threading.Lock()

    # -- helpers --------------------------------------------------------------------------

    def _page(self, rows: list[Entity], path: str, query: dict[str, str],
              numeric_offset: bool = False) -> Response:
        try:
            size = int(query.get("size", "100"))
        except ValueError:
            size = 0
        if not 1 <= size <= 1000:
            return 400, {"code": 9, "name": "invalid size",
                         "message": "size must be an integer between 1 and 1000"}, {}
        rows = [r for r in rows if _tags_match(r, query.get("tags"))]
        start = 0
        if "offset" in query:
            try:
                raw = query["offset"] if numeric_offset else base64.b64decode(
                    query["offset"]).decode()
                start = int(raw)
            except ValueError:
                return 400, {"code": 7, "name": "invalid offset",
                             "message": f"'{query['offset']}' is not a valid offset"}, {}
        page = [copy.deepcopy(r) for r in rows[start:start + size]]
        body: Entity = {"data": page, "next": None}
        if start + size < len(rows):
            token = str(start + size)
            offset = token if numeric_offset else base64.b64encode(token.encode()).decode()
            body["offset"] = offset
            extra = f"&size={size}" + (f"&tags={quote(query['tags'])}" if "tags" in query else "")
            body["next"] = f"{path}?offset={quote(offset, safe='')}{extra}"
        return 200, body, {}

    def _dbless_refusal(self, method: str, coll: str) -> Response:
        return 405, {"code": 12, "name": "operation unsupported",
                     "message": f"cannot {VERBS[method]} '{coll}' entities when not using "
                                "a database"}, {}

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> Response:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        with self.lock:
            try:
                return self._route(method, parts, path, query, body)
            except KongError as err:
                return err.status, err.body, {}

    def _route(self, method: str, parts: list[str], path: str, query: dict[str, str],
               body: Any) -> Response:
        if not parts:
            db = "off" if self.dbless else "postgres"
            return 200, {"version": "3.9.1", "configuration": {"database": db}}, {}
        if parts == ["config"]:
            return kong_dbless.config_endpoint(self, method, body)
        if parts[0] == "upstreams" and len(parts) >= 3 and parts[2] in ("targets", "health"):
            return self._targets(method, parts, path, query, body)
        if parts[0] == "consumers" and len(parts) >= 3 and parts[2] == "key-auth":
            return self._keyauth(method, parts, path, query, body)
        if parts[0] == "consumers" and len(parts) >= 3 and parts[2] == "acls":
            return self._acls(method, parts, path, query, body)
        coll = COLLECTIONS.get(parts[0])
        if coll is None or len(parts) > 2 or coll == "targets":
            return NOT_FOUND
        if method != "GET" and self.dbless:
            return self._dbless_refusal(method, coll)
        if len(parts) == 1:
            if method == "GET":
                return self._page(list(self.store.rows[coll].values()), path, query)
            if method == "POST":
                return 201, self.store.insert(coll, self._body(body)), {}
            return NOT_ALLOWED
        return self._entity(method, coll, parts[1], body)

    def _body(self, body: Any) -> Entity:
        if not isinstance(body, dict):
            raise KongError(400, {"message": "Cannot parse JSON body"})
        return copy.deepcopy(body)

    def _entity(self, method: str, coll: str, ref: str, body: Any,
                scope: Entity | None = None) -> Response:
        found = self.store.find(coll, ref, scope=scope)
        if method == "GET":
            return (200, copy.deepcopy(found), {}) if found else NOT_FOUND
        if method == "DELETE":
            if found:
                if self.store.referenced(coll, found["id"]):
                    return 400, {"code": 19, "name": "referenced by others",
                                 "message": "an existing 'routes' entity references this "
                                            "'services' entity"}, {}
                self.store.delete(coll, found["id"])
            return 204, None, {}
        data = self._body(body)
        if scope:
            data.update(scope)
        if method == "PATCH":
            if not found:
                return NOT_FOUND
            merged = {k: v for k, v in found.items() if k not in ("id", "created_at",
                                                                  "updated_at")}
            for k, v in data.items():
                merged[k] = ({**(merged.get(k) or {}), **v}
                             if k in ("config", "healthchecks") and isinstance(v, dict) else v)
            return 200, self.store.insert(coll, merged, entity_id=found["id"],
                                          created_at=found["created_at"]), {}
        if method == "PUT":  # upsert: create (200, not 201) or replace
            key = {"services": "name", "routes": "name", "upstreams": "name",
                   "consumers": "username", "keyauth_credentials": "key"}.get(coll)
            if found:
                return 200, self.store.insert(coll, data, entity_id=found["id"],
                                              created_at=found["created_at"]), {}
            if UUID_RE.match(ref):
                return 200, self.store.insert(coll, data, entity_id=ref), {}
            if key:
                data[key] = ref
            return 200, self.store.insert(coll, data), {}
        return NOT_ALLOWED

    # -- nested: key-auth, targets, health ------------------------------------------------

    def _keyauth(self, method: str, parts: list[str], path: str, query: dict[str, str],
                 body: Any) -> Response:
        consumer = self.store.find("consumers", parts[1])
        if consumer is None:
            return NOT_FOUND
        scope = {"consumer": {"id": consumer["id"]}}
        if method != "GET" and self.dbless:
            return self._dbless_refusal(method, "keyauth_credentials")
        if len(parts) == 3:
            if method == "GET":
                rows = [r for r in self.store.rows["keyauth_credentials"].values()
                        if r["consumer"] == scope["consumer"]]
                return self._page(rows, path, query)
            if method == "POST":
                return 201, self.store.insert("keyauth_credentials",
                                              {**self._body(body), **scope}), {}
            return NOT_ALLOWED
        if len(parts) == 4:
            return self._entity(method, "keyauth_credentials", parts[3], body, scope)
        return NOT_FOUND

    def _acls(self, method: str, parts: list[str], path: str, query: dict[str, str],
              body: Any) -> Response:
        """``/consumers/{c}/acls[/{group or id}]`` (kong/plugins/acl/api.lua): a group name
        in the URL addresses the consumer's membership of that group; PUT upserts it."""
        consumer = self.store.find("consumers", parts[1])
        if consumer is None:
            return NOT_FOUND
        scope = {"consumer": {"id": consumer["id"]}}
        if method != "GET" and self.dbless:
            return self._dbless_refusal(method, "acls")
        mine = [r for r in self.store.rows["acls"].values() if r["consumer"] == scope["consumer"]]
        if len(parts) == 3:
            if method == "GET":
                return self._page(mine, path, query)
            if method == "POST":
                return 201, self.store.insert("acls", {**self._body(body), **scope}), {}
            return NOT_ALLOWED
        if len(parts) != 4:
            return NOT_FOUND
        ref = parts[3]
        found = next((r for r in mine if r["id"] == ref or r["group"] == ref), None)
        if method == "GET":
            return (200, copy.deepcopy(found), {}) if found else NOT_FOUND
        if method == "DELETE":
            if found is None:
                return NOT_FOUND
            self.store.delete("acls", found["id"])
            return 204, None, {}
        if method in ("PUT", "PATCH"):
            data = self._body(body)
            if found is None:
                if method == "PATCH":
                    return NOT_FOUND
                data.setdefault("group", ref)
                return 200, self.store.insert("acls", {**data, **scope},
                                              entity_id=ref if UUID_RE.match(ref) else None), {}
            merged = {"group": found["group"], "tags": found["tags"], **data, **scope}
            return 200, self.store.insert("acls", merged, entity_id=found["id"],
                                          created_at=found["created_at"]), {}
        return NOT_ALLOWED

    def _targets(self, method: str, parts: list[str], path: str, query: dict[str, str],
                 body: Any) -> Response:
        upstream = self.store.find("upstreams", parts[1])
        if upstream is None:
            return NOT_FOUND
        scope = {"upstream": {"id": upstream["id"]}}
        rows = [r for r in self.store.rows["targets"].values() if r["upstream"] == scope[
            "upstream"]]
        if parts[2] == "health":
            if method != "GET":
                return NOT_ALLOWED
            status, page, headers = self._page(rows, path, query, numeric_offset=True)
            if status == 200:
                page["node_id"] = "2a8f4c1e-3b7d-4e9a-8c6f-1d2e3f4a5b6c"
                page["data"] = [self._with_health(upstream, t) for t in page["data"]]
            return status, page, headers
        if len(parts) == 3:
            if method == "GET":
                return self._page(rows, path, query, numeric_offset=True)
            if method != "POST":
                return NOT_ALLOWED
            if self.dbless:
                return self._dbless_refusal(method, "targets")
            return 201, self.store.insert("targets", {**self._body(body), **scope}), {}
        target = self.store.find("targets", parts[3], scope=scope)
        if len(parts) == 5 and parts[4] in ("healthy", "unhealthy"):  # allowed in DB-less
            if method != "PUT":
                return NOT_ALLOWED
            if target is None:
                return NOT_FOUND
            self.store.health_overrides[target["id"]] = parts[4].upper()
            return 204, None, {}
        if len(parts) != 4:
            return NOT_FOUND
        if method != "GET" and self.dbless:
            return self._dbless_refusal(method, "targets")
        if method == "DELETE" and target is None:
            return NOT_FOUND  # unlike other entities, a missing target is 404
        if method == "PUT" and target is None:
            return NOT_FOUND  # targets have no upsert in 3.x
        return self._entity(method, "targets", parts[3], body, scope)

    def _with_health(self, upstream: Entity, target: Entity) -> Entity:
        checks = upstream["healthchecks"]
        enabled = (checks["active"]["healthy"]["interval"] > 0
                   or checks["active"]["unhealthy"]["interval"] > 0
                   or any(v for k, v in checks["passive"]["unhealthy"].items()
                          if k != "http_statuses"))
        host, port = target["target"].rsplit(":", 1)
        if target["weight"] == 0 or not enabled:
            health = "HEALTHCHECKS_OFF"
        else:
            health = self.store.health_overrides.get(target["id"], "HEALTHY")
        weight = target["weight"]
        return {**target, "health": health, "data": {
            "host": host, "port": int(port), "dns": "A", "nodeWeight": weight,
            "weight": {"total": weight, "available": weight if health != "UNHEALTHY" else 0,
                       "unavailable": 0 if health != "UNHEALTHY" else weight},
            "addresses": [{"ip": host, "port": int(port), "weight": weight,
                           "health": health}]}}

"""Entity store of the Kong Admin API double: schemas, defaults, uniqueness, references.

Shapes, defaults and error bodies follow /work/shared/reference/kong-admin-api.md (Kong 3.x
source and spec tests): ``{"code": 2, "name": "schema violation", ...}``, 409 with code 5,
foreign keys as ``{"id": ...}``, targets' float timestamps, PUT replacing the entity.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from typing import Any

Entity = dict[str, Any]

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")

_ACTIVE_DEFAULT = {
    "type": "http", "timeout": 1, "concurrency": 10, "http_path": "/", "https_sni": None,
    "https_verify_certificate": True, "headers": None,
    "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
    "unhealthy": {"interval": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                  "tcp_failures": 0, "timeouts": 0, "http_failures": 0},
}
_PASSIVE_DEFAULT = {
    "type": "http",
    "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301,
                                  302, 303, 304, 305, 306, 307, 308], "successes": 0},
    "unhealthy": {"http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0,
                  "http_failures": 0},
}

# Per collection: field defaults (fields not listed are unknown → schema violation).
DEFAULTS: dict[str, Entity] = {
    "services": {"name": None, "retries": 5, "protocol": "http", "host": None, "port": 80,
                 "path": None, "connect_timeout": 60000, "write_timeout": 60000,
                 "read_timeout": 60000, "tags": None, "client_certificate": None,
                 "tls_verify": None, "tls_verify_depth": None, "ca_certificates": None,
                 "enabled": True},
    "routes": {"name": None, "protocols": ["http", "https"], "methods": None, "hosts": None,
               "paths": None, "headers": None, "https_redirect_status_code": 426,
               "regex_priority": 0, "strip_path": True, "path_handling": "v0",
               "preserve_host": False, "request_buffering": True, "response_buffering": True,
               "tags": None, "service": None, "snis": None, "sources": None,
               "destinations": None},
    "upstreams": {"name": None, "algorithm": "round-robin", "hash_on": "none",
                  "hash_fallback": "none", "hash_on_header": None, "hash_fallback_header": None,
                  "hash_on_cookie": None, "hash_on_cookie_path": "/", "hash_on_query_arg": None,
                  "hash_fallback_query_arg": None, "hash_on_uri_capture": None,
                  "hash_fallback_uri_capture": None, "slots": 10000,
                  "healthchecks": {"threshold": 0, "active": _ACTIVE_DEFAULT,
                                   "passive": _PASSIVE_DEFAULT},
                  "tags": None, "host_header": None, "client_certificate": None,
                  "use_srv_name": False},
    "targets": {"upstream": None, "target": None, "weight": 100, "tags": None},
    "consumers": {"username": None, "custom_id": None, "tags": None},
    "keyauth_credentials": {"consumer": None, "key": None, "tags": None, "ttl": None},
    "acls": {"consumer": None, "group": None, "tags": None},
    "plugins": {"name": None, "route": None, "service": None, "consumer": None,
                "instance_name": None, "config": {}, "protocols": ["grpc", "grpcs", "http",
                                                                  "https"],
                "enabled": True, "tags": None, "ordering": None},
}
FOREIGN = {"routes": {"service": "services"}, "targets": {"upstream": "upstreams"},
           "keyauth_credentials": {"consumer": "consumers"}, "acls": {"consumer": "consumers"},
           "plugins": {"service": "services", "route": "routes", "consumer": "consumers"}}
ENDPOINT_KEY = {"services": "name", "routes": "name", "upstreams": "name", "consumers": "username",
                "targets": "target", "keyauth_credentials": "key"}
PLUGIN_DEFAULTS: dict[str, Entity] = {
    "key-auth": {"key_names": ["apikey"], "hide_credentials": False, "anonymous": None,
                 "key_in_header": True, "key_in_query": True, "key_in_body": False,
                 "run_on_preflight": True, "realm": None},
    "rate-limiting": {"second": None, "minute": None, "hour": None, "day": None, "month": None,
                      "year": None, "limit_by": "consumer", "policy": "local",
                      "fault_tolerant": True, "hide_client_headers": False, "error_code": 429,
                      "error_message": "API rate limit exceeded", "sync_rate": -1},
    "acl": {"allow": None, "deny": None, "hide_groups_header": False,
            "always_use_authenticated_groups": False},
    "request-termination": {"status_code": 503, "message": None, "content_type": None,
                            "body": None, "echo": False, "trigger": None},
    "prometheus": {"per_consumer": False, "status_code_metrics": False,
                   "latency_metrics": False, "bandwidth_metrics": False,
                   "upstream_health_metrics": False, "ai_metrics": False,
                   "wasm_metrics": False},
    "correlation-id": {"header_name": "Kong-Request-ID", "generator": "uuid#counter",
                       "echo_downstream": False},
    "request-transformer": {
        "http_method": None,
        **{op: {"body": [], "headers": [], "querystring": []}
           for op in ("remove", "rename", "add", "append")},
        "replace": {"body": [], "headers": [], "querystring": [], "uri": None},
    },
    "http-log": {"http_endpoint": None, "method": "POST", "content_type": "application/json",
                 "timeout": 10000, "keepalive": 60000, "headers": None,
                 "custom_fields_by_lua": None},
}


class KongError(Exception):
    def __init__(self, status: int, body: Entity) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


def schema_violation(fields: dict[str, str]) -> KongError:
    parts = "; ".join(f"{k}: {v}" for k, v in fields.items())
    count = "schema violation" if len(fields) == 1 else f"{len(fields)} schema violations"
    return KongError(400, {"code": 2, "name": "schema violation",
                           "message": f"{count} ({parts})", "fields": fields})


def merge_defaults(defaults: Any, value: Any) -> Any:
    if isinstance(defaults, dict) and isinstance(value, dict):
        out = copy.deepcopy(defaults)
        for k, v in value.items():
            out[k] = merge_defaults(defaults.get(k), v)
        return out
    return copy.deepcopy(value)


class Store:
    """All entities of one Kong node, in insertion order."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Entity]] = {c: {} for c in DEFAULTS}
        self.health_overrides: dict[str, str] = {}  # target id → HEALTHY|UNHEALTHY

    # -- lookup ---------------------------------------------------------------------------

    def find(self, coll: str, ref: str, *, scope: Entity | None = None) -> Entity | None:
        rows = list(self.rows[coll].values())
        if scope:
            rows = [r for r in rows if all(r.get(k) == v for k, v in scope.items())]
        if UUID_RE.match(ref):
            return next((r for r in rows if r["id"] == ref), None)
        key = ENDPOINT_KEY.get(coll)
        if coll == "targets" and ":" not in ref:
            ref = f"{ref}:8000"
        return next((r for r in rows if key and r.get(key) == ref), None)

    def _foreign(self, coll: str, body: Entity) -> None:
        for field, target in FOREIGN.get(coll, {}).items():
            ref = body.get(field)
            if ref is None:
                continue
            if not isinstance(ref, dict) or not ref.get("id"):
                raise schema_violation({field: "expected a record with an id"})
            if ref["id"] not in self.rows[target]:
                raise KongError(400, {"code": 4, "name": "foreign key violation",
                                      "message": f"the foreign key '{{id=\"{ref['id']}\"}}' "
                                                 f"does not reference an existing '{target[:-1]}'"
                                                 " entity.", "fields": {field: ref}})
            body[field] = {"id": ref["id"]}

    # -- validation -----------------------------------------------------------------------

    def validate(self, coll: str, body: Entity) -> Entity:
        defaults = DEFAULTS[coll]
        unknown = {k: "unknown field" for k in body if k not in defaults and k not in
                   ("id", "created_at", "updated_at")}
        if unknown:
            raise schema_violation(unknown)
        row: Entity = merge_defaults(defaults, body)
        errors: dict[str, str] = {}
        if coll == "services" and not row["host"]:
            errors["host"] = "required field missing"
        if coll == "routes" and not (row["paths"] or row["hosts"] or row["methods"]):
            errors["@entity"] = "must set one of 'methods', 'hosts', 'headers', 'paths'"
        if coll == "upstreams" and not (row["name"] and HOST_RE.match(row["name"])):
            errors["name"] = "Invalid name; must be a valid hostname"
        if coll == "consumers" and not (row["username"] or row["custom_id"]):
            errors["@entity"] = "at least one of these fields must be non-empty: " \
                                "'custom_id', 'username'"
        if coll == "targets":
            target = row["target"]
            if not target:
                errors["target"] = "required field missing"
            elif not HOST_RE.match(str(target).rsplit(":", 1)[0]):
                errors["target"] = "Invalid target; not a valid hostname or ip address"
            elif ":" not in str(target):
                row["target"] = f"{target}:8000"
            if not isinstance(row["weight"], int) or not 0 <= row["weight"] <= 65535:
                errors["weight"] = "value should be between 0 and 65535"
        if coll == "plugins":
            if row["name"] not in PLUGIN_DEFAULTS:
                errors["name"] = f"plugin '{row['name']}' not enabled; add it to 'plugins' " \
                                 "configuration property"
            else:
                row["config"] = merge_defaults(PLUGIN_DEFAULTS[row["name"]], row["config"] or {})
                if row["name"] == "http-log" and not row["config"]["http_endpoint"]:
                    errors["config.http_endpoint"] = "required field missing"
        if coll == "keyauth_credentials" and not row["key"]:
            row["key"] = uuid.uuid4().hex
        if coll == "acls" and not row["group"]:
            errors["group"] = "required field missing"
        if coll == "plugins" and row["name"] == "acl" and not errors:
            allow, deny = row["config"]["allow"], row["config"]["deny"]
            if bool(allow) == bool(deny):  # entity_checks only_one_of / at_least_one_of
                errors["@entity"] = "exactly one of these fields must be non-empty: " \
                                    "'config.allow', 'config.deny'"
        if coll == "plugins" and row["name"] == "acl" and row["consumer"] is not None:
            errors["consumer"] = "value must be null"  # typedefs.no_consumer
        if errors:
            raise schema_violation(errors)
        self._foreign(coll, row)
        return row

    def _unique(self, coll: str, row: Entity) -> None:
        others = [r for r in self.rows[coll].values() if r["id"] != row["id"]]
        unique_keys: dict[str, list[tuple[str, ...]]] = {
            "services": [("name",)], "routes": [("name",)], "upstreams": [("name",)],
            "consumers": [("username",), ("custom_id",)], "keyauth_credentials": [("key",)],
            "acls": [("consumer", "group")],
            "targets": [("upstream", "target")],
            "plugins": [("name", "service", "route", "consumer")]}
        for fields in unique_keys[coll]:
            if all(row.get(f) is None for f in fields):
                continue
            if any(all(o.get(f) == row.get(f) for f in fields) for o in others):
                clash = {f: row.get(f) for f in fields}
                shown = ",".join(f"{f}={clash[f]!r}" for f in fields).replace("'", '"')
                raise KongError(409, {"code": 5, "name": "unique constraint violation",
                                      "message": f"UNIQUE violation detected on '{{{shown}}}'",
                                      "fields": clash})

    # -- writes ---------------------------------------------------------------------------

    def insert(self, coll: str, body: Entity, *, entity_id: str | None = None,
               created_at: float | None = None) -> Entity:
        row = self.validate(coll, body)
        row["id"] = entity_id or body.get("id") or str(uuid.uuid4())
        now = time.time()
        stamp: float = round(now, 3) if coll == "targets" else int(now)
        row["created_at"] = created_at if created_at is not None else stamp
        row["updated_at"] = stamp
        self._unique(coll, row)
        self.rows[coll][row["id"]] = row
        out: Entity = copy.deepcopy(row)
        return out

    def delete(self, coll: str, entity_id: str) -> None:
        self.rows[coll].pop(entity_id, None)
        cascades = {"upstreams": [("targets", "upstream")],
                    "consumers": [("keyauth_credentials", "consumer"), ("acls", "consumer"),
                                  ("plugins", "consumer")],
                    "routes": [("plugins", "route")], "services": [("plugins", "service")]}
        for child, field in cascades.get(coll, []):
            for cid in [i for i, r in self.rows[child].items()
                        if (r.get(field) or {}).get("id") == entity_id]:
                self.rows[child].pop(cid)

    def referenced(self, coll: str, entity_id: str) -> bool:
        """A service still used by routes cannot be deleted (code 19 upstream in Kong)."""
        return coll == "services" and any(
            (r.get("service") or {}).get("id") == entity_id for r in self.rows["routes"].values())

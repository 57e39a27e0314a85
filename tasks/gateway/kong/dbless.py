"""DB-less Kong: every change is one ``POST /config`` with the whole declarative document.

The document starts from Kong's own export (``GET /config``) so entities that are not ours
survive untouched; entities carrying our owner tags are removed and replaced by the desired
state, keeping their ids so that references from other entities stay valid.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from kongstack.core.errors import ConfigError, GatewayError
from kongstack.core.yamlfile import parse_yaml
from tasks.gateway.kong import declarative
from tasks.gateway.kong.client import KongAdminClient
from tasks.gateway.kong.diff import CurrentState
from tasks.gateway.kong.model import GatewayState, TargetSpec

Doc = dict[str, Any]


def fetch_config(client: KongAdminClient) -> Doc:
    raw = client.request("GET", "/config", expect=(200,)).json().get("config")
    if isinstance(raw, str):
        try:
            raw = parse_yaml(raw, what="declarative config", origin="Kong GET /config")
        except ConfigError as exc:
            raise GatewayError(str(exc)) from exc
    doc = raw
    if not isinstance(doc, dict):
        raise GatewayError("Kong GET /config did not return a declarative document")
    return doc


def _owned(entity: Any, tags: tuple[str, ...]) -> bool:
    return isinstance(entity, dict) and set(tags) <= set(entity.get("tags") or ())


def strip_owned(doc: Doc, tags: tuple[str, ...]) -> Doc:
    """The document without any entity carrying ``tags`` (nested ones included)."""
    def clean(entity: Any) -> Any:
        if not isinstance(entity, dict):
            return entity
        return {k: [clean(e) for e in v if not _owned(e, tags)] if isinstance(v, list)
                and v and all(isinstance(e, dict) for e in v) else v
                for k, v in entity.items()}
    return dict(clean(doc))


def _wrap_keys(doc: Doc) -> Doc:
    """Key-auth keys as ``SecretStr``: serialised on the wire, scrubbed from error echoes."""
    def wrap(creds: Any) -> None:
        for cred in creds or ():
            if isinstance(cred, dict) and isinstance(cred.get("key"), str):
                cred["key"] = SecretStr(cred["key"])
    wrap(doc.get("keyauth_credentials"))
    for consumer in doc.get("consumers") or ():
        wrap(consumer.get("keyauth_credentials"))
    return doc


def push(client: KongAdminClient, doc: Doc) -> None:
    client.request("POST", "/config", body=_wrap_keys(doc), expect=(200, 201))


def push_state(client: KongAdminClient, desired: GatewayState, current: CurrentState,
               tags: tuple[str, ...]) -> None:
    names = current.names_by_id()
    if desired.targets is None:  # the autoscaler's targets are part of the document too
        desired = desired.with_targets([
            TargetSpec(upstream=names[t["upstream"]["id"]], target=t["target"],
                       weight=t.get("weight", 100))
            for t in current.targets if t["upstream"]["id"] in names])
    ids = current.ids_by_name()
    doc = strip_owned(fetch_config(client), tags)
    ours = declarative.export(desired, reveal_secrets=True, ids=ids)
    for key, value in ours.items():
        if isinstance(value, list):
            doc[key] = list(doc.get(key) or []) + value
    doc.setdefault("_format_version", declarative.FORMAT_VERSION)
    push(client, doc)


def _refers_to(value: Any, upstream: Doc) -> bool:
    ref = value.get("id") if isinstance(value, dict) else value
    return ref in (upstream.get("id"), upstream.get("name"))


def edit_targets(client: KongAdminClient, upstream_name: str, tags: tuple[str, ...], *,
                 add: tuple[str, int] | None = None, drain: str | None = None,
                 remove: str | None = None) -> None:
    """Add, zero the weight of, or drop one target of ``upstream_name``; push if changed."""
    doc = fetch_config(client)
    upstream = next((u for u in doc.get("upstreams") or () if u.get("name") == upstream_name),
                    None)
    if upstream is None:
        if add is not None:
            raise GatewayError(f"upstream {upstream_name!r} is not in Kong's configuration")
        return
    nested = upstream.setdefault("targets", [])
    flat = [t for t in doc.get("targets") or () if _refers_to(t.get("upstream"), upstream)]
    address = add[0] if add else drain or remove
    existing = [t for t in nested + flat if t.get("target") == address]
    if add is not None:
        if existing and all(t.get("weight", 100) == add[1] for t in existing):
            return
        for t in existing:
            t["weight"] = add[1]
        if not existing:
            nested.append({"target": add[0], "weight": add[1], "tags": list(tags)})
    elif drain is not None:
        if not existing or all(t.get("weight", 100) == 0 for t in existing):
            return
        for t in existing:
            t["weight"] = 0
    else:
        if not existing:
            return
        upstream["targets"] = [t for t in nested if t.get("target") != remove]
        if "targets" in doc:
            doc["targets"] = [t for t in doc["targets"] if t not in existing]
    if not upstream["targets"]:
        upstream.pop("targets")
    push(client, doc)

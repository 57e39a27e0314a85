"""Kong behind the ``Gateway`` protocol: read → diff → apply, and target management.

DB mode: the planned operations are executed one by one, in order (``tasks.gateway.kong.diff``).
DB-less Kong answers the first write with 405/code 12; from then on every change is one
``POST /config`` carrying the whole declarative document: entities that are not ours are
kept as Kong exported them, ours are replaced by the desired state (``tasks.gateway.kong.dbless``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from kongstack.core.errors import GatewayError
from tasks.gateway.kong import dbless
from tasks.gateway.kong.client import DBLessError, KongAdminClient
from tasks.gateway.kong.diff import CurrentState, current_name
from tasks.gateway.kong.diff import plan as plan_operations
from tasks.gateway.kong.model import OWNER_TAG, GatewayState, owner_tags
from tasks.gateway.protocol import ApplyResult, Operation, Target, TargetHealth

log = logging.getLogger(__name__)

_NAME_KEYED = {"upstream": "upstreams", "service": "services", "route": "routes",
               "consumer": "consumers"}
_REF_COLLECTION = {"service": "services", "route": "routes", "consumer": "consumers"}


def _q(value: str) -> str:
    return quote(value, safe=":")


class KongGateway:
    """The stack's upstream and configuration in a Kong 3.x gateway (DB or DB-less)."""

    def __init__(
        self,
        *,
        client: KongAdminClient,
        stack: str = "kongstack",
        upstream: str = "stock-api-upstream",
        drain_grace_seconds: float = 6.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.stack = stack
        self.upstream = upstream
        # Kong propagates a weight change to its workers every worker_state_update_frequency
        # (5 s) and exposes no per-target in-flight count, so a drain waits this long.
        self.drain_grace_seconds = drain_grace_seconds
        self._sleep = sleep
        self.dbless: bool | None = None  # learnt from the first refused write

    def __repr__(self) -> str:
        return f"KongGateway(client={self.client!r}, stack={self.stack!r})"

    @property
    def tags(self) -> tuple[str, str]:
        return owner_tags(self.stack)

    def _owned(self, entity: dict[str, Any]) -> bool:
        return set(self.tags) <= set(entity.get("tags") or ())

    def close(self) -> None:
        self.client.close()

    # -- read -----------------------------------------------------------------------------

    def read_state(self) -> CurrentState:
        """Every owner-tagged entity, all pages (tags filter: AND of both owner tags)."""
        selector = ",".join(self.tags)

        def owned(path: str) -> list[dict[str, Any]]:
            return [e for e in self.client.paginate(path, tags=selector) if self._owned(e)]

        state = CurrentState(
            upstreams=owned("/upstreams"), services=owned("/services"), routes=owned("/routes"),
            consumers=owned("/consumers"), keyauth_credentials=owned("/key-auths"),
            acls=owned("/acls"), plugins=owned("/plugins"))
        for upstream in state.upstreams:
            path = f"/upstreams/{upstream['id']}/targets"
            state.targets += [t for t in self.client.paginate(path) if self._owned(t)]
        return state

    def _check_conflicts(self, operations: list[Operation], current: CurrentState) -> None:
        """A create of a name, plugin scope or key-auth key someone else already uses would
        overwrite or collide with their entity: refuse, naming it, before writing anything."""
        creates = [op for op in operations if op.action == "create"]
        self._check_key_conflicts(creates, current)
        for op in creates:
            if op.kind not in _NAME_KEYED:
                continue
            found = self.client.get_json(f"/{_NAME_KEYED[op.kind]}/{_q(op.name)}",
                                         expect_missing=True)
            if found is not None and not self._owned(found):
                raise GatewayError(f"{op.kind} {op.name!r} exists in Kong without the "
                                   f"{OWNER_TAG} owner tags; refusing to change it")
        plugin_creates = {op.name for op in creates if op.kind == "plugin"}
        if not plugin_creates:
            return
        names = current.names_by_id()
        for plugin in self.client.paginate("/plugins"):
            if self._owned(plugin):
                continue
            label = current_name("plugin", plugin, names)
            if label in plugin_creates:  # Kong allows one plugin of a name per scope
                raise GatewayError(f"plugin {label} already exists in Kong without the "
                                   f"{OWNER_TAG} owner tags; remove it or tag it")

    def _check_key_conflicts(self, creates: list[Operation], current: CurrentState) -> None:
        """Kong keys are unique across all consumers: a key held by a credential that is not
        ours would fail with 409 halfway through the writes. The credentials are listed (one
        paginated read) rather than looked up by key, so no key appears in a URL or a log."""
        wanted = {op.body["key"].get_secret_value(): op.name.split("/", 1)[0]
                  for op in creates if op.kind == "keyauth_credential"
                  and isinstance(op.body.get("key"), SecretStr)}
        if not wanted:
            return
        ours = {str(c["id"]) for c in current.keyauth_credentials}
        for credential in self.client.paginate("/key-auths"):
            if str(credential.get("id")) in ours:
                continue
            consumer = wanted.get(str(credential.get("key")))
            if consumer is not None:
                owner = "another stack's" if OWNER_TAG in (credential.get("tags") or ()) \
                    else "an untagged"
                raise GatewayError(f"consumer {consumer!r}: its key-auth key is already held by "
                                   f"{owner} credential in Kong (Kong keys are unique); rotate "
                                   "the key in its Secret block or remove that credential")

    # -- apply ----------------------------------------------------------------------------

    def plan(self, desired: GatewayState) -> tuple[CurrentState, list[Operation]]:
        if desired.stack != self.stack:
            raise GatewayError(f"desired state is for stack {desired.stack!r}, "
                               f"gateway manages {self.stack!r}")
        current = self.read_state()
        operations = plan_operations(current, desired)
        self._check_conflicts(operations, current)
        return current, operations

    def apply(self, desired: Any, *, dry_run: bool = False) -> ApplyResult:
        if not isinstance(desired, GatewayState):
            raise TypeError("KongGateway.apply expects a tasks.gateway.kong.model.GatewayState")
        reads, writes = self.client.reads, self.client.writes
        current, operations = self.plan(desired)
        for op in operations:  # the plan, without bodies (they may hold keys)
            log.info("%s%s", "[dry run] " if dry_run else "", op.describe())
        if operations and not dry_run:
            if self.dbless:
                dbless.push_state(self.client, desired, current, self.tags)
            else:
                self._execute_all(operations, current, desired)
        return ApplyResult(operations=operations, dry_run=dry_run,
                           reads=self.client.reads - reads, writes=self.client.writes - writes)

    def _execute_all(self, operations: list[Operation], current: CurrentState,
                     desired: GatewayState) -> None:
        ids = current.ids_by_name()
        for index, op in enumerate(operations):
            try:
                self._execute(op, ids)
            except DBLessError:
                if index != 0:
                    raise  # a DB-less Kong refuses the first write, never a later one
                log.info("Kong is DB-less; pushing the declarative config with POST /config")
                self.dbless = True
                dbless.push_state(self.client, desired, current, self.tags)
                return
        self.dbless = False

    def _resolve(self, body: dict[str, Any], ids: dict[tuple[str, str], str]) -> dict[str, Any]:
        """Replace ``{"name": …}`` references with the ids Kong gave those entities."""
        out = dict(body)
        for kind, collection in _REF_COLLECTION.items():
            ref = body.get(kind)
            if isinstance(ref, dict) and "id" not in ref:
                name = next(iter(ref.values()))
                if (kind, name) not in ids:
                    found = self.client.get_json(f"/{collection}/{_q(name)}", expect_missing=True)
                    if found is None:
                        raise GatewayError(f"{kind} {name!r} referenced but missing in Kong")
                    ids[(kind, name)] = found["id"]
                out[kind] = {"id": ids[(kind, name)]}
        return out

    def _execute(self, op: Operation, ids: dict[tuple[str, str], str]) -> None:
        if op.action == "delete":
            # 404 means already gone (targets); other kinds answer 204 either way.
            self.client.request("DELETE", op.path, expect=(204, 404))
            return
        body = self._resolve(op.body, ids)
        if op.kind == "target" and op.action == "create":
            response = self.client.request("POST", op.path, body=body, expect=(201, 409))
            if response.status_code == 409:  # created by an earlier attempt, or by a peer
                self._patch_target_weight(op.path, body["target"], body["weight"])
            return
        response = self.client.request(op.method, op.path, body=body, expect=(200, 201))
        if op.kind in _NAME_KEYED:
            ids[(op.kind, op.name)] = response.json()["id"]

    def _patch_target_weight(self, targets_path: str, address: str, weight: int) -> None:
        path = f"{targets_path}/{_q(address)}"
        found = self.client.get_json(path, expect_missing=True)
        if found is not None and found.get("weight") != weight:
            self.client.request("PATCH", path, body={"weight": weight}, expect=(200,))

    # -- targets --------------------------------------------------------------------------

    @property
    def _targets_path(self) -> str:
        return f"/upstreams/{_q(self.upstream)}/targets"

    def list_targets(self) -> list[Target]:
        """Targets with Kong's node-local health (``/upstreams/{u}/health``)."""
        if self.client.get_json(f"/upstreams/{_q(self.upstream)}", expect_missing=True) is None:
            return []
        out = []
        for t in self.client.paginate(f"/upstreams/{_q(self.upstream)}/health"):
            weight = int(t.get("weight", 100))
            raw = str(t.get("health", "UNKNOWN"))
            health = TargetHealth(raw) if raw in TargetHealth.__members__ else TargetHealth.UNKNOWN
            if weight == 0:  # Kong shows HEALTHCHECKS_OFF for a weight-0 (draining) target
                health = TargetHealth.DRAINING
            tags = tuple(t.get("tags") or ())
            out.append(Target(address=t["target"], weight=weight, health=health, tags=tags,
                              owned=set(self.tags) <= set(tags)))
        return out

    def add_target(self, address: str, weight: int = 100) -> None:
        """POST the target; 409 means it exists (then only its weight is corrected)."""
        log.info("upstream %s: adding target %s (weight %d)", self.upstream, address, weight)
        if self.dbless:
            dbless.edit_targets(self.client, self.upstream, self.tags, add=(address, weight))
            return
        body = {"target": address, "weight": weight, "tags": list(self.tags)}
        try:
            response = self.client.request("POST", self._targets_path, body=body,
                                           expect=(201, 409))
        except DBLessError:
            self.dbless = True
            dbless.edit_targets(self.client, self.upstream, self.tags, add=(address, weight))
            return
        if response.status_code == 409:
            self._patch_target_weight(self._targets_path, address, weight)

    def drain_target(self, address: str) -> None:
        """Weight 0 (the balancer stops picking it; open requests continue), then wait
        until this node reports it and the propagation grace has passed."""
        path = f"{self._targets_path}/{_q(address)}"
        log.info("upstream %s: draining target %s (weight 0)", self.upstream, address)
        if self.dbless:
            dbless.edit_targets(self.client, self.upstream, self.tags, drain=address)
        else:
            try:
                response = self.client.request("PATCH", path, body={"weight": 0},
                                               expect=(200, 404))
            except DBLessError:
                self.dbless = True
                dbless.edit_targets(self.client, self.upstream, self.tags, drain=address)
            else:
                if response.status_code == 404:
                    return  # not registered: nothing can reach it
        found = self.client.get_json(path, expect_missing=True)
        if found is not None and found.get("weight") != 0:
            raise GatewayError(f"target {address}: weight still {found.get('weight')} "
                               "after drain")
        self._sleep(self.drain_grace_seconds)

    def remove_target(self, address: str) -> None:
        """DELETE the target; 404 (unknown target or upstream) counts as done."""
        log.info("upstream %s: removing target %s", self.upstream, address)
        if self.dbless:
            dbless.edit_targets(self.client, self.upstream, self.tags, remove=address)
            return
        try:
            self.client.request("DELETE", f"{self._targets_path}/{_q(address)}",
                                expect=(204, 404))
        except DBLessError:
            self.dbless = True
            dbless.edit_targets(self.client, self.upstream, self.tags, remove=address)

    def set_target_health(self, address: str, *, healthy: bool) -> None:
        """Manual health override: ``PUT …/targets/{t}/healthy|unhealthy`` (204)."""
        state = "healthy" if healthy else "unhealthy"
        self.client.request("PUT", f"{self._targets_path}/{_q(address)}/{state}", expect=(204,))

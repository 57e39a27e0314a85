"""nginx behind the ``Gateway`` protocol: the local default gateway.

State (site settings and target weights) lives in ``<prefix>/state.json`` under an
exclusive file lock, so list/add/drain/remove are idempotent across processes (the CLI,
deploy-stack and every autoscale tick). A change renders nginx.conf, checks it with
``nginx -t`` and reloads gracefully; an unchanged render makes no write and no reload.
Drain = weight 0: the target leaves the upstream block, the reload is verified, old workers
finish the requests they hold, new requests go elsewhere.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from kongstack.core.errors import GatewayError
from kongstack.core.files import write_atomic
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.nginx.render import Listen, render
from tasks.gateway.nginx.server import NginxServer
from tasks.gateway.nginx.site import NginxSite, site_from_state
from tasks.gateway.protocol import ApplyResult, Operation, Target, TargetHealth

log = logging.getLogger(__name__)


@dataclass
class _State:
    generation: int = 0
    site: NginxSite | None = None
    targets: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        site = None
        if self.site is not None:
            site = self.site.model_dump(mode="json")
            site["consumers"] = {u: k.get_secret_value() for u, k in self.site.consumers.items()}
        return json.dumps({"generation": self.generation, "site": site,
                           "targets": self.targets}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> _State:
        raw = json.loads(text)
        site = raw.get("site")
        if site is not None:
            site["consumers"] = {u: SecretStr(k) for u, k in site["consumers"].items()}
        return cls(generation=int(raw.get("generation", 0)),
                   site=NginxSite.model_validate(site) if site is not None else None,
                   targets={str(k): int(v) for k, v in raw.get("targets", {}).items()})


class NginxGateway:
    """A kongstack-owned nginx on loopback ports, configured from the desired state."""

    def __init__(self, *, prefix: Path, port: int, status_port: int, host: str = "127.0.0.1",
                 upstream: str = "stock-api-upstream", binary: str = "nginx",
                 timeout: float = 15.0) -> None:
        self.prefix = prefix
        self.upstream = upstream
        self.listen = Listen(host=host, port=port, status_port=status_port)
        self.server = NginxServer(prefix=prefix, listen=self.listen, binary=binary,
                                  timeout=timeout)

    def __repr__(self) -> str:
        return f"NginxGateway(prefix={str(self.prefix)!r}, listen={self.listen})"

    @property
    def url(self) -> str:
        return f"http://{self.listen.host}:{self.listen.port}"

    @property
    def status_url(self) -> str:
        return f"http://{self.listen.host}:{self.listen.status_port}/nginx_status"

    # -- state ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[_State]:
        self.prefix.mkdir(parents=True, exist_ok=True)
        with open(self.prefix / "state.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.prefix / "state.json"
            yield _State.from_json(path.read_text()) if path.exists() else _State()

    def _save(self, state: _State) -> None:
        write_atomic(self.prefix / "state.json", state.to_json(), mode=0o600)

    def _render(self, state: _State, generation: int) -> str:
        if state.site is None:
            raise GatewayError("nginx gateway has no configuration yet: apply the gateway "
                               "state first")
        return render(state.site, state.targets, prefix=self.prefix, listen=self.listen,
                      generation=generation)

    def _converge(self, state: _State) -> bool:
        """Make the running nginx serve ``state``; True if anything was written/reloaded."""
        running = self.server.pid() is not None
        current = self.server.conf.read_text() if self.server.conf.exists() else None
        if current == self._render(state, state.generation) and running and (
                self.server.served_generation() == state.generation):
            self._save(state)  # e.g. removing a drained target: same config, new state
            return False
        generation = state.generation + 1
        text = self._render(state, generation)
        self.server.prepare()
        # Written beside the live config and checked by ``nginx -t`` first; only a config
        # that passed is renamed over the one nginx serves (a rename: never half a file).
        candidate = self.prefix / "nginx.conf.new"
        write_atomic(candidate, text, mode=0o600)
        self.server.test(candidate)
        os.replace(candidate, self.server.conf)
        state.generation = generation
        self._save(state)
        if running:
            self.server.reload(generation)
        else:
            self.server.start(generation)
        return True

    # -- Gateway protocol -----------------------------------------------------------------

    def apply(self, desired: Any, *, dry_run: bool = False) -> ApplyResult:
        if not isinstance(desired, GatewayState):
            raise TypeError("NginxGateway.apply expects a tasks.gateway.kong.model.GatewayState")
        site = site_from_state(desired, upstream=self.upstream)
        with self._locked() as state:
            ops: list[Operation] = []
            old = state.site.public_view() if state.site else {}
            for key, value in site.public_view().items():
                if old.get(key) != value or (key == "consumers" and state.site is not None
                                             and state.site.consumers != site.consumers):
                    ops.append(Operation("update" if state.site else "create", "setting", key,
                                         {key: value}))
            targets = dict(state.targets)
            if desired.targets is not None:
                wanted = {t.target: t.weight for t in desired.targets
                          if t.upstream == self.upstream}
                for addr in sorted(set(targets) - set(wanted)):
                    ops.append(Operation("delete", "target", addr))
                for addr, weight in sorted(wanted.items()):
                    if targets.get(addr) != weight:
                        action = "update" if addr in targets else "create"
                        ops.append(Operation(action, "target", addr, {"weight": weight}))
                targets = wanted
            if self.server.pid() is None:
                ops.append(Operation("create", "process", "nginx",
                                     {"listen": f"{self.listen.host}:{self.listen.port}"}))
            for op in ops:  # the plan; setting bodies never hold keys (public_view)
                log.info("%s%s", "[dry run] " if dry_run else "", op.describe())
            if dry_run or not ops:
                return ApplyResult(operations=ops, dry_run=dry_run, reads=1)
            state.site, state.targets = site, targets
            wrote = self._converge(state)
            return ApplyResult(operations=ops, dry_run=False, reads=1, writes=int(wrote))

    @staticmethod
    def _probe(client: httpx.Client, address: str) -> TargetHealth:
        # nginx OSS has no active checks: probe /health like Kong's active checker would.
        try:
            response = client.get(f"http://{address}/health")
        except httpx.HTTPError:
            return TargetHealth.UNHEALTHY
        return TargetHealth.HEALTHY if response.status_code < 400 else TargetHealth.UNHEALTHY

    def list_targets(self) -> list[Target]:
        with self._locked() as state:
            targets = dict(state.targets)
        with httpx.Client(timeout=1.0) as client:
            return [Target(address=addr, weight=weight, health=TargetHealth.DRAINING
                           if weight == 0 else self._probe(client, addr))
                    for addr, weight in sorted(targets.items())]

    def _set_weight(self, address: str, weight: int | None) -> None:
        with self._locked() as state:
            if weight is None and address not in state.targets:
                return  # already absent: done (even on a gateway never configured)
            if weight is None:
                state.targets.pop(address, None)
            else:
                state.targets[address] = weight
            self._converge(state)
        # The gateway step, visible in the run logs (tasks.runlog.forward_project_logs).
        log.info("upstream %s: %s", self.upstream, f"target {address} removed" if weight is None
                 else f"target {address} added (weight {weight})")

    def add_target(self, address: str, weight: int = 100) -> None:
        if not 1 <= weight <= 1000:
            raise GatewayError(f"target {address}: nginx weight must be 1..1000, got {weight}")
        self._set_weight(address, weight)

    def drain_target(self, address: str) -> None:
        with self._locked() as state:
            if address not in state.targets:
                return  # not registered: nothing can reach it
            state.targets[address] = 0
            self._converge(state)
        log.info("upstream %s: target %s draining (weight 0)", self.upstream, address)

    def remove_target(self, address: str) -> None:
        self._set_weight(address, None)

    def stop(self) -> bool:
        """Stop this nginx gracefully (in-flight requests finish)."""
        return self.server.stop()

    def close(self) -> None:
        """Nothing to release: nginx keeps serving after the caller is done."""

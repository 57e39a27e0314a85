"""nginx with Lua behind the ``Gateway`` protocol: the local default gateway.

Like Kong, it keeps two kinds of state apart:

- **configuration** (routes, keys, groups, limits, health check settings: ``NginxSite``):
  rendered into nginx.conf and a site file, checked with ``nginx -t`` and applied by a
  graceful reload, verified; an unchanged render makes no write and no reload;
- **targets** (address → weight): kept at run time in a shared dictionary that the Lua
  balancer reads on every request, changed through the loopback admin endpoint
  (``PUT /kongstack/targets``): add, drain (weight 0: new requests go elsewhere, open ones
  finish) and remove take effect at the next request, with no reload and no worker restart.

Both live in ``<prefix>/state.json`` under an exclusive file lock, so every operation is
idempotent across processes (the CLI, deploy-stack and every autoscale tick); the targets
are also written to ``targets.json``, which a (re)started nginx loads before serving.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from kongstack.core.errors import GatewayError
from kongstack.core.files import write_atomic
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.nginx.render import LUA_SOURCE, Listen, render
from tasks.gateway.nginx.server import NginxServer
from tasks.gateway.nginx.site import NginxSite, site_from_state
from tasks.gateway.protocol import ApplyResult, Operation, Target, TargetHealth

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")  # what the Lua balancer accepts
_HEALTH = {"HEALTHY": TargetHealth.HEALTHY, "UNHEALTHY": TargetHealth.UNHEALTHY,
           "HEALTHCHECKS_OFF": TargetHealth.HEALTHCHECKS_OFF}


@dataclass
class _State:
    generation: int = 0
    site: NginxSite | None = None
    targets: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        site = json.loads(self.site.lua_document()) if self.site is not None else None
        return json.dumps({"generation": self.generation, "site": site,
                           "targets": self.targets}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> _State:
        raw = json.loads(text)
        return cls(generation=int(raw.get("generation", 0)),
                   site=_stored_site(raw.get("site")),
                   targets={str(k): int(v) for k, v in raw.get("targets", {}).items()})


def _stored_site(site: Any) -> NginxSite | None:
    """The stored configuration, or None when it was written by an older kongstack.

    The site is derived from the stack file and the Secret blocks and is applied again on
    every ``up``/deploy, so an unreadable one is dropped (with a warning) rather than
    blocking the gateway; the targets, which only the running pool knows, are kept.
    """
    if site is None:
        return None
    try:
        site["consumers"] = {u: {**c, "key": SecretStr(c["key"])}
                             for u, c in site["consumers"].items()}
        return NginxSite.model_validate(site)
    except (KeyError, TypeError, AttributeError, ValidationError) as exc:
        log.warning("nginx gateway: the stored configuration is from an older kongstack "
                    "and is dropped; it is rebuilt from the stack file on the next apply "
                    "(%s)", type(exc).__name__)
        return None


class NginxGateway:
    """A kongstack-owned nginx (with Lua) on loopback ports, configured from the desired
    state."""

    def __init__(self, *, prefix: Path, port: int, status_port: int, host: str = "127.0.0.1",
                 upstream: str = "stock-api-upstream", binary: str = "nginx",
                 timeout: float = 15.0) -> None:
        self.prefix = prefix
        self.upstream = upstream
        self.listen = Listen(host=host, port=port, status_port=status_port)
        self.server = NginxServer(prefix=prefix, listen=self.listen, binary=binary,
                                  timeout=timeout)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"NginxGateway(prefix={str(self.prefix)!r}, listen={self.listen})"

    @property
    def url(self) -> str:
        return f"http://{self.listen.host}:{self.listen.port}"

    @property
    def status_url(self) -> str:
        return f"http://{self.listen.admin_host}:{self.listen.status_port}/nginx_status"

    @property
    def admin_url(self) -> str:
        """The runtime target API (loopback only)."""
        return f"http://{self.listen.admin_host}:{self.listen.status_port}/kongstack/targets"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

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
        write_atomic(self.prefix / "targets.json",
                     json.dumps({"targets": state.targets}, sort_keys=True), mode=0o600)

    def _site_file(self, generation: int) -> Path:
        return self.prefix / f"site-{generation}.json"

    def _render(self, state: _State, generation: int) -> str:
        if state.site is None:
            raise GatewayError("nginx gateway has no configuration yet: apply the gateway "
                               "state first")
        return render(state.site, prefix=self.prefix, listen=self.listen,
                      generation=generation, site_file=self._site_file(generation),
                      targets_file=self.prefix / "targets.json")

    def _install_lua(self) -> None:
        """Copy the Lua modules into the prefix: the running nginx reads its own copy, so
        an edit in the source tree changes nothing until the next (verified) reload."""
        target = self.prefix / "lua"
        for source in LUA_SOURCE.rglob("*.lua"):
            dest = target / source.relative_to(LUA_SOURCE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.parent.chmod(0o755)
            if not dest.exists() or dest.read_bytes() != source.read_bytes():
                shutil.copyfile(source, dest)
                dest.chmod(0o644)

    def _converge(self, state: _State) -> bool:
        """Make the running nginx serve ``state``'s configuration; True if anything was
        written or reloaded. Targets ride along in targets.json (read at load)."""
        running = self.server.pid() is not None
        current = self.server.conf.read_text() if self.server.conf.exists() else None
        if current == self._render(state, state.generation) and running and (
                self.server.served_generation() == state.generation):
            return False
        generation = state.generation + 1
        self.server.prepare()
        self._install_lua()
        assert state.site is not None  # _render above raised otherwise
        write_atomic(self._site_file(generation), state.site.lua_document(), mode=0o600)
        self._save(state)  # targets.json: what the new configuration loads
        text = self._render(state, generation)
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
        for old in self.prefix.glob("site-*.json"):
            if old != self._site_file(generation):
                old.unlink(missing_ok=True)
        return True

    def _admin(self, method: str, path: str = "",
               body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """One call to the runtime target API, retried briefly on connection errors. The
        stdlib client: a target change is a ~1 ms round trip (an httpx client costs ~40 ms
        to build)."""
        def call() -> tuple[int, dict[str, Any]]:
            conn = http.client.HTTPConnection(self.listen.admin_host, self.listen.status_port,
                                              timeout=5.0)
            try:
                payload = json.dumps(body) if body is not None else None
                headers = {"Content-Type": "application/json"} if payload else {}
                conn.request(method, f"/kongstack/targets{path}", body=payload,
                             headers=headers)
                response = conn.getresponse()
                raw = response.read()
            finally:
                conn.close()
            data = json.loads(raw) if raw else {}
            if response.status >= 400:
                raise GatewayError(f"nginx target API {method} {path or '/'} -> "
                                   f"{response.status}: {data.get('message', raw[:200])}")
            return response.status, data

        retrying = Retrying(stop=stop_after_attempt(4), reraise=True,
                            wait=wait_exponential(multiplier=0.05, max=1.0),
                            retry=retry_if_exception_type(OSError))
        try:
            return retrying(call)
        except OSError as exc:
            raise GatewayError(f"nginx target API at {self.admin_url} unreachable: "
                               f"{type(exc).__name__}") from exc

    def _sync_targets(self, state: _State) -> None:
        """Put the targets into the running balancer (no reload), then persist them; start
        nginx with the persisted file if it is not running."""
        if self.server.pid() is None or self.server.served_generation() != state.generation:
            self._save(state)
            self._converge(state)  # not running (or not ours yet): start it with the file
            return
        # In effect first, durable next: the balancer call is a ~1 ms loopback round trip,
        # while the two fsync'd writes of _save took 8 ms median and up to 113 ms on the
        # shared disk (benchmarks/gateway.py), which every change used to wait for. A failed
        # call persists nothing; a failed save leaves the balancer ahead of the file until the
        # caller's retry (the same call, idempotent) or the next change writes it.
        _, answer = self._admin("PUT", body={"targets": state.targets})
        served = {t["target"]: t["weight"] for t in answer.get("data", [])}
        if served != state.targets:
            raise GatewayError(f"nginx target API holds {served}, expected {state.targets}")
        self._save(state)

    # -- Gateway protocol -----------------------------------------------------------------

    def apply(self, desired: Any, *, dry_run: bool = False) -> ApplyResult:
        if not isinstance(desired, GatewayState):
            raise TypeError("NginxGateway.apply expects a tasks.gateway.kong.model.GatewayState")
        site = site_from_state(desired, upstream=self.upstream)
        with self._locked() as state:
            ops: list[Operation] = []
            old = state.site.public_view() if state.site else {}
            def secrets(s: NginxSite) -> dict[str, dict[str, str]]:
                """What public_view leaves out: the keys and the added headers' values."""
                return {"consumers": {u: c.key.get_secret_value()
                                      for u, c in s.consumers.items()},
                        "add_headers": {h: v.get_secret_value()
                                        for h, v in s.add_headers.items()}}

            now = secrets(site)
            secret_changed = {k for k, v in secrets(state.site).items() if now[k] != v} \
                if state.site is not None else set()
            for key, value in site.public_view().items():
                if old.get(key) != value or key in secret_changed:
                    ops.append(Operation("update" if state.site else "create", "setting", key,
                                         {key: value}))
            targets = dict(state.targets)
            target_ops: list[Operation] = []
            if desired.targets is not None:
                wanted = {t.target: t.weight for t in desired.targets
                          if t.upstream == self.upstream}
                bad = sorted(a for a in wanted if not _ADDRESS.match(a))
                if bad:
                    raise GatewayError(f"targets: {bad[0]!r} is not host:port")
                for addr in sorted(set(targets) - set(wanted)):
                    target_ops.append(Operation("delete", "target", addr))
                for addr, weight in sorted(wanted.items()):
                    if targets.get(addr) != weight:
                        action = "update" if addr in targets else "create"
                        target_ops.append(Operation(action, "target", addr, {"weight": weight}))
                targets = wanted
            if self.server.pid() is None:
                ops.append(Operation("create", "process", "nginx",
                                     {"listen": f"{self.listen.host}:{self.listen.port}"}))
            ops += target_ops
            for op in ops:  # the plan; setting bodies never hold keys (public_view)
                log.info("%s%s", "[dry run] " if dry_run else "", op.describe())
            if dry_run or not ops:
                return ApplyResult(operations=ops, dry_run=dry_run, reads=1)
            reconfigure = any(op.kind != "target" for op in ops)
            state.site, state.targets = site, targets
            if reconfigure:
                wrote = self._converge(state)
            else:
                self._sync_targets(state)
                wrote = True
            return ApplyResult(operations=ops, dry_run=False, reads=1, writes=int(wrote))

    def list_targets(self) -> list[Target]:
        """Targets with the balancer's health (active and passive checks, as Kong's
        ``/upstreams/{u}/health``); UNKNOWN health when nginx is not running."""
        with self._locked() as state:
            targets = dict(state.targets)
            running = self.server.pid() is not None
        if not running:
            return [Target(address=a, weight=w, health=TargetHealth.DRAINING if w == 0
                           else TargetHealth.UNKNOWN) for a, w in sorted(targets.items())]
        out = []
        for t in self._admin("GET")[1].get("data", []):
            weight = int(t["weight"])
            health = TargetHealth.DRAINING if weight == 0 else _HEALTH.get(
                str(t.get("health")), TargetHealth.UNKNOWN)
            out.append(Target(address=str(t["target"]), weight=weight, health=health))
        return sorted(out, key=lambda t: t.address)

    def _set_weight(self, address: str, weight: int | None) -> None:
        with self._locked() as state:
            if address not in state.targets and weight in (None, 0):
                return  # removing or draining what is not registered: nothing can reach it
            if state.targets.get(address, -1) == weight and self.server.pid() is not None:
                return  # already so: no call at all
            if weight is None:
                state.targets.pop(address, None)
            else:
                state.targets[address] = weight
            if state.site is None:
                raise GatewayError("nginx gateway has no configuration yet: apply the "
                                   "gateway state first")
            self._sync_targets(state)
        # The gateway step, visible in the run logs (tasks.runlog.forward_project_logs).
        log.info("upstream %s: %s", self.upstream, f"target {address} removed" if weight is None
                 else f"target {address} added (weight {weight})")

    def add_target(self, address: str, weight: int = 100) -> None:
        if not _ADDRESS.match(address):
            raise GatewayError(f"target {address!r}: expected host:port")
        if not 1 <= weight <= 65535:
            raise GatewayError(f"target {address}: weight must be 1..65535, got {weight}")
        self._set_weight(address, weight)

    def drain_target(self, address: str) -> None:
        """Weight 0: the balancer picks it no more from the next request on; requests it
        is serving finish (nothing reloads, no connection is closed)."""
        self._set_weight(address, 0)
        log.info("upstream %s: target %s draining (weight 0)", self.upstream, address)

    def remove_target(self, address: str) -> None:
        self._set_weight(address, None)

    def set_target_health(self, address: str, *, healthy: bool) -> None:
        """Manual health override, as Kong's ``PUT …/targets/{t}/healthy|unhealthy``."""
        self._admin("PUT", f"/{address}/{'healthy' if healthy else 'unhealthy'}")

    def stop(self) -> bool:
        """Stop this nginx gracefully (in-flight requests finish)."""
        return self.server.stop()

    def close(self) -> None:
        """Nothing to release: nginx keeps serving after the caller is done."""

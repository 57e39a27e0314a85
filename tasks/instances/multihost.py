"""MultiHostDriver: one pool over several Docker-API engines (a local socket, ``ssh://`` hosts).

Each host is driven by a ``DockerDriver`` on its own engine (ssh:// engines through the bounded
client of tasks/instances/ssh_client.py, so a silent host fails a call in ``timeout_seconds``
instead of hanging the tick). On top of them:

    list()   every host asked in parallel; each instance labelled with its host. A host that
             does not answer is marked down: the instances last seen on it are reported
             EXITED with the reason (lost), so the tick's repair replaces them on the live
             hosts and removes their gateway targets. When it answers again, the containers
             given up meanwhile are found by id and owner label and removed.
    start()  on the live host with the most free capacity (autoscaler/placement.py); a host
             whose engine refuses (lacks the image, say) is skipped for the tick and the next
             host tried; ``PoolFullError`` when every live host is full.
    stop()   on the instance's host; on a down host the container is recorded as a leftover.

``status()`` gives one line per host (up/down/unusable, used/capacity, reason) for the CLI and
the tick's record.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound

from autoscaler.placement import HostLoad, place
from kongstack.core.errors import ConfigError, InstallError, InstanceError
from tasks.instances.base import Instance, InstanceState, InstanceStats
from tasks.instances.common import DockerSettings
from tasks.instances.docker import DockerDriver
from tasks.instances.hosts import (
    HOST_LABEL,
    HostConfig,
    HostRecord,
    HostStateStore,
    KnownInstance,
)

try:  # paramiko is the [azure] extra's; without it there are no ssh:// engines to fail
    from paramiko import SSHException
except ImportError:  # pragma: no cover - a base install
    class SSHException(Exception):  # type: ignore[no-redef]  # noqa: N818
        """Stands in for paramiko's, which nothing can raise without paramiko."""

log = logging.getLogger("kongstack.instances")

UNREACHABLE: tuple[type[BaseException], ...] = (
    InstanceError, DockerException, requests.exceptions.RequestException,
    SSHException, OSError, socket.timeout, EOFError,
)
"""What a host that stopped answering (link down, engine dead, wrong key) raises."""

COUNTED = (InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY)
"""States that take a place on a host (an exited container holds nothing)."""


class PoolFullError(InstanceError):
    """Every live host is at capacity: the pool needs another host."""


@dataclass(frozen=True)
class HostStatus:
    name: str
    state: str  # "up", "down", "unusable", "unknown"
    used: int
    capacity: int
    reason: str | None = None
    since: str | None = None
    added: bool = False
    """Made by the autoscaler (pool.growth)."""

    def line(self) -> str:
        added = " (added)" if self.added else ""
        text = f"{self.name}{added}: {self.state} {self.used}/{self.capacity}"
        if self.since:
            text += f" since {self.since}"
        return text + (f" ({self.reason})" if self.reason else "")


ClientFactory = Callable[[HostConfig], docker.DockerClient]


def connect(host: HostConfig) -> docker.DockerClient:
    """A client for ``host`` whose every call is bounded by the host's timeout."""
    if host.remote:
        from tasks.instances.ssh_client import ssh_docker_client  # the [azure] extra (paramiko)

        key_text = None
        if host.ssh_key_secret is not None:  # read at connect: never kept in config or logs
            from tasks.providers.secrets import read_secret

            try:
                key_text = read_secret(host.ssh_key_secret, f"host {host.name}: ssh_key_secret")
            except ConfigError as exc:  # this host is down for it; the others go on
                raise InstanceError(str(exc)) from None
        try:
            return ssh_docker_client(host.docker_host, key_file=host.ssh_key_file,
                                     private_key=key_text, known_hosts=host.known_hosts_file,
                                     timeout=host.timeout_seconds)
        except InstallError as exc:  # a malformed key (its text is never shown)
            raise InstanceError(f"host {host.name}: ssh_key_secret: {exc}") from None
    return docker.DockerClient(base_url=host.docker_host, timeout=int(host.timeout_seconds + 0.999))


class MultiHostDriver:
    """InstanceDriver over several engines; see the module docstring."""

    def __init__(self, hosts: builtins.list[HostConfig], base: DockerSettings,
                 store: HostStateStore, *, instance_cpus: float | None = None,
                 client_factory: ClientFactory = connect) -> None:
        if not hosts:
            raise ValueError("a multi-host pool needs at least one host")
        self.hosts = {h.name: h for h in hosts}
        self.base = base
        self.store = store
        self.instance_cpus = instance_cpus
        self._client_factory = client_factory
        self._drivers: dict[str, DockerDriver] = {}
        self._lock = threading.Lock()
        self._seen: dict[str, builtins.list[Instance]] | None = None  # this tick's listing per host
        self._down: dict[str, str] = {}  # host -> why (this tick)
        self._unusable: dict[str, str] = {}  # host -> why it cannot start instances
        self._host_of: dict[str, str] = {}  # instance id -> host

    # -- per-host engines ------------------------------------------------------------------

    def _settings(self, host: HostConfig) -> DockerSettings:
        changes: dict[str, object] = {"base_url": host.docker_host,
                                      "timeout": host.timeout_seconds,
                                      "advertise_host": host.advertise_host}
        if host.remote:
            changes.update(host="0.0.0.0", data_dir=None)  # the gateway comes from outside
        return self.base.model_copy(update=changes)

    def driver(self, name: str) -> DockerDriver:
        """The host's DockerDriver (connects on first use; a failed connect is retried on
        the next call)."""
        with self._lock:
            existing = self._drivers.get(name)
        if existing is not None:
            return existing
        host = self.hosts[name]
        made = DockerDriver(self._settings(host), client=self._client_factory(host))
        with self._lock:
            return self._drivers.setdefault(name, made)

    def _forget(self, name: str) -> None:
        with self._lock:
            drv = self._drivers.pop(name, None)
        if drv is not None and drv._client is not None:
            try:
                drv._client.close()
            except Exception as exc:  # closing a dead transport may fail: nothing to undo
                log.debug("closing the client of %s: %s", name, exc)

    def close(self) -> None:
        for name in list(self._drivers):
            self._forget(name)

    # -- InstanceDriver --------------------------------------------------------------------

    def list(self) -> builtins.list[Instance]:
        records = self.store.load()
        names = sorted(self.hosts)
        with ThreadPoolExecutor(max_workers=min(len(names), 16),
                                thread_name_prefix="kongstack-hosts") as pool:
            answers = dict(zip(names, pool.map(self._list_host, names), strict=True))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        seen: dict[str, builtins.list[Instance]] = {}
        result: builtins.list[Instance] = []
        for name in names:
            rec = records.setdefault(name, HostRecord())
            found, error = answers[name]
            if error is not None:
                self._down[name] = error
                if rec.down_since is None:
                    log.warning("host %s does not answer: %s; its %d instance(s) count as lost",
                                name, error, len(rec.instances))
                    rec.down_since = now
                rec.reason = error
                lost = [k.lost(name, f"host {name} down: {error}") for k in rec.instances
                        if k.id not in rec.leftovers]
                seen[name] = []
                result.extend(lost)
                for inst in lost:
                    self._host_of[inst.id] = name
                continue
            self._down.pop(name, None)
            if rec.down_since is not None or rec.leftovers:
                found = self._remove_leftovers(name, rec, found)
            rec.down_since, rec.reason, rec.leftovers = None, None, []
            rec.instances = [KnownInstance.of(i) for i in found]
            labelled = [self._label(i, name) for i in found]
            seen[name] = labelled
            result.extend(labelled)
        self.store.save(records)
        self._seen = seen
        return sorted(result, key=lambda i: (i.labels.get(HOST_LABEL, ""), i.name))

    def start(self, *, env: dict[str, str] | None = None) -> Instance:
        if self._seen is None:
            self.list()
        tried: builtins.list[str] = []
        while True:
            loads = self.loads()
            placement = place(loads, 1)
            if placement.unplaced:
                summary = ", ".join(s.line() for s in self.status())
                raise PoolFullError(f"no host can take another instance: {summary}"
                                    + (f"; tried {', '.join(tried)}" if tried else ""))
            name = placement.hosts[0]
            try:
                inst = self.driver(name).start(env=env)
            except UNREACHABLE as exc:
                why = _short(exc)
                if _image_missing(exc):
                    self._unusable[name] = f"engine lacks image {self.base.image}"
                    log.error("host %s cannot start instances: %s", name, why)
                else:
                    self._mark_down(name, why)
                tried.append(f"{name} ({why})")
                continue
            labelled = self._label(inst, name)
            assert self._seen is not None
            self._seen.setdefault(name, []).append(labelled)
            self._remember(name, labelled)
            log.info("placed %s on host %s", inst.name, name)
            return labelled

    def wait_ready(self, instance: Instance, timeout: float = 30.0) -> Instance:
        name = self._host(instance.id, instance)
        ready = self.driver(name).wait_ready(instance, timeout=timeout)
        return self._label(ready, name)

    def stop(self, instance_id: str, grace: float = 10.0) -> None:
        try:
            name = self._host(instance_id)
        except InstanceError:
            return  # on no host (any more): missing counts as done
        if name in self._down:
            self._give_up(name, instance_id)
            return
        try:
            self.driver(name).stop(instance_id, grace=grace)
        except UNREACHABLE as exc:
            self._mark_down(name, _short(exc))
            self._give_up(name, instance_id)
            return
        self._drop(name, instance_id)

    def stats(self, instance_id: str) -> InstanceStats:
        name = self._host(instance_id)
        if name in self._down:
            raise InstanceError(f"host {name} is down: {self._down[name]}")
        return self.driver(name).stats(instance_id)

    def logs(self, instance_id: str, tail: int = 100) -> str:
        name = self._host(instance_id)
        if name in self._down:
            raise InstanceError(f"host {name} is down: {self._down[name]}")
        return self.driver(name).logs(instance_id, tail=tail)

    # -- health and placement --------------------------------------------------------------

    def loads(self) -> builtins.list[HostLoad]:
        if self._seen is None:
            self.list()
        assert self._seen is not None
        return [HostLoad(name=name, capacity=h.effective_capacity(self.instance_cpus),
                         used=sum(1 for i in self._seen.get(name, []) if i.state in COUNTED),
                         usable=name not in self._down and name not in self._unusable)
                for name, h in sorted(self.hosts.items())]

    def status(self) -> builtins.list[HostStatus]:
        """One entry per host: up, down (since, why) or unusable (why); used/capacity."""
        records = self.store.load()
        out = []
        for load in (self.loads() if self._seen is not None else []):
            rec = records.get(load.name, HostRecord())
            added = self.hosts[load.name].added
            if load.name in self._down:
                out.append(HostStatus(load.name, "down", len(rec.instances), load.capacity,
                                      self._down[load.name], rec.down_since, added))
            elif load.name in self._unusable:
                out.append(HostStatus(load.name, "unusable", load.used, load.capacity,
                                      self._unusable[load.name], added=added))
            else:
                out.append(HostStatus(load.name, "up", load.used, load.capacity, added=added))
        return out

    def check_image(self) -> None:
        """Mark every live host whose engine lacks the image unusable (a status line)."""
        for name in sorted(self.hosts):
            if name in self._down:
                continue
            try:
                self.driver(name).client.images.get(self.base.image)
            except ImageNotFound:
                self._unusable[name] = f"engine lacks image {self.base.image}"
            except UNREACHABLE as exc:
                self._mark_down(name, _short(exc))

    # -- helpers ---------------------------------------------------------------------------

    def _list_host(self, name: str) -> tuple[builtins.list[Instance], str | None]:
        try:
            drv = self.driver(name)
            drv.client.ping()  # one bounded call, no retries: a silent host fails fast
            return drv.list(), None
        except UNREACHABLE as exc:
            self._forget(name)  # a cut transport is not reused; the next tick reconnects
            return [], _short(exc)

    def _remove_leftovers(self, name: str, rec: HostRecord,
                          found: builtins.list[Instance]) -> builtins.list[Instance]:
        """The host answers again: remove what was given up while it was down (found by id
        among the containers carrying our owner label)."""
        gone = set(rec.leftovers)
        kept = []
        for inst in found:
            if inst.id in gone:
                self.driver(name).stop(inst.id, grace=1.0)
                log.info("host %s is back: removed leftover %s", name, inst.name)
            else:
                kept.append(inst)
        return kept

    def _mark_down(self, name: str, why: str) -> None:
        log.warning("host %s marked down: %s", name, why)
        self._down[name] = why
        self._forget(name)
        records = self.store.load()
        rec = records.setdefault(name, HostRecord())
        if rec.down_since is None:
            rec.down_since = datetime.now(UTC).isoformat(timespec="seconds")
        rec.reason = why
        self.store.save(records)

    def _give_up(self, name: str, instance_id: str) -> None:
        records = self.store.load()
        rec = records.setdefault(name, HostRecord())
        if instance_id not in rec.leftovers:
            rec.leftovers.append(instance_id)
        self.store.save(records)
        log.info("instance %s on down host %s given up; removed when the host is back",
                 instance_id[:12], name)

    def _remember(self, name: str, inst: Instance) -> None:
        records = self.store.load()
        rec = records.setdefault(name, HostRecord())
        rec.instances = [k for k in rec.instances if k.id != inst.id] + [KnownInstance.of(inst)]
        self.store.save(records)

    def _drop(self, name: str, instance_id: str) -> None:
        if self._seen is not None:
            self._seen[name] = [i for i in self._seen.get(name, []) if i.id != instance_id]
        records = self.store.load()
        rec = records.get(name)
        if rec is not None:
            rec.instances = [k for k in rec.instances if k.id != instance_id]
            self.store.save(records)

    def _label(self, inst: Instance, name: str) -> Instance:
        self._host_of[inst.id] = name
        return dataclasses.replace(inst, labels={**inst.labels, HOST_LABEL: name})

    def _host(self, instance_id: str, instance: Instance | None = None) -> str:
        if instance is not None and instance.labels.get(HOST_LABEL) in self.hosts:
            return instance.labels[HOST_LABEL]
        if instance_id not in self._host_of:
            self.list()
        try:
            return self._host_of[instance_id]
        except KeyError:
            raise InstanceError(f"no host runs instance {instance_id}") from None


def _image_missing(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ImageNotFound):
            return True
        if isinstance(cause, NotFound) and "image" in str(cause).lower():
            return True
        cause = cause.__cause__
    return False


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]

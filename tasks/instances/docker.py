"""DockerDriver: backend instances as containers through the Docker Engine API (docker SDK).

The engine is a local socket (here Podman's Docker-compatible socket) or a remote VM's engine
over ``ssh://user@host``. Containers use host networking and listen on their own free port
(env ``PORT``); they carry the owner labels and are named ``kongstack-api-<port>``. Every
engine call has a timeout and is retried with backoff on transient faults (connection
errors, 5xx), never on 4xx.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.types import Mount
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from kongstack.core import OWNER_LABEL
from kongstack.core.errors import InstanceError
from tasks.instances.base import Instance, InstanceState, InstanceStats
from tasks.instances.common import (
    PORT_LABEL,
    ROLE,
    ROLE_LABEL,
    DockerSettings,
    instance_name,
    pick_port,
    poll_ready,
)
from tasks.instances.engine_http import instance_from_inspect

log = logging.getLogger("kongstack.instances")
T = TypeVar("T")

APP_UID = 10001  # the image's unprivileged user (deployments/Containerfile ARG APP_UID)
DATA_MOUNT = "/data"
STATS_RESAMPLE_S = 0.5  # second stats sample when the engine gives no previous one


def transient(exc: BaseException) -> bool:
    """Worth retrying: the engine was unreachable or failed on its side (5xx)."""
    if isinstance(exc, APIError):
        code = exc.status_code
        return code is not None and code >= 500
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


class DockerDriver:
    """InstanceDriver over the Docker Engine API."""

    def __init__(
        self, settings: DockerSettings, *, client: docker.DockerClient | None = None
    ) -> None:
        self.settings = settings
        self._client = client  # connected lazily: the engine may come up after we are built
        url = urlparse(settings.base_url)
        self.remote = url.scheme == "ssh"
        self.address_host = settings.advertise_host or (
            url.hostname if self.remote and url.hostname else settings.host
        )
        self.limits_note: str | None = None  # why a requested limit was not applied
        self._unsupported: dict[str, str] | None = None  # limit kwarg -> why, once probed

    # -- engine calls -------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._call(self._connect)
        return self._client

    def _connect(self) -> docker.DockerClient:
        try:
            return docker.DockerClient(
                base_url=self.settings.base_url, timeout=int(math.ceil(self.settings.timeout))
            )
        except DockerException as exc:
            # The SDK asks the engine its API version on construction: unreachable = transient.
            raise requests.exceptions.ConnectionError(
                f"cannot reach the engine at {self.settings.base_url}: {exc}"
            ) from exc

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        retrying = Retrying(
            retry=retry_if_exception(transient),
            stop=stop_after_attempt(4),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )
        try:
            return retrying(fn, *args, **kwargs)
        except NotFound:
            raise
        except (DockerException, requests.exceptions.RequestException) as exc:
            raise InstanceError(f"engine call {getattr(fn, '__name__', fn)} failed: {exc}") from exc

    def _get(self, instance_id: str) -> Container | None:
        try:
            return self._call(self.client.containers.get, instance_id)
        except NotFound:
            return None

    # -- InstanceDriver -----------------------------------------------------------------

    def list(self) -> list[Instance]:
        filters = {"label": [f"{OWNER_LABEL}={self.settings.stack}", f"{ROLE_LABEL}={ROLE}"]}
        containers = self._call(self.client.containers.list, all=True, filters=filters)
        return sorted((self._instance(c) for c in containers), key=lambda i: i.name)

    def start(self, *, env: dict[str, str] | None = None) -> Instance:
        taken = {int(c.labels[PORT_LABEL]) for c in self._owned_any_stack()
                 if PORT_LABEL in c.labels}
        kwargs = self._limits()
        volumes = self._data_mount()
        for _ in range(5):
            port = pick_port(self.address_host, self.settings.base_port, taken)
            name = instance_name(port)
            environment = self.settings.instance_env(
                port=port, name=name, data_dir=DATA_MOUNT
            ) | (env or {})
            try:
                container = self._call(
                    self.client.containers.create,
                    self.settings.image,
                    name=name,
                    labels=self.settings.owner_labels(port),
                    environment=environment,
                    network_mode="host",
                    mounts=volumes,
                    stop_signal="SIGTERM",
                    detach=True,
                    **kwargs,
                )
            except InstanceError as exc:
                # 409: the name exists (another stack, or our create that timed out but
                # landed). Adopt it if it is ours and never started; else try another port.
                container = self._adopt(name, port, exc)
                if container is None:
                    taken.add(port)
                    continue
            try:
                self._call(container.start)
            except InstanceError:
                # A container that never ran would linger as "created": remove it, then fail.
                with contextlib.suppress(InstanceError, NotFound):
                    self._call(container.remove, force=True)
                raise
            container.reload()
            log.info("started container %s (%s) on port %d", name, container.short_id, port)
            return self._instance(container, state=InstanceState.STARTING)
        raise InstanceError("could not create a container: every port tried was in conflict")

    def wait_ready(self, instance: Instance, timeout: float = 30.0) -> Instance:
        def gone() -> str | None:
            container = self._get(instance.id)
            if container is None:
                return "container removed"
            status = container.status
            if status in ("exited", "dead", "stopped"):
                code = container.attrs.get("State", {}).get("ExitCode")
                tail = self.logs(instance.id, 20)
                return f"status {status} (exit code {code}); last log lines:\n{tail}"
            return None

        poll_ready(instance.address, timeout=timeout, probe_timeout=self.settings.probe_timeout,
                   alive=gone, what=f"container {instance.name}")
        return dataclasses.replace(instance, state=InstanceState.READY)

    def stop(self, instance_id: str, grace: float = 10.0) -> None:
        container = self._get(instance_id)
        if container is None:
            return
        try:
            if container.status == "running":
                # The engine sends the image's STOPSIGNAL (SIGTERM), waits `grace`, then SIGKILL.
                self._call(container.stop, timeout=max(1, int(math.ceil(grace))))
            self._call(container.remove, force=True, v=False)
        except NotFound:
            return
        log.info("stopped and removed container %s", container.name)

    def stats(self, instance_id: str) -> InstanceStats:
        container = self._get(instance_id)
        if container is None:
            raise InstanceError(f"no container {instance_id}")
        if container.status != "running":
            return InstanceStats(instance_id=instance_id, cpu_percent=None, memory_percent=None)
        first = self._call(container.stats, stream=False)
        first_at = time.monotonic()
        cpu = cpu_percent(first)
        if cpu is None and "cpu_stats" in first:
            # Podman answers a one-shot request without precpu_stats: sample again ourselves
            # (a fixed sampling interval, not a readiness wait). Its system_cpu_usage is not
            # host CPU time x CPUs as Docker's is, so divide by the wall time we measured.
            time.sleep(STATS_RESAMPLE_S)
            second = self._call(container.stats, stream=False)
            cpu = cpu_percent_over(first, second, time.monotonic() - first_at)
            first = second
        used, mem_pct = memory_usage(first)
        return InstanceStats(instance_id=instance_id, cpu_percent=cpu,
                             memory_percent=mem_pct, memory_bytes=used)

    def logs(self, instance_id: str, tail: int = 100) -> str:
        container = self._get(instance_id)
        if container is None:
            raise InstanceError(f"no container {instance_id}")
        raw: bytes = self._call(container.logs, tail=tail, stdout=True, stderr=True)
        return raw.decode(errors="replace")

    # -- helpers ------------------------------------------------------------------------

    def _owned_any_stack(self) -> builtins.list[Container]:
        """Every kongstack API container (any stack): their ports are not free to reuse."""
        filters = {"label": [f"{ROLE_LABEL}={ROLE}"]}
        found: builtins.list[Container] = self._call(
            self.client.containers.list, all=True, filters=filters
        )
        return found

    def _adopt(self, name: str, port: int, cause: InstanceError) -> Container | None:
        if not isinstance(cause.__cause__, APIError) or cause.__cause__.status_code != 409:
            raise cause
        existing = self._get(name)
        if existing is None:
            return None
        labels = existing.labels
        if (labels.get(OWNER_LABEL) == self.settings.stack
                and labels.get(PORT_LABEL) == str(port) and existing.status == "created"):
            return existing
        return None

    def _instance(self, container: Container, state: InstanceState | None = None) -> Instance:
        # The inspect document the SDK holds, read as tasks/instances/engine_http.py reads it
        # for `kongstack status`: one reading of a container for both.
        return instance_from_inspect(container.attrs, self.address_host, self.settings, state)

    def _limits(self) -> dict[str, Any]:
        """nano_cpus / mem_limit that the engine can enforce; a missing capability is logged
        (and kept in ``limits_note``) instead of failing the start."""
        wanted: dict[str, Any] = {}
        if self.settings.cpus is not None:
            wanted["nano_cpus"] = int(self.settings.cpus * 1e9)
        if self.settings.memory is not None:
            wanted["mem_limit"] = self.settings.memory
        if wanted and self._unsupported is None:
            info = self._call(self.client.info)
            self._unsupported = {}
            if info.get("CpuCfsQuota") is False:
                self._unsupported["nano_cpus"] = "CPU (no CFS quota in the engine's cgroups)"
            if info.get("MemoryLimit") is False:
                self._unsupported["mem_limit"] = "memory (no memory cgroup controller)"
            dropped = [why for key, why in self._unsupported.items() if key in wanted]
            if dropped:
                self.limits_note = (f"engine at {self.settings.base_url} cannot enforce "
                                    f"{' and '.join(dropped)} limits; instances run without them")
                log.warning(self.limits_note)
        unsupported = self._unsupported or {}
        return {k: v for k, v in wanted.items() if k not in unsupported}

    def _data_mount(self) -> builtins.list[Mount]:
        data_dir = self.settings.data_dir
        if data_dir is not None:
            if not self.remote:
                _make_writable(Path(data_dir))
            return [Mount(target=DATA_MOUNT, source=str(data_dir), type="bind")]
        volume = self.settings.volume or f"{self.settings.stack}-stock-data"
        try:
            self._call(self.client.volumes.get, volume)
        except NotFound:
            self._call(self.client.volumes.create, name=volume,
                       labels={OWNER_LABEL: self.settings.stack})
        return [Mount(target=DATA_MOUNT, source=volume, type="volume")]


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """CPU% the way ``docker stats`` computes it (100 = one CPU busy); None without a base."""
    try:
        cpu, pre = stats["cpu_stats"], stats["precpu_stats"]
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
        online = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
    except (KeyError, TypeError):
        return None
    if system_delta <= 0 or cpu_delta < 0 or not pre["cpu_usage"]["total_usage"]:
        return None
    return float(cpu_delta / system_delta * online * 100.0)


def cpu_percent_over(first: dict[str, Any], second: dict[str, Any],
                     elapsed_s: float) -> float | None:
    """CPU% between two samples taken ``elapsed_s`` apart (100 = one CPU busy the whole time)."""
    try:
        used_ns = (second["cpu_stats"]["cpu_usage"]["total_usage"]
                   - first["cpu_stats"]["cpu_usage"]["total_usage"])
    except (KeyError, TypeError):
        return None
    if elapsed_s <= 0 or used_ns < 0:
        return None
    return float(used_ns / 1e9 / elapsed_s * 100.0)


def memory_usage(stats: dict[str, Any]) -> tuple[int | None, float | None]:
    """(bytes used without page cache, % of the limit), as ``docker stats`` shows them."""
    mem = stats.get("memory_stats") or {}
    usage, limit = mem.get("usage"), mem.get("limit")
    if not isinstance(usage, int):
        return None, None
    detail = mem.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", detail.get("cache", 0)))
    used = max(usage - int(cache or 0), 0)
    if not isinstance(limit, int) or limit <= 0:
        return used, None
    return used, used / limit * 100.0


def _make_writable(path: Path) -> None:
    """The image runs as APP_UID; hand it the bind-mounted store (files made by root too)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return  # cannot chown; the directory must already be writable by APP_UID
    for root, dirs, files in os.walk(path):
        for entry in [root, *(os.path.join(root, n) for n in dirs + files)]:
            if os.lstat(entry).st_uid != APP_UID:
                os.lchown(entry, APP_UID, APP_UID)

"""The backend pool: which instance driver and gateway reach it, and the clients of one tick.

Tasks receive a ``PoolConfig`` (plain data), never a live client. Inside ``pool_session``
(the autoscale flow opens one per tick) every task that asks ``pool_clients`` for the same pool
gets the same driver and gateway, built once on first use: an "auto" driver pings the engine
once per tick, not once per task. Outside a session (the CLI, tests) each call builds its own
clients and closes them afterwards.

No Prefect here (``kongstack status`` uses this module); the Prefect options of the tasks
that change the pool are in tasks/tick/task_options.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kongstack.core.settings import LocalSettings
from tasks.gateway.protocol import Gateway, Target
from tasks.instances.added import AddedHostStore, HostGrowthConfig
from tasks.instances.base import Instance, InstanceDriver, InstanceState
from tasks.instances.hosts import HostConfig, HostStateStore, check_unique
from tasks.tick.record import ActionRecord
from tasks.tick.scaling_log import Intent

if TYPE_CHECKING:
    from tasks.instances.factory import InstanceLister
    from tasks.instances.multihost import MultiHostDriver

ACTIVE = (InstanceState.STARTING, InstanceState.READY, InstanceState.DEGRADED)
"""Instance states that count toward the pool size (a degraded instance is alive: it stays)."""

class PoolConfig(BaseModel):
    """How the autoscaler reaches the pool: which driver and gateway, and the act timings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str = Field(default="kongstack", pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    driver: Literal["auto", "docker", "process"] = "auto"
    gateway: Literal["auto", "nginx", "kong"] = "auto"
    local: dict[str, Any] = Field(
        default_factory=dict, description="LocalSettings overrides (home, ports, image...)"
    )
    redis_url: str | None = None
    data_dir: Path | None = None
    base_port: int | None = Field(default=None, ge=1024, le=65000)
    cpus: float | None = Field(default=None, gt=0, le=256, description="CPU limit per container")
    memory: str | None = Field(default=None, description="memory limit per container, e.g. 256m")
    instance_env: dict[str, str] = Field(default_factory=dict)
    gateway_options: dict[str, Any] = Field(default_factory=dict)
    ready_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    drain_seconds: float = Field(default=10.0, ge=0, le=3600, description="max drain period")
    drain_min_seconds: float = Field(default=1.0, ge=0, le=600,
                                     description="gateway switch-over time")
    stop_grace_seconds: float = Field(default=10.0, ge=0, le=600)
    probe_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    startup_grace_seconds: float | None = Field(
        default=None, gt=0, le=3600,
        description="not ready after this: degraded if alive, else unhealthy (default 60 s)")
    max_replacements_per_tick: int = Field(
        default=2, ge=1, le=100,
        description="dead instances replaced per tick at most: a shared cause (a bad image, an "
        "outage) never turns into replacing the whole pool at once")
    file_sd_path: Path | None = Field(
        default=None, description="Prometheus file_sd JSON (default under the local home)"
    )
    hosts: list[HostConfig] = Field(
        default_factory=list,
        description="engines of a pool that spans machines (tasks/instances/multihost.py); "
        "empty: one engine, chosen by ``driver``",
    )
    host_state_path: Path | None = Field(
        default=None, description="what is remembered about the hosts between ticks "
        "(default <home>/run/hosts-<stack>.json)")
    growth: HostGrowthConfig | None = Field(
        default=None, description="add hosts when every host is full (tasks/tick/grow.py); "
        "needs ``hosts``")
    added_hosts_path: Path | None = Field(
        default=None, description="the hosts the autoscaler added (default "
        "<home>/run/added-hosts-<stack>.json)")

    @field_validator("local")
    @classmethod
    def _known_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(LocalSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown LocalSettings field(s): {', '.join(unknown)}")
        return value

    @field_validator("hosts")
    @classmethod
    def _distinct_hosts(cls, value: list[HostConfig]) -> list[HostConfig]:
        check_unique(value)
        return value

    @model_validator(mode="after")
    def _hosts_need_ports(self) -> PoolConfig:
        if any(h.remote for h in self.hosts) and self.base_port is None:
            raise ValueError("base_port is required with ssh:// hosts (free ports are looked "
                             "for on each host from there)")
        return self

    @model_validator(mode="after")
    def _growth_needs_hosts(self) -> PoolConfig:
        if self.growth is not None and not self.hosts:
            raise ValueError("growth: a pool adds hosts only when it lists its hosts (hosts:)")
        return self

    def added_hosts_file(self) -> Path:
        return self.added_hosts_path or self.settings().run_dir / f"added-hosts-{self.stack}.json"

    def all_hosts(self) -> list[HostConfig]:
        """The configured hosts and the ready hosts the autoscaler added."""
        if self.growth is None:
            return list(self.hosts)
        names = {h.name for h in self.hosts}
        added = [h for h in AddedHostStore(self.added_hosts_file()).ready_hosts()
                 if h.name not in names]
        return [*self.hosts, *added]

    def host_state_file(self) -> Path:
        return self.host_state_path or self.settings().run_dir / f"hosts-{self.stack}.json"

    def settings(self) -> LocalSettings:
        return LocalSettings(**self.local)

    def scrape_file(self) -> Path:
        return self.file_sd_path or self.settings().home / "prometheus/targets/stock_api.json"


def build_driver(config: PoolConfig) -> InstanceDriver:
    from tasks.instances.factory import make_driver

    if config.hosts:
        return build_multihost_driver(config)
    return make_driver(config.driver, **_driver_options(config))


def build_reader(config: PoolConfig) -> InstanceLister:
    """What ``build_driver(config).list()`` lists, for commands that only look
    (``kongstack status``): a local engine is read without the docker SDK."""
    from tasks.instances.factory import make_reader

    if config.hosts:
        return build_multihost_driver(config)
    return make_reader(config.driver, **_driver_options(config))


def _driver_options(config: PoolConfig) -> dict[str, Any]:
    return {"settings": config.settings(), "stack": config.stack,
            "redis_url": config.redis_url, "data_dir": config.data_dir,
            "env": config.instance_env or None, "base_port": config.base_port,
            "cpus": config.cpus, "memory": config.memory,
            "startup_grace": config.startup_grace_seconds}


def build_multihost_driver(config: PoolConfig) -> MultiHostDriver:
    # Imported here: the docker SDK and paramiko are for pools that use them.
    from tasks.instances.common import DockerSettings
    from tasks.instances.multihost import MultiHostDriver

    local = config.settings()
    base = DockerSettings(
        stack=config.stack, host=local.host, base_port=config.base_port,
        redis_url=config.redis_url or f"redis://{local.host}:{local.redis_port}/0",
        data_dir=config.data_dir, env=config.instance_env, image=local.image,
        cpus=config.cpus, memory=config.memory, probe_timeout=config.probe_timeout_seconds)
    return MultiHostDriver(config.all_hosts(), base, HostStateStore(config.host_state_file()),
                           instance_cpus=config.cpus)


def build_gateway(config: PoolConfig) -> Gateway:
    from tasks.gateway.factory import make_gateway

    kind = config.gateway
    if kind == "auto":  # Kong when one is configured, else the local nginx
        kind = "kong" if config.gateway_options.get("admin_url") or os.environ.get(
            "KONG_ADMIN_URL") else "nginx"
    gateway: Gateway = make_gateway(
        kind, stack=config.stack, settings=config.settings(), **config.gateway_options
    )
    return gateway


@dataclass(frozen=True)
class PoolView:
    """The pool as it stands after repair: its instances, gateway targets and the repairs."""

    instances: list[Instance]
    targets: list[Target]
    repairs: list[ActionRecord] = field(default_factory=list)
    """What this tick repaired (tasks.tick.repair)."""
    recovered: list[tuple[Intent, ActionRecord]] = field(default_factory=list)
    """Intents an earlier tick wrote and never recorded, as recorded now (tasks.tick.intent)."""

    @property
    def active(self) -> list[Instance]:
        return [i for i in self.instances if i.state in ACTIVE]

    @property
    def scraped_addresses(self) -> list[str]:
        """Ready and degraded instances: what Prometheus scrapes."""
        return [i.address for i in self.instances
                if i.state in (InstanceState.READY, InstanceState.DEGRADED)]


# -- one set of clients per tick ------------------------------------------------------------


@dataclass
class _Clients:
    config: PoolConfig
    users: int = 1
    driver: InstanceDriver | None = None
    gateway: Gateway | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get_driver(self) -> InstanceDriver:
        with self.lock:  # observe-instances runs in a worker thread beside the flow
            if self.driver is None:
                self.driver = build_driver(self.config)
            return self.driver

    def get_gateway(self) -> Gateway:
        with self.lock:
            if self.gateway is None:
                self.gateway = build_gateway(self.config)
            return self.gateway

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()
        close = getattr(self.driver, "close", None)
        if callable(close):
            close()  # the multi-host driver's SSH transports


_SESSIONS: dict[str, _Clients] = {}
_SESSIONS_LOCK = threading.Lock()


def _key(config: PoolConfig) -> str:
    return config.model_dump_json()


@contextmanager
def pool_session(config: PoolConfig) -> Iterator[None]:
    """Share one driver and one gateway for ``config`` among the tasks run inside."""
    key = _key(config)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            _SESSIONS[key] = session = _Clients(config, users=0)
        session.users += 1
    try:
        yield
    finally:
        with _SESSIONS_LOCK:
            session.users -= 1
            done = session.users == 0
            if done:
                del _SESSIONS[key]
        if done:
            session.close()


class PoolClients:
    """The driver and gateway of a pool: the session's when one is open, else built here
    (lazily) and released by ``pool_clients`` on exit."""

    def __init__(self, config: PoolConfig) -> None:
        with _SESSIONS_LOCK:
            shared = _SESSIONS.get(_key(config))
        self._shared = shared is not None
        self._clients = shared or _Clients(config)

    @property
    def driver(self) -> InstanceDriver:
        return self._clients.get_driver()

    @property
    def gateway(self) -> Gateway:
        return self._clients.get_gateway()

    def release(self) -> None:
        if not self._shared:
            self._clients.close()


@contextmanager
def pool_clients(config: PoolConfig) -> Iterator[PoolClients]:
    clients = PoolClients(config)
    try:
        yield clients
    finally:
        clients.release()

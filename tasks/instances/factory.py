"""Choosing an instance driver: ``make_driver("docker" | "process" | "auto", ...)``.

"auto" uses the Docker Engine API when the engine answers and has the stock API image, and
gunicorn processes otherwise; the reason for the choice is logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kongstack.core.settings import LocalSettings
from tasks.instances.base import Instance, InstanceDriver
from tasks.instances.common import (
    DockerSettings,
    DriverKind,
    InstanceSettings,
    ProcessSettings,
    engine_usable,
    log,
)
from tasks.instances.engine_http import EngineInstanceReader, reads_over_http


class InstanceLister(Protocol):
    """Anything that lists a pool's instances (a driver, or engine_http's reader)."""

    def list(self) -> list[Instance]: ...


if TYPE_CHECKING:
    from tasks.instances.docker import DockerDriver
    from tasks.instances.process import ProcessDriver


def make_driver(
    kind: DriverKind = "auto",
    *,
    settings: LocalSettings | None = None,
    stack: str = "kongstack",
    redis_url: str | None = None,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
    base_port: int | None = None,
    cpus: float | None = None,
    memory: str | None = None,
    docker_host: str | None = None,
    image: str | None = None,
    startup_grace: float | None = None,
) -> InstanceDriver:
    """The driver for ``kind``; "auto" = docker when the engine answers with the image.

    Defaults come from LocalSettings: ports from ``api_base_port``, Redis on ``redis_port``,
    the store in ``<home>/data/stock_api`` (shared by all instances), pid/metadata files in
    ``<home>/run/instances``. A remote engine (``ssh://``) gets instances bound on all of
    its interfaces and a named volume for the store instead of a local directory."""
    chosen = driver_settings(kind, settings=settings, stack=stack, redis_url=redis_url,
                             data_dir=data_dir, env=env, base_port=base_port, cpus=cpus,
                             memory=memory, docker_host=docker_host, image=image,
                             startup_grace=startup_grace)
    if isinstance(chosen, DockerSettings):
        return _docker(chosen)
    return _process(chosen)


def make_reader(kind: DriverKind = "auto", **options: Any) -> InstanceLister:
    """What ``make_driver(kind, **options)`` would list, for a command that only looks
    (``kongstack status``): a local engine is read over httpx (engine_http), without the
    docker SDK; an ``ssh://`` engine and a pool of processes by their driver."""
    chosen = driver_settings(kind, **options)
    if isinstance(chosen, DockerSettings):
        if reads_over_http(chosen.base_url):
            return EngineInstanceReader(chosen)
        return _docker(chosen)
    return _process(chosen)


def driver_settings(
    kind: DriverKind = "auto",
    *,
    settings: LocalSettings | None = None,
    stack: str = "kongstack",
    redis_url: str | None = None,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
    base_port: int | None = None,
    cpus: float | None = None,
    memory: str | None = None,
    docker_host: str | None = None,
    image: str | None = None,
    startup_grace: float | None = None,
) -> DockerSettings | ProcessSettings:
    """The chosen driver's settings ("auto" decided here, the reason logged)."""
    local = settings or LocalSettings()
    base_url = docker_host or local.docker_host
    image = image or local.image
    remote = base_url.startswith("ssh://")
    if data_dir is None and not (remote and kind == "docker"):
        data_dir = local.data_dir / "stock_api"
    common = InstanceSettings(
        stack=stack,
        host=local.host,
        base_port=base_port if base_port is not None else local.api_base_port,
        redis_url=redis_url or f"redis://{local.host}:{local.redis_port}/0",
        data_dir=data_dir,
        env=env or {},
        **({} if startup_grace is None else {"startup_grace": startup_grace}),
    ).model_dump()
    if kind == "auto":
        reason = engine_usable(base_url, image)
        if reason is None:
            log.info("instance driver: docker (engine at %s answers, image %s present)",
                     base_url, image)
            kind = "docker"
        else:
            log.info("instance driver: process (%s)", reason)
            kind = "process"
    if kind == "docker":
        if remote:
            common["host"] = "0.0.0.0"  # the gateway reaches the VM from outside
        return DockerSettings(base_url=base_url, image=image, cpus=cpus, memory=memory,
                              **common)
    return ProcessSettings(run_dir=local.run_dir / "instances",
                           log_dir=local.log_dir / "instances", **common)


# The drivers are imported when chosen: the docker SDK (and paramiko behind it) costs ~0.2 s
# of every command's start, and a pool of processes never needs it.
def _docker(settings: DockerSettings) -> DockerDriver:
    from tasks.instances.docker import DockerDriver

    return DockerDriver(settings)


def _process(settings: ProcessSettings) -> ProcessDriver:
    from tasks.instances.process import ProcessDriver

    return ProcessDriver(settings)

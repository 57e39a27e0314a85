"""What both instance drivers share: settings models, labels, port choice, readiness probe.

``make_driver("auto")`` uses the Docker Engine API when the engine answers and has the stock
API image, and gunicorn processes otherwise; the reason for the choice is logged. The settings
models and the small helpers here (port choice, readiness probe, state from a probe) keep the
two drivers' semantics identical.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kongstack.core import OWNER_LABEL
from kongstack.core.errors import InstanceError
from kongstack.core.procs import free_port_block, port_open
from kongstack.core.settings import REPO_ROOT
from stock_api.config import RedisUrl
from tasks.instances.base import InstanceState

log = logging.getLogger("kongstack.instances")

ROLE_LABEL = "kongstack.role"
PORT_LABEL = "kongstack.port"
ROLE = "stock-api"
DriverKind = Literal["docker", "process", "auto"]


class InstanceSettings(BaseModel):
    """What every backend instance gets, whichever driver runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str = Field(default="kongstack", pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    host: str = Field(default="127.0.0.1", description="interface instances bind to")
    base_port: int | None = Field(
        default=None, ge=1024, le=65000,
        description="first port tried for a new instance; None = any free port",
    )
    redis_url: RedisUrl = "redis://127.0.0.1:16379/0"  # the instance's own check
    data_dir: Path | None = Field(
        default=None, description="shared embedded-store directory (STOCK_API_DATA_DIR)"
    )
    env: dict[str, str] = Field(default_factory=dict, description="extra instance environment")
    probe_timeout: float = Field(default=1.0, gt=0, le=30)
    startup_grace: float = Field(
        default=60.0, gt=0, le=3600, description="after this an instance that is not ready is "
        "DEGRADED if /live answers (kept), else UNHEALTHY (replaced)"
    )

    def owner_labels(self, port: int) -> dict[str, str]:
        return {OWNER_LABEL: self.stack, ROLE_LABEL: ROLE, PORT_LABEL: str(port)}

    def instance_env(self, *, port: int, name: str, data_dir: str | None) -> dict[str, str]:
        env = {
            "PORT": str(port),
            "HOST": self.host,
            "REDIS_URL": self.redis_url,
            "INSTANCE_ID": name,
        }
        if data_dir is not None:
            env["STOCK_API_DATA_DIR"] = data_dir
        env.update(self.env)
        return env


class DockerSettings(InstanceSettings):
    base_url: str = Field(
        default="unix:///run/kongstack/podman.sock",
        description="engine address: unix:///path or ssh://user@host",
    )
    image: str = "localhost/kongstack-stock-api:latest"
    timeout: float = Field(default=30.0, gt=0, le=600, description="engine API call timeout")
    cpus: float | None = Field(default=None, gt=0, le=64, description="CPU limit per instance")
    memory: str | None = Field(
        default=None, pattern=r"^[0-9]+[bkmg]?$", description="memory limit, e.g. 256m"
    )
    volume: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="named volume for the store without data_dir (default <stack>-stock-data)",
    )
    advertise_host: str | None = Field(
        default=None,
        description="host the gateway and probes reach instances on (default: host, or the "
        "ssh:// engine's host)",
    )


    @model_validator(mode="after")
    def _remote_needs_ports(self) -> DockerSettings:
        if self.base_url.startswith("ssh://") and self.base_port is None:
            raise ValueError("base_port is required with an ssh:// engine (free ports are "
                             "looked for on the remote host from there)")
        return self


class ProcessSettings(InstanceSettings):
    run_dir: Path = Field(description="pid and metadata files")
    log_dir: Path = Field(description="one log file per instance")
    workdir: Path = Field(default=REPO_ROOT, description="directory stock_api is imported from")
    python: str = Field(default=sys.executable, description="interpreter with gunicorn installed")


def instance_name(port: int) -> str:
    return f"kongstack-api-{port}"


_NAME = re.compile(r"^kongstack-api-(\d+)$")


def port_of(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def pick_port(host: str, base_port: int | None, taken: Collection[int]) -> int:
    """A port nobody listens on and no known instance claims (even an exited one)."""
    if base_port is None:
        for _ in range(50):
            # Below the ephemeral range, so an outgoing connection cannot take it before
            # the instance binds it (EADDRINUSE).
            port = free_port_block(1, host if host != "0.0.0.0" else "127.0.0.1")
            if port not in taken:
                return port
        raise InstanceError("no free port found (50 tries)")
    for port in range(base_port, min(base_port + 1000, 65535)):
        if port not in taken and not port_open(host, port, timeout=0.2):
            return port
    raise InstanceError(f"no free port in {base_port}..{base_port + 999}")


def probe_ready(address: str, timeout: float) -> bool:
    try:
        return httpx.get(f"http://{address}/ready", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def probe_live(address: str, timeout: float) -> bool:
    try:
        return httpx.get(f"http://{address}/live", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def live_state(
    address: str, started_at: datetime, settings: InstanceSettings
) -> InstanceState:
    """State of a running instance from its probes and its age. Readiness (may take traffic)
    and liveness (must be restarted) are separate signals, as in Kubernetes: past the start-up
    grace an instance that is not ready but alive has lost a shared dependency (the store):
    DEGRADED, kept; only one that does not answer /live at all is UNHEALTHY (replaced)."""
    if probe_ready(address, settings.probe_timeout):
        return InstanceState.READY
    age = (datetime.now(UTC) - started_at).total_seconds()
    if age < settings.startup_grace:
        return InstanceState.STARTING
    if probe_live(address, settings.probe_timeout):
        return InstanceState.DEGRADED
    return InstanceState.UNHEALTHY


def poll_ready(
    address: str,
    *,
    timeout: float,
    probe_timeout: float,
    alive: Callable[[], str | None],
    what: str,
) -> None:
    """Poll ``/ready`` until 200. ``alive()`` returns why the instance is gone, or None."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if probe_ready(address, probe_timeout):
            return
        gone = alive()
        if gone is not None:
            raise InstanceError(f"{what} stopped before it was ready: {gone}")
        if time.monotonic() >= deadline:
            raise InstanceError(f"{what} not ready on http://{address}/ready after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def engine_usable(base_url: str, image: str | None = None, timeout: float = 3.0) -> str | None:
    """None when the engine answers (and has ``image``, if given); else why it is not usable."""
    from tasks.instances.engine_http import engine_usable_http, reads_over_http

    if reads_over_http(base_url):  # a local engine: two GETs, no docker SDK (~0.3 s import)
        return engine_usable_http(base_url, image, timeout)
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError:
        return "the docker SDK is not installed"
    try:
        client = docker.DockerClient(base_url=base_url, timeout=timeout)
    except DockerException as exc:
        return f"engine at {base_url} does not answer: {exc}"
    try:
        client.ping()
        if image is not None:
            client.images.get(image)
    except ImageNotFound:
        return f"engine at {base_url} answers but has no image {image} (run scripts/build-image)"
    except (DockerException, OSError) as exc:
        return f"engine at {base_url} does not answer: {type(exc).__name__}"
    finally:
        client.close()
    return None



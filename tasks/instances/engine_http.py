"""Reading a local Docker Engine API with httpx: is it usable, and which instances run there.

The docker SDK costs ~0.3 s of CPU to import (paramiko behind it) and, against Podman's
socket, seconds of wall time per ``containers.list``. A command that only looks (``kongstack
status``, the driver choice of ``make_driver("auto")``) reads the same two documents the SDK
reads (``GET /containers/json`` with the owner filters, then ``GET /containers/{id}/json``
for each) straight from the socket. Instances are built from the inspect document by
``instance_from_inspect``, which the docker driver uses too, so both see the same pool.

Local engines only (``unix://``, ``tcp://``, ``http://``); an ``ssh://`` engine goes through
the SDK (its SSH transport).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlparse

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from kongstack.core import OWNER_LABEL
from kongstack.core.errors import InstanceError
from tasks.instances.base import Instance, InstanceState
from tasks.instances.common import PORT_LABEL, ROLE, ROLE_LABEL, DockerSettings, live_state

LOCAL_SCHEMES = ("unix", "tcp", "http")


def reads_over_http(base_url: str) -> bool:
    """Whether this module can read the engine at ``base_url`` (a local one)."""
    return urlparse(base_url).scheme in LOCAL_SCHEMES


class EngineUnreachable(InstanceError):
    """The engine did not answer (connection refused, timed out, or 5xx after retries)."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class EngineHTTP:
    """A few read-only Engine API calls with a timeout each, retried with backoff on
    connection errors and 5xx (never on 4xx)."""

    def __init__(self, base_url: str, timeout: float = 10.0, attempts: int = 3) -> None:
        url = urlparse(base_url)
        if url.scheme not in LOCAL_SCHEMES:
            raise ValueError(f"{base_url}: not a local engine address (unix://, tcp://)")
        self.base_url = base_url
        self.attempts = attempts
        if url.scheme == "unix":
            transport = httpx.HTTPTransport(uds=url.path)
            root = "http://engine"
        else:
            transport = httpx.HTTPTransport()
            root = f"http://{url.netloc}"
        self._client = httpx.Client(transport=transport, base_url=root, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EngineHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        def once() -> httpx.Response:
            response = self._client.get(path, params=params)
            if response.status_code >= 500:
                response.raise_for_status()
            return response

        retrying = Retrying(retry=retry_if_exception(_transient), reraise=True,
                            stop=stop_after_attempt(self.attempts),
                            wait=wait_exponential(multiplier=0.2, max=2.0))
        try:
            return retrying(once)
        except httpx.HTTPError as exc:
            raise EngineUnreachable(f"engine at {self.base_url}: GET {path} failed: "
                                    f"{type(exc).__name__}: {exc}") from exc

    def ping(self) -> None:
        response = self._get("/_ping")
        if response.status_code != 200:
            raise EngineUnreachable(f"engine at {self.base_url}: /_ping answered "
                                    f"{response.status_code}")

    def has_image(self, image: str) -> bool:
        response = self._get(f"/images/{quote(image, safe='')}/json")
        if response.status_code == 404:
            return False
        self._ok(response)
        return True

    def inspect_containers(self, labels: list[str]) -> list[dict[str, Any]]:
        """Inspect documents of every container (running or not) with all ``labels``."""
        listed = self._get("/containers/json",
                           {"all": "1", "filters": json.dumps({"label": labels})})
        self._ok(listed)
        documents = []
        for summary in listed.json():
            response = self._get(f"/containers/{summary['Id']}/json")
            if response.status_code == 404:
                continue  # removed between the list and the inspect
            self._ok(response)
            documents.append(response.json())
        return documents

    def _ok(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise InstanceError(f"engine at {self.base_url}: {response.request.method} "
                                f"{response.request.url.path} answered {response.status_code}: "
                                f"{response.text.strip()[:200]}")


def engine_usable_http(base_url: str, image: str | None = None,
                       timeout: float = 3.0) -> str | None:
    """``common.engine_usable`` for a local engine: None when it answers (and has ``image``,
    if given); else why it is not usable (the same sentences)."""
    try:
        with EngineHTTP(base_url, timeout=timeout, attempts=1) as engine:
            engine.ping()
            if image is not None and not engine.has_image(image):
                return (f"engine at {base_url} answers but has no image {image} "
                        "(run scripts/build-image)")
    except EngineUnreachable as exc:
        cause = exc.__cause__
        return f"engine at {base_url} does not answer: {type(cause or exc).__name__}"
    except InstanceError as exc:
        return f"engine at {base_url} does not answer: {exc}"
    return None


# -- the pool's instances, from inspect documents -------------------------------------------

_TIME = re.compile(r"^(?P<base>[^.Z+]+(?:-\d\d)?)(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]\d\d:\d\d)?$")


def parse_engine_time(value: object) -> datetime | None:
    """Engine timestamps (RFC 3339 with nanoseconds) as aware datetimes; None when unset."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    match = _TIME.match(value.strip())
    if match is None:
        return None
    frac = (match.group("frac") or "")[:6]
    tz = match.group("tz") or "Z"
    text = match.group("base") + (f".{frac}" if frac else "") + ("+00:00" if tz == "Z" else tz)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def container_status(attrs: dict[str, Any]) -> str:
    """The SDK's ``Container.status``: State.Status (or State itself when it is a string)."""
    state = attrs.get("State")
    return str(state.get("Status", "")) if isinstance(state, dict) else str(state or "")


def instance_from_inspect(attrs: dict[str, Any], address_host: str, settings: DockerSettings,
                          state: InstanceState | None = None) -> Instance:
    """An instance from a container's inspect document (what the SDK's Container holds)."""
    labels = dict((attrs.get("Config") or {}).get("Labels") or {})
    port = labels.get(PORT_LABEL, "0")
    address = f"{address_host}:{port}"
    started = parse_engine_time((attrs.get("State") or {}).get("StartedAt")
                                if isinstance(attrs.get("State"), dict) else None
                                ) or parse_engine_time(attrs.get("Created")) or datetime.now(UTC)
    if state is None:
        status = container_status(attrs)
        if status == "running":
            state = live_state(address, started, settings)
        elif status in ("created", "restarting", "configured", "initialized"):
            state = InstanceState.STARTING
        elif status == "paused":
            state = InstanceState.UNHEALTHY
        else:
            state = InstanceState.EXITED
    name = str(attrs.get("Name") or "").lstrip("/")
    return Instance(id=str(attrs.get("Id") or name), name=name, address=address, state=state,
                    started_at=started, labels=labels, version=attrs.get("Image") or None)


def pool_labels(stack: str) -> list[str]:
    """The filter that selects a stack's instances (the docker driver's own)."""
    return [f"{OWNER_LABEL}={stack}", f"{ROLE_LABEL}={ROLE}"]


class EngineInstanceReader:
    """The read side of the docker driver over httpx: ``list()`` gives what
    ``DockerDriver(settings).list()`` gives, without the SDK. For commands that only look."""

    def __init__(self, settings: DockerSettings) -> None:
        self.settings = settings
        self.address_host = settings.advertise_host or settings.host

    def list(self) -> list[Instance]:
        with EngineHTTP(self.settings.base_url, timeout=self.settings.timeout) as engine:
            documents = engine.inspect_containers(pool_labels(self.settings.stack))
        return sorted((instance_from_inspect(d, self.address_host, self.settings)
                       for d in documents), key=lambda i: i.name)

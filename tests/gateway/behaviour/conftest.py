"""One harness, three gateways: every behaviour test runs against each.

- ``local``: the local default gateway (nginx with Lua under the test's tmp dir);
- ``kong-double``: the Kong double's Admin API reconciled by ``KongGateway``, and its proxy
  port (Kong's plugins and balancer, from Kong's source);
- ``kong``: a real Kong 3.x when ``KONG_ADMIN_URL`` is set (its proxy at ``KONG_PROXY_URL``,
  default port 8000 on the admin host); it must reach this machine's loopback backends, so
  it has to run on this machine. Skipped otherwise, saying why.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from kongstack.core.procs import free_port
from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.gateway.kong.auth import load_admin_auth
from tasks.gateway.kong.client import KongAdminClient
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.kong.sync import KongGateway
from tasks.gateway.nginx import NginxGateway
from tasks.gateway.protocol import Gateway, Target
from tests.doubles.kong_server import kong_double
from tests.support.services import require_binary

KONG_ADMIN_URL = os.environ.get("KONG_ADMIN_URL")


def _kong_proxy_url() -> str:
    if os.environ.get("KONG_PROXY_URL"):
        return os.environ["KONG_PROXY_URL"]
    admin = urlsplit(KONG_ADMIN_URL or "")
    return f"{admin.scheme}://{admin.hostname}:8000"


@dataclass
class Harness:
    """A gateway under test: reconcile it, change its targets, send it requests."""

    kind: str
    gateway: Gateway
    proxy_url: str
    base: GatewayStackConfig
    read_log: Callable[[], list[dict[str, Any]]] | None  # None: the log is not readable
    reader_key: str = field(default_factory=lambda: f"rk-{uuid.uuid4().hex}")
    writer_key: str = field(default_factory=lambda: f"wk-{uuid.uuid4().hex}")
    # A real Kong applies a change within its db_update_frequency (5 s); the others at once.
    settle_seconds: float = 0.0

    @property
    def reader(self) -> str:
        return f"{self.base.stack}-reader"

    @property
    def writer(self) -> str:
        return f"{self.base.stack}-writer"

    def path(self, rest: str = "/stocks") -> str:
        return self.base.route_path + rest

    def config(self, *, reader_limit: int | None = None, writer_limit: int | None = None,
               extra: tuple[ConsumerConfig, ...] = ()) -> GatewayStackConfig:
        consumers = (
            ConsumerConfig(username=self.reader, key=SecretStr(self.reader_key), access="read",
                           rate_limit_per_minute=reader_limit),
            ConsumerConfig(username=self.writer, key=SecretStr(self.writer_key),
                           access="write", rate_limit_per_minute=writer_limit),
            *extra)
        return self.base.model_copy(update={"consumers": consumers})

    def apply(self, cfg: GatewayStackConfig | None = None,
              targets: list[str] | None = None) -> None:
        self.gateway.apply(build_gateway_state(cfg or self.config(), targets))

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.proxy_url, timeout=10.0, **kwargs)

    def eventually(self, check: Callable[[], bool], what: str, timeout: float = 0.0) -> float:
        """Poll ``check`` until true (a gateway that applies changes asynchronously);
        returns the seconds it took."""
        deadline = time.monotonic() + max(timeout, self.settle_seconds, 0.001)
        start = time.monotonic()
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.kind}: {what} not observed within "
                                     f"{deadline - start:.1f}s")
            time.sleep(0.05)  # poll interval of an observable condition
        return time.monotonic() - start

    def targets(self) -> dict[str, Target]:
        return {t.address: t for t in self.gateway.list_targets()}

    def logged(self, *, request_id: str, correlation_id: str) -> list[dict[str, Any]] | None:
        """The gateway's log entries for this request (None: this gateway's log is not
        readable from here, a real Kong)."""
        if self.read_log is None:
            return None
        return [e for e in self.read_log() if e.get("request_id") == request_id
                or e.get("correlation_id") == correlation_id]


def _local(tmp_path: Path) -> Iterator[Harness]:
    gateway = NginxGateway(prefix=tmp_path / "nginx", port=free_port(),
                           status_port=free_port(), binary=require_binary("nginx"))

    def read_log() -> list[dict[str, Any]]:
        import json

        path = gateway.access_log
        return [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []

    try:
        yield Harness("local", gateway, gateway.url, GatewayStackConfig(stack="behaviour"),
                      read_log)
    finally:
        gateway.stop()


def _double() -> Iterator[Harness]:
    with kong_double(proxy=True) as kong:
        client = KongAdminClient(base_url=kong.url, timeout=5.0, backoff_initial=0.01,
                                 backoff_max=0.1)
        gateway = KongGateway(client=client, stack="behaviour", drain_grace_seconds=0.0)
        assert kong.proxy is not None
        proxy = kong.proxy

        def read_log() -> list[dict[str, Any]]:
            with proxy.lock:
                return list(proxy.log)

        try:
            yield Harness("kong-double", gateway, kong.proxy_url,
                          GatewayStackConfig(stack="behaviour"), read_log)
        finally:
            gateway.close()


def _real_kong() -> Iterator[Harness]:
    assert KONG_ADMIN_URL
    suffix = uuid.uuid4().hex[:8]
    base = GatewayStackConfig(stack=f"kst-{suffix}", service=f"kst-{suffix}",
                              route=f"kst-{suffix}", write_route=f"kst-{suffix}-write",
                              upstream=f"kst-{suffix}-upstream", route_path=f"/kst-{suffix}")
    client = KongAdminClient(base_url=KONG_ADMIN_URL, auth=load_admin_auth())
    gateway = KongGateway(client=client, stack=base.stack, upstream=base.upstream,
                          drain_grace_seconds=6.0)
    try:
        yield Harness("kong", gateway, _kong_proxy_url(), base, None, settle_seconds=15.0)
    finally:
        gateway.apply(GatewayState(stack=base.stack))
        gateway.close()


@pytest.fixture(params=["local", "kong-double", "kong"])
def gw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "local":
        yield from _local(tmp_path)
    elif request.param == "kong-double":
        yield from _double()
    else:
        if not KONG_ADMIN_URL:
            pytest.skip("KONG_ADMIN_URL is not set: no real Kong to test against (Kong "
                        "cannot be installed on this machine; the double covers it)")
        yield from _real_kong()

"""Choose the gateway by config: ``make_gateway("nginx" | "kong", ...)``.

nginx is the local default (a real nginx under ``var/nginx`` on LocalSettings' loopback
ports); Kong is reached at ``admin_url`` (or ``$KONG_ADMIN_URL``) with the admin token from a
Prefect Secret block or ``$KONG_ADMIN_TOKEN``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from kongstack.core.errors import ConfigError
from kongstack.core.settings import LocalSettings
from tasks.gateway.kong.auth import load_admin_auth
from tasks.gateway.kong.client import KongAdminClient
from tasks.gateway.kong.sync import KongGateway
from tasks.gateway.nginx import NginxGateway
from tasks.gateway.protocol import Gateway

GatewayKind = Literal["kong", "nginx"]


def make_gateway(
    kind: GatewayKind,
    *,
    stack: str = "kongstack",
    upstream: str = "stock-api-upstream",
    settings: LocalSettings | None = None,
    prefix: Path | None = None,
    port: int | None = None,
    status_port: int | None = None,
    admin_url: str | None = None,
    admin_secret_block: str | None = None,
    timeout: float = 10.0,
    drain_grace_seconds: float = 6.0,
) -> Gateway:
    if kind == "nginx":
        settings = settings or LocalSettings()
        return NginxGateway(
            prefix=prefix or settings.home / "nginx",
            host=settings.host,
            port=port or settings.gateway_port,
            status_port=status_port or settings.gateway_status_port,
            upstream=upstream,
            timeout=max(timeout, 15.0),
        )
    if kind == "kong":
        url = admin_url or os.environ.get("KONG_ADMIN_URL")
        if not url:
            raise ConfigError("gateway.admin_url: required for kind 'kong' "
                              "(or set KONG_ADMIN_URL)")
        client = KongAdminClient(base_url=url, timeout=timeout,
                                 auth=load_admin_auth(secret_block=admin_secret_block))
        return KongGateway(client=client, stack=stack, upstream=upstream,
                           drain_grace_seconds=drain_grace_seconds)
    raise ConfigError(f"gateway.kind: expected 'kong' or 'nginx', got {kind!r}")

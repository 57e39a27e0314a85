"""Choose the gateway by config: ``make_gateway("nginx" | "kong", ...)``.

nginx is the local default (a real nginx under ``var/nginx`` on LocalSettings' loopback
ports); Kong is reached at ``admin_url`` (or ``$KONG_ADMIN_URL``) with the admin token from a
Prefect Secret block or ``$KONG_ADMIN_TOKEN``. With ``ssh_tunnel`` (an ``AdminTunnel``, or
its dict, e.g. from the autoscale config's ``gateway_options``), ``admin_url`` is the Admin
API's address *on the Kong VM* (``http://127.0.0.1:8001``: it listens on loopback there) and
the client talks to it through an SSH tunnel that the gateway's ``close`` closes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import httpx

from kongstack.core.errors import ConfigError
from kongstack.core.settings import LocalSettings
from tasks.gateway.kong.auth import AdminAuth, load_admin_auth
from tasks.gateway.kong.client import KongAdminClient, is_loopback
from tasks.gateway.kong.sync import KongGateway
from tasks.gateway.kong.tunnel_config import AdminTunnel
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
    ssh_tunnel: AdminTunnel | dict[str, object] | None = None,
    allow_plain_http: bool = False,
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
        auth = load_admin_auth(secret_block=admin_secret_block)
        if ssh_tunnel is None:
            client = KongAdminClient(base_url=url, timeout=timeout, auth=auth,
                                     allow_plain_http=allow_plain_http)
        else:
            client = _tunnelled_client(url, AdminTunnel.model_validate(ssh_tunnel),
                                       timeout=timeout, auth=auth)
        return KongGateway(client=client, stack=stack, upstream=upstream,
                           drain_grace_seconds=drain_grace_seconds)
    raise ConfigError(f"gateway.kind: expected 'kong' or 'nginx', got {kind!r}")


def _tunnelled_client(url: str, cfg: AdminTunnel, *, timeout: float,
                      auth: AdminAuth | None) -> KongAdminClient:
    from tasks.providers.ssh_tunnel import SSHTunnel  # paramiko: the [azure] extra

    remote = httpx.URL(url)
    if remote.scheme != "http" or not is_loopback(remote.host):
        raise ConfigError(f"admin_url: {url} with ssh_tunnel must be the Admin API's loopback "
                          "address on the Kong VM (e.g. http://127.0.0.1:8001)")
    tunnel = SSHTunnel(cfg.target(), remote.host, remote.port or 80,
                       attempts=cfg.attempts, channel_timeout=cfg.channel_timeout_s).open()
    try:
        local = tunnel.url() + remote.raw_path.decode().rstrip("/")
        return KongAdminClient(base_url=local, timeout=timeout, auth=auth,
                               on_close=tunnel.close)
    except BaseException:
        tunnel.close()
        raise

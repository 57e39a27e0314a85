"""The local default gateway: a real nginx with Lua, run and configured by kongstack, that
behaves like Kong (targets at run time, health checks, key-auth, ACL, rate limiting,
request-transformer)."""

from __future__ import annotations

from tasks.gateway.nginx.gateway import NginxGateway
from tasks.gateway.nginx.site import NginxSite, site_from_state

__all__ = ["NginxGateway", "NginxSite", "site_from_state"]

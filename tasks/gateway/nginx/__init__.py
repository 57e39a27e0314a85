"""The local default gateway: a real nginx run and configured by kongstack."""

from __future__ import annotations

from tasks.gateway.nginx.gateway import NginxGateway
from tasks.gateway.nginx.site import NginxSite, site_from_state

__all__ = ["NginxGateway", "NginxSite", "site_from_state"]

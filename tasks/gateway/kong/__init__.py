"""Kong 3.x behind the ``Gateway`` protocol (decK/KIC model).

    model.py        desired state: flat entity specs with owner tags (GatewayState)
    client.py       Admin API over one httpx pool: timeouts, retries, pagination, redaction
    diff.py         pure: current vs desired -> ordered plain-data Operations
    sync.py         KongGateway: read -> diff -> apply; add / drain / remove targets
    dbless.py       DB-less Kong: POST /config with the whole declarative document
    declarative.py  export / parse the declarative file (_format_version "3.0")
    auth.py         admin token or headers from a Prefect Secret block or the environment
"""

from __future__ import annotations

from tasks.gateway.kong.client import (
           DBLessError,
           KongAdminClient,
           KongAPIError,
           KongUnavailableError,
)
from tasks.gateway.kong.model import GatewayState, owner_tags
from tasks.gateway.kong.sync import KongGateway

__all__ = ["DBLessError", "GatewayState", "KongAPIError", "KongAdminClient", "KongGateway",
           "KongUnavailableError", "owner_tags"]

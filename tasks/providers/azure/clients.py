"""The three ARM clients the provider uses, built once per run from one credential."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kongstack.core.errors import ConfigError
from kongstack.core.extras import requires_extra

with requires_extra("azure", "the Azure provider"):
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

# Every ARM call has a timeout; transient faults (429 with Retry-After, 5xx, resets) are
# retried by azure-core's RetryPolicy with exponential backoff.
DEFAULT_CLIENT_KWARGS: dict[str, Any] = {
    "connection_timeout": 10,
    "read_timeout": 60,
    "retry_total": 6,
    "retry_backoff_factor": 0.8,
    "retry_backoff_max": 60,
}


@dataclass(frozen=True)
class AzureClients:
    subscription_id: str
    resources: ResourceManagementClient
    network: NetworkManagementClient
    compute: ComputeManagementClient

    def close(self) -> None:
        for client in (self.resources, self.network, self.compute):
            client.close()


def subscription_from(configured: str | None) -> str:
    sub = configured or os.environ.get("AZURE_SUBSCRIPTION_ID")
    if not sub:
        raise ConfigError("azure.subscription_id: not set (nor AZURE_SUBSCRIPTION_ID)")
    return sub


def connect(subscription_id: str, *, credential: Any = None, **client_kwargs: Any) -> AzureClients:
    """ARM clients for ``subscription_id``; ``DefaultAzureCredential`` unless one is given.

    ``client_kwargs`` go to every client (``base_url``, ``polling_interval``, policies...).
    """
    if credential is None:
        with requires_extra("azure", "the Azure provider"):
            from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    kwargs = {**DEFAULT_CLIENT_KWARGS, **client_kwargs}
    return AzureClients(
        subscription_id=subscription_id,
        resources=ResourceManagementClient(credential, subscription_id, **kwargs),
        network=NetworkManagementClient(credential, subscription_id, **kwargs),
        compute=ComputeManagementClient(credential, subscription_id, **kwargs),
    )

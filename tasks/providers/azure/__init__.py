"""Azure provider: provision the topology's VMs (and tear them down) through ARM.

Public surface (Prefect tasks take config, never live clients):

- :func:`provision_azure` / :func:`teardown_azure` — @task wrappers used by the flows.
- :class:`AzureProvisioner`, :func:`connect`, :func:`plan_teardown`, :func:`execute_teardown`.
"""

from __future__ import annotations

from tasks.providers.azure.clients import AzureClients, connect, subscription_from
from tasks.providers.azure.provision import AzureProvisioner, ProvisionFailed, ProvisionReport
from tasks.providers.azure.tasks import provision_azure, teardown_azure
from tasks.providers.azure.teardown import TeardownPlan, execute_teardown, plan_teardown

__all__ = [
    "AzureClients",
    "AzureProvisioner",
    "ProvisionFailed",
    "ProvisionReport",
    "TeardownPlan",
    "connect",
    "execute_teardown",
    "plan_teardown",
    "provision_azure",
    "subscription_from",
    "teardown_azure",
]

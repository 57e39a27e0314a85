"""Azure provider: provision the topology's VMs (and tear them down) through ARM.

Public surface: :class:`AzureProvider` (the deploy steps behind tasks.providers.protocol),
:class:`AzureProvisioner`, :func:`connect`, :func:`plan_teardown`, :func:`execute_teardown`.

The names load on first use (PEP 562), so that the SDK-free modules of this package (``plan``,
``role_files``, ``cloud_init``) import on a base install without the ``[azure]`` extra.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AzureClients": "clients",
    "connect": "clients",
    "subscription_from": "clients",
    "AzureProvisioner": "provision",
    "ProvisionFailed": "provision",
    "ProvisionReport": "provision",
    "AzureProvider": "provider",
    "TeardownPlan": "teardown",
    "execute_teardown": "teardown",
    "plan_teardown": "teardown",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)

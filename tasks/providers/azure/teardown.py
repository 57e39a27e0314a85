"""Remove exactly the Azure resources that carry this stack's owner tag (used by cleanup).

Dependents go first (VMs → NICs → public IPs → VNets → NSGs); within a kind, deletes run in
parallel. The resource group is deleted only if it carries the tag AND is empty afterwards,
because deleting a group deletes everything in it, tagged or not.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kongstack.core import OWNER_LABEL
from kongstack.core.errors import ProviderError
from kongstack.core.extras import requires_extra
from tasks.providers.azure.clients import AzureClients
from tasks.providers.azure.provision import LRO_TIMEOUT_S, describe_error

with requires_extra("azure", "the Azure provider"):
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError


@dataclass
class TeardownPlan:
    resources: list[tuple[str, str]] = field(default_factory=list)  # (kind, name), in order
    resource_group: bool = False
    kept: list[str] = field(default_factory=list)  # not ours: listed, never touched


def _owned(item: Any, stack: str) -> bool:
    return bool(item.tags) and item.tags.get(OWNER_LABEL) == stack


def _kinds(az: AzureClients) -> list[tuple[str, Any, Any]]:
    net, cc = az.network, az.compute
    return [
        ("virtual machine", cc.virtual_machines, cc.virtual_machines.begin_delete),
        ("network interface", net.network_interfaces, net.network_interfaces.begin_delete),
        ("public IP", net.public_ip_addresses, net.public_ip_addresses.begin_delete),
        ("virtual network", net.virtual_networks, net.virtual_networks.begin_delete),
        (
            "network security group",
            net.network_security_groups,
            net.network_security_groups.begin_delete,
        ),
    ]


def plan_teardown(az: AzureClients, resource_group: str, stack: str) -> TeardownPlan:
    result = TeardownPlan()
    try:
        group = az.resources.resource_groups.get(resource_group)
    except ResourceNotFoundError:
        return result
    for kind, ops, _delete in _kinds(az):
        for item in ops.list(resource_group):
            if _owned(item, stack):
                result.resources.append((kind, item.name))
            else:
                result.kept.append(f"{kind} {item.name}")
    result.resource_group = _owned(group, stack)
    return result


def execute_teardown(
    az: AzureClients,
    resource_group: str,
    stack: str,
    teardown: TeardownPlan,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> list[str]:
    """Delete what ``teardown`` lists; returns what was removed. Missing counts as done."""
    log = logger or logging.getLogger(__name__)
    removed: list[str] = []
    for kind, _ops, delete in _kinds(az):
        names = [n for k, n in teardown.resources if k == kind]
        if not names:
            continue

        def remove(name: str, kind: str = kind, delete: Any = delete) -> str:
            log.info("deleting %s %s", kind, name)
            try:
                delete(resource_group, name).result(timeout=LRO_TIMEOUT_S)
            except ResourceNotFoundError:
                pass
            except HttpResponseError as exc:
                raise ProviderError(
                    f"{kind} {name}: delete failed: {describe_error(exc)}"
                ) from None
            return f"{kind} {name}"

        with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            removed.extend(pool.map(remove, names))
    if teardown.resource_group:
        left = list(az.resources.resources.list_by_resource_group(resource_group))
        if left:
            log.warning(
                "keeping resource group %s: %d resources not owned by %s remain",
                resource_group,
                len(left),
                stack,
            )
        else:
            log.info("deleting resource group %s", resource_group)
            az.resources.resource_groups.begin_delete(resource_group).result(timeout=LRO_TIMEOUT_S)
            removed.append(f"resource group {resource_group}")
    return removed

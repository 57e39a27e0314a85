"""Teardown removes exactly what carries the stack's owner tag."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.network.models import PublicIPAddress, VirtualNetwork

from tasks.providers.azure.clients import AzureClients
from tasks.providers.azure.teardown import execute_teardown, plan_teardown
from tests.providers.azure.arm_double import ArmServer
from tests.providers.azure.test_provision import provisioner


def test_teardown_deletes_tagged_resources_and_the_empty_group(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    az = make_clients()
    provisioner(tmp_path, az).provision()
    arm.state.delays = {"*": 0.1}
    plan = plan_teardown(az, "kongstack-rg", "kongstack")
    kinds = [k for k, _ in plan.resources]
    assert (
        kinds.index("virtual machine") < kinds.index("network interface") < kinds.index("public IP")
    )
    assert plan.resource_group and plan.kept == []
    removed = execute_teardown(az, "kongstack-rg", "kongstack", plan)
    assert "resource group kongstack-rg" in removed and len(removed) == 12
    try:
        az.resources.resource_groups.get("kongstack-rg")
        raise AssertionError("resource group still exists")
    except ResourceNotFoundError:
        pass


def test_teardown_keeps_untagged_resources_and_their_group(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    az = make_clients()
    provisioner(tmp_path, az).provision()
    az.network.public_ip_addresses.begin_create_or_update(
        "kongstack-rg",
        "someone-elses-pip",
        PublicIPAddress(
            {
                "location": "westeurope",
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
                "tags": {"team": "data"},
            }
        ),
    ).result()
    other_stack = VirtualNetwork(
        {
            "location": "westeurope",
            "tags": {"kongstack.owner": "staging"},
            "properties": {"addressSpace": {"addressPrefixes": ["10.30.0.0/16"]}},
        }
    )
    az.network.virtual_networks.begin_create_or_update(
        "kongstack-rg", "staging-vnet", other_stack
    ).result()
    plan = plan_teardown(az, "kongstack-rg", "kongstack")
    assert "public IP someone-elses-pip" in plan.kept
    assert "virtual network staging-vnet" in plan.kept
    removed = execute_teardown(az, "kongstack-rg", "kongstack", plan)
    assert "resource group kongstack-rg" not in removed
    names = {r["name"] for r in arm.state.resources.values()}
    assert names == {"someone-elses-pip", "staging-vnet"}
    # a second teardown finds nothing of ours and changes nothing
    again = plan_teardown(az, "kongstack-rg", "kongstack")
    assert again.resources == [] and execute_teardown(az, "kongstack-rg", "kongstack", again) == []

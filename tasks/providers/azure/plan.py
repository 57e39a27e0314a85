"""Pure desired state for the Azure provider: names, NSG rules and REST request bodies.

Every NIC gets a static private address (``nsg.private_addresses``), so that the NSG rules
(``nsg.nsg_rules``) can name each VM.

No I/O here: the provisioner compares these bodies with what ARM returns and sends only
the difference. Bodies are REST-shaped dicts (the SDK v39 models accept them as-is).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from kongstack.core.topology import VM, Host, Role, Topology
from tasks.gateway.kong.template import log_endpoint_for
from tasks.providers.azure.nsg import Rule, nsg_rules, private_addresses

__all__ = ["Names", "Rule", "names_for", "nic_body", "nsg_body", "nsg_rules", "pip_body",
           "private_addresses", "subnet_body", "vm_body", "vnet_body"]


@dataclass(frozen=True)
class Names:
    """ARM resource names for one VM (stable, so a re-run finds what exists)."""

    vm: str
    nic: str
    pip: str


def names_for(vm: VM) -> Names:
    return Names(vm=vm.name, nic=f"{vm.name}-nic", pip=f"{vm.name}-pip")


def vnet_name(topo: Topology) -> str:
    return f"{topo.name}-vnet"


def subnet_name(topo: Topology) -> str:
    return f"{topo.name}-subnet"


def nsg_name(topo: Topology) -> str:
    return f"{topo.name}-nsg"


def shared_labels(topo: Topology) -> tuple[str, str, str, str]:
    """The shared resources the provisioner ensures, as its report names them, in order:
    resource group, network security group, virtual network, subnet."""
    vnet = vnet_name(topo)
    return (f"resource group {topo.azure.resource_group}",
            f"network security group {nsg_name(topo)}", f"virtual network {vnet}",
            f"subnet {vnet}/{subnet_name(topo)}")


def vm_labels(vm: VM) -> tuple[str, str, str]:
    """One VM's resources as the provisioner's report names them: public IP, NIC, VM."""
    names = names_for(vm)
    return (f"public IP {names.pip}", f"network interface {names.nic}",
            f"virtual machine {names.vm}")


def desired_resources(topo: Topology) -> list[str]:
    """Everything a provision run ensures (the dry run lists it; a first run creates it)."""
    return [*shared_labels(topo), *(label for vm in topo.vms for label in vm_labels(vm))]



def tagged(topo: Topology, body: dict[str, Any], **extra: str) -> dict[str, Any]:
    return {**body, "tags": {**topo.owner_tags(), **extra}}


def vnet_body(topo: Topology) -> dict[str, Any]:
    return tagged(
        topo,
        {
            "location": topo.azure.location,
            "properties": {"addressSpace": {"addressPrefixes": [topo.azure.vnet_cidr]}},
        },
    )


def subnet_body(topo: Topology, nsg_id: str) -> dict[str, Any]:
    return {
        "properties": {
            "addressPrefix": topo.azure.subnet_cidr,
            "networkSecurityGroup": {"id": nsg_id},
        }
    }


def nsg_body(topo: Topology) -> dict[str, Any]:
    return tagged(
        topo,
        {
            "location": topo.azure.location,
            "properties": {"securityRules": [r.body() for r in nsg_rules(topo)]},
        },
    )


def pip_body(topo: Topology, vm: VM) -> dict[str, Any]:
    return tagged(
        topo,
        {
            "location": topo.azure.location,
            "sku": {"name": "Standard"},
            "properties": {"publicIPAllocationMethod": "Static"},
        },
        **{"kongstack.vm": vm.name},
    )


def nic_body(topo: Topology, vm: VM, *, subnet_id: str, pip_id: str, nsg_id: str,
             private_address: str | None = None) -> dict[str, Any]:
    """The NIC with its static private address (default: the topology's for ``vm``)."""
    return tagged(
        topo,
        {
            "location": topo.azure.location,
            "properties": {
                "networkSecurityGroup": {"id": nsg_id},
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "properties": {
                            "subnet": {"id": subnet_id},
                            "publicIPAddress": {"id": pip_id},
                            "privateIPAllocationMethod": "Static",
                            "privateIPAddress": (private_address
                                                 or private_addresses(topo)[vm.name]),
                        },
                    }
                ],
            },
        },
        **{"kongstack.vm": vm.name},
    )


def vm_body(
    topo: Topology, vm: VM, *, nic_id: str, ssh_public_key: str, cloud_init: str
) -> dict[str, Any]:
    user = vm.admin_username
    return tagged(
        topo,
        {
            "location": topo.azure.location,
            "properties": {
                "hardwareProfile": {"vmSize": vm.size},
                "storageProfile": {
                    "imageReference": vm.image.model_dump(),
                    "osDisk": {
                        "createOption": "FromImage",
                        "diskSizeGB": vm.os_disk_gb,
                        "deleteOption": "Delete",
                        "managedDisk": {"storageAccountType": "Standard_LRS"},
                    },
                },
                "osProfile": {
                    "computerName": vm.name,
                    "adminUsername": user,
                    # customData is write-only and must hold no secrets (SDK OSProfile docs).
                    "customData": base64.b64encode(cloud_init.encode()).decode(),
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": True,
                        "ssh": {
                            "publicKeys": [
                                {
                                    "path": f"/home/{user}/.ssh/authorized_keys",
                                    "keyData": ssh_public_key.strip(),
                                }
                            ]
                        },
                    },
                },
                "networkProfile": {
                    "networkInterfaces": [
                        {"id": nic_id, "properties": {"primary": True, "deleteOption": "Delete"}}
                    ]
                },
            },
        },
        **{"kongstack.vm": vm.name, "kongstack.roles": ",".join(vm.roles)},
    )


# Health endpoints per role, on the role's named port (checked from the admin range). Kong's
# Admin API is not on the network (loopback on its VM): register reaches it through SSH.
HEALTH = {
    Role.PROMETHEUS: ("http", "/-/ready"),
    Role.ALERTMANAGER: ("http", "/-/ready"),
    Role.GRAFANA: ("ui", "/api/health"),
    Role.KIBANA: ("ui", "/api/status"),
    Role.ELASTICSEARCH: ("http", "/_cluster/health"),
}


def instance_targets(topo: Topology, hosts: list[Host]) -> list[str]:
    vm = topo.vm_with(Role.STOCK_API)
    if vm is None:
        return []
    host = next(h for h in hosts if h.vm == vm.name)
    svc = vm.service(Role.STOCK_API)
    assert svc is not None
    port = next(iter(svc.ports.values()))
    return [f"{host.private_address or host.address}:{port + i}" for i in range(svc.count)]


def log_endpoint(topo: Topology, hosts: list[Host]) -> str | None:
    """Kong's http-log target: the log forwarder's ingest port on the logs VM (private)."""
    vm = topo.vm_with(Role.LOG_FORWARDER)
    host = next((h for h in hosts if vm and h.vm == vm.name), None)
    if host is None:
        return None
    return log_endpoint_for(topo, host.private_address or host.address)

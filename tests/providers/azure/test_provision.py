"""The Azure provider driven through the real azure-mgmt SDK clients against the ARM double."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kongstack.core import OWNER_LABEL
from kongstack.core.errors import ProviderError
from tasks.providers.azure.clients import AzureClients
from tasks.providers.azure.provision import AzureProvisioner, ProvisionFailed
from tests.providers.azure.arm_double import ArmServer, Fault
from tests.providers.azure.conftest import HOST_KEY, azure_topology

PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO2b2b0z1m0X6Qe4lLrpjUeN5V0K9dJwG2Xo3Yy1uP7w deploy"
)


def provisioner(tmp_path: Path, clients: AzureClients, **changes: object) -> AzureProvisioner:
    return AzureProvisioner(
        topology=azure_topology(tmp_path, **changes),
        clients=clients,
        ssh_public_key=PUBLIC_KEY,
        known_hosts=tmp_path / "known_hosts",
    )


def stored(arm: ArmServer, type_suffix: str) -> list[dict[str, Any]]:
    return [r for r in arm.state.resources.values() if r["type"].endswith(type_suffix)]


def test_creates_the_three_vms_in_parallel_with_owner_tags(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    arm.state.delays = {"virtualMachines": 0.6}
    report = provisioner(tmp_path, make_clients()).provision()

    assert sorted(h.vm for h in report.hosts) == ["vm-kong", "vm-logs", "vm-monitoring"]
    assert all(h.address.startswith("203.0.113.") and h.private_address for h in report.hosts)
    assert all(h.status == "created" for h in report.hosts)
    # every VM create was in flight at the same time: each started before any finished
    vm_ops = [
        (s, d)
        for rid, kind, s, d in arm.state.op_windows
        if "/virtualMachines/" in rid and kind == "put"
    ]
    assert len(vm_ops) == 3 and max(s for s, _ in vm_ops) < min(d for _, d in vm_ops)
    for res in arm.state.resources.values():
        if res["type"].endswith("/subnets"):  # subnets take no tags in ARM
            continue
        assert res["tags"][OWNER_LABEL] == "kongstack", res["id"]
    assert arm.state.groups["kongstack-rg"]["tags"][OWNER_LABEL] == "kongstack"


def test_vm_gets_cloud_init_ssh_key_and_no_password(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    provisioner(tmp_path, make_clients()).provision()
    vm = next(r for r in stored(arm, "virtualMachines") if r["name"] == "vm-logs")
    os_profile = vm["properties"]["osProfile"]
    cloud_init = base64.b64decode(os_profile["customData"]).decode()
    assert cloud_init.startswith("#cloud-config")
    assert 'ROLES="log-forwarder elasticsearch kibana"' in cloud_init
    linux = os_profile["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert linux["ssh"]["publicKeys"][0]["keyData"] == PUBLIC_KEY
    assert vm["properties"]["hardwareProfile"]["vmSize"] == "Standard_B2ms"
    # the host key was read over ARM and pinned for the SSH installer
    pinned = (tmp_path / "known_hosts").read_text().splitlines()
    assert len(pinned) == 3 and all(line.endswith(HOST_KEY) for line in pinned)


def test_nsg_opens_only_the_api_on_the_gateway_and_nics_get_the_planned_addresses(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    report = provisioner(tmp_path, make_clients()).provision()
    (nsg,) = stored(arm, "networkSecurityGroups")
    rules = {r["name"]: r["properties"] for r in nsg["properties"]["securityRules"]}
    public = rules["allow-public-api"]
    assert public["sourceAddressPrefix"] == "Internet"
    assert public["destinationPortRange"] == "8000"
    assert public["destinationAddressPrefix"] == "10.20.1.4/32"  # vm-kong, not "*"
    internet = [r for r in rules.values() if r["sourceAddressPrefix"] == "Internet"]
    assert internet == [public]
    ssh = rules["allow-admin-ssh"]
    assert ssh["sourceAddressPrefix"] == "198.51.100.0/24" and ssh["destinationPortRange"] == "22"
    assert rules["deny-vnet-inbound"]["access"] == "Deny"
    opened = {p for r in rules.values() if r["access"] == "Allow"
              for p in r.get("destinationPortRanges", [r.get("destinationPortRange")])}
    assert "8001" not in opened  # the Admin API is reached through SSH only
    nics = {r["name"]: r["properties"]["ipConfigurations"][0]["properties"]
            for r in stored(arm, "networkInterfaces")}
    assert {n: (c["privateIPAllocationMethod"], c["privateIPAddress"]) for n, c in nics.items()} \
        == {"vm-kong-nic": ("Static", "10.20.1.4"), "vm-logs-nic": ("Static", "10.20.1.5"),
            "vm-monitoring-nic": ("Static", "10.20.1.6")}
    assert sorted(h.private_address or "" for h in report.hosts) == [
        "10.20.1.4", "10.20.1.5", "10.20.1.6"]


def test_a_nic_without_its_static_address_is_reported_as_drift(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    provisioner(tmp_path, make_clients()).provision()
    nic = next(r for r in stored(arm, "networkInterfaces") if r["name"] == "vm-logs-nic")
    ipc = nic["properties"]["ipConfigurations"][0]["properties"]
    ipc.update(privateIPAllocationMethod="Dynamic", privateIPAddress="10.20.1.9")  # an old NIC
    report = provisioner(tmp_path, make_clients()).provision()
    assert any("vm-logs-nic" in d and "10.20.1.9 (Dynamic) != 10.20.1.5 (Static)" in d
               for d in report.drift), report.drift


def test_second_run_reuses_everything_and_sends_no_writes(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    provisioner(tmp_path, make_clients()).provision()
    writes_before = sum(1 for c in arm.state.calls if c.method in ("PUT", "POST", "DELETE"))
    report = provisioner(tmp_path, make_clients()).provision()
    writes_after = sum(1 for c in arm.state.calls if c.method in ("PUT", "POST", "DELETE"))
    assert report.created == [] and report.drift == []
    assert len(report.unchanged) == 13 and not report.changed
    assert writes_after == writes_before
    assert all(h.status == "unchanged" for h in report.hosts)


def test_drift_is_reported_not_rewritten(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    provisioner(tmp_path, make_clients()).provision()
    vm = next(r for r in stored(arm, "virtualMachines") if r["name"] == "vm-kong")
    vm["properties"]["hardwareProfile"]["vmSize"] = "Standard_D2s_v5"  # resized by hand
    nsg = stored(arm, "networkSecurityGroups")[0]
    nsg["properties"]["securityRules"].append(
        {
            "name": "oops",
            "properties": {
                "priority": 300,
                "direction": "Inbound",
                "access": "Allow",
                "protocol": "Tcp",
                "sourceAddressPrefix": "*",
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": "6379",
            },
        }
    )
    report = provisioner(tmp_path, make_clients()).provision()
    assert any("vm-kong: size Standard_D2s_v5 != Standard_B2s" in d for d in report.drift)
    assert any("extra inbound allow rule oops" in d and "6379" in d for d in report.drift)
    assert vm["properties"]["hardwareProfile"]["vmSize"] == "Standard_D2s_v5"


def test_throttled_requests_are_retried_after_retry_after(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    throttle = {
        "Retry-After": "0",
        "x-ms-ratelimit-remaining-resource": "Microsoft.Compute/HighCostGet30Min;0",
    }
    arm.state.faults += [
        Fault(
            "PUT",
            "virtualMachines/vm-kong",
            429,
            "OperationNotAllowed",
            "The server rejected the request because too many requests have been received "
            "for this subscription.",
            times=2,
            headers=throttle,
            details=[{"code": "TooManyRequests", "target": "HighCostGet30Min"}],
        ),
        Fault(
            "GET",
            "/operations/",
            429,
            "TooManyRequests",
            "throttled",
            times=1,
            headers={"Retry-After": "0"},
        ),
    ]
    report = provisioner(tmp_path, make_clients()).provision()
    assert "virtual machine vm-kong" in report.created
    throttled = [c for c in arm.state.calls if c.status == 429]
    assert len(throttled) == 3 and all(f.times == 0 for f in arm.state.faults)


def test_quota_error_fails_that_vm_and_reports_what_exists_then_resumes(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    arm.state.faults.append(
        Fault(
            "PUT",
            "virtualMachines/vm-logs",
            409,
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved standardBSFamily "
            "Cores quota. Current Limit: 4, Current Usage: 4, Additional Required: 2.",
        )
    )
    with pytest.raises(ProvisionFailed) as info:
        provisioner(tmp_path, make_clients()).provision()
    message = str(info.value)
    assert "vm-logs: virtual machine vm-logs: (OperationNotAllowed)" in message
    assert "Cores quota" in message
    assert sorted(h.vm for h in info.value.report.hosts) == ["vm-kong", "vm-monitoring"]
    assert "vm-logs" in message.split("ready:")[0] and ".." not in message

    report = provisioner(tmp_path, make_clients()).provision()  # quota raised: resume
    assert report.created == ["virtual machine vm-logs"]


def test_sku_not_available_and_async_allocation_failure_name_the_vm(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    arm.state.faults += [
        Fault(
            "PUT",
            "virtualMachines/vm-kong",
            409,
            "SkuNotAvailable",
            "The requested size for resource 'vm-kong' is currently not available in "
            "location 'westeurope'.",
        ),
        Fault(
            "PUT",
            "virtualMachines/vm-monitoring",
            200,
            "AllocationFailed",
            "Allocation failed. We do not have sufficient capacity.",
            asynchronous=True,
        ),
    ]
    with pytest.raises(ProvisionFailed) as info:
        provisioner(tmp_path, make_clients()).provision()
    failed = " ".join(info.value.report.failed)
    assert "vm-kong: virtual machine vm-kong: (SkuNotAvailable)" in failed
    assert "vm-monitoring: virtual machine vm-monitoring: (AllocationFailed)" in failed
    assert [h.vm for h in info.value.report.hosts] == ["vm-logs"]


def test_conflicting_operation_is_a_provider_error(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    arm.state.faults.append(
        Fault(
            "PUT",
            "virtualNetworks/kongstack-vnet",
            409,
            "AnotherOperationInProgress",
            "Another operation on this or dependent resource is in progress.",
        )
    )
    with pytest.raises(
        ProviderError,
        match="virtual network kongstack-vnet: "
        r"\(AnotherOperationInProgress\)",
    ):
        provisioner(tmp_path, make_clients()).provision()
    assert not stored(arm, "virtualMachines")  # nothing further was attempted


def test_a_vm_left_failed_is_repaired_by_the_next_run(
    arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
) -> None:
    arm.state.faults.append(Fault("PUT", "virtualMachines/vm-kong", 200, "AllocationFailed",
                                  "Allocation failed.", asynchronous=True))
    with pytest.raises(ProvisionFailed):
        provisioner(tmp_path, make_clients()).provision()
    vm = next(r for r in stored(arm, "virtualMachines") if r["name"] == "vm-kong")
    assert vm["properties"]["provisioningState"] == "Failed"
    report = provisioner(tmp_path, make_clients()).provision()
    assert report.created == ["virtual machine vm-kong"]  # re-PUT of the failed VM only
    again = next(r for r in stored(arm, "virtualMachines") if r["name"] == "vm-kong")
    assert again["properties"]["provisioningState"] == "Succeeded"

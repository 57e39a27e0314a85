"""Reconcile the topology's Azure resources: read what exists, create only what is missing.

Order: resource group → NSG → VNet → subnet, then for every VM *in parallel*: public IP →
NIC → VM (cloud-init + SSH public key) → addresses → host key pinned over ARM Run Command.
Existing resources are reused; differences from the desired state are reported as drift,
never silently rewritten (a VM resize or an NSG change is an operator's decision).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kongstack.core.errors import ProviderError
from kongstack.core.extras import requires_extra
from kongstack.core.topology import VM, Host, Topology
from tasks.providers.azure import plan
from tasks.providers.azure.clients import AzureClients
from tasks.providers.azure.cloud_init import render_cloud_init
from tasks.providers.azure.drift import nic_drift, nsg_drift, pip_drift, tag_drift, vm_drift

with requires_extra("azure", "the Azure provider"):
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.mgmt.compute.models import VirtualMachine
    from azure.mgmt.network.models import (
        NetworkInterface,
        NetworkSecurityGroup,
        PublicIPAddress,
        Subnet,
        VirtualNetwork,
    )

LRO_TIMEOUT_S = 1800.0


@dataclass
class ProvisionReport:
    hosts: list[Host] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, bucket: str, item: str) -> None:
        with self._lock:
            getattr(self, bucket).append(item)

    @property
    def changed(self) -> bool:
        return bool(self.created)


def describe_error(exc: HttpResponseError) -> str:
    """``(Code) message`` from an ARM error, without request details."""
    code = getattr(exc.error, "code", None) if exc.error else None
    message = getattr(exc.error, "message", None) if exc.error else None
    return f"({code or exc.status_code}) {message or exc.reason}"


class AzureProvisioner:
    def __init__(
        self,
        *,
        topology: Topology,
        clients: AzureClients,
        ssh_public_key: str,
        known_hosts: Path,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.topo = topology
        self.az = clients
        self.rg = topology.azure.resource_group
        self.ssh_public_key = ssh_public_key
        self.known_hosts = known_hosts
        self.log = logger or logging.getLogger(__name__)
        self.report = ProvisionReport()
        self._known_hosts_lock = threading.Lock()

    # -- generic reconcile step -------------------------------------------------------------
    def _ensure(
        self,
        what: str,
        get: Callable[[], Any],
        create: Callable[[], Any],
        drift: Callable[[Any], list[str]],
    ) -> Any:
        try:
            existing = get()
        except ResourceNotFoundError:
            existing = None
        except HttpResponseError as exc:
            raise ProviderError(f"{what}: read failed: {describe_error(exc)}") from None
        state = getattr(existing, "provisioning_state", "Succeeded") if existing else None
        if existing is not None and state not in ("Failed", "Canceled"):
            problems = drift(existing)
            for p in problems:
                self.report.add("drift", f"{what}: {p}")
                self.log.warning("drift: %s: %s", what, p)
            if not problems:
                self.report.add("unchanged", what)
            return existing
        self.log.info("%s %s", "repairing" if existing is not None else "creating", what)
        try:
            result = create()
            if hasattr(result, "result"):  # an LROPoller
                poller = result
                result = poller.result(timeout=LRO_TIMEOUT_S)
                if not poller.done():
                    raise ProviderError(f"{what}: not finished after {LRO_TIMEOUT_S:.0f}s")
        except HttpResponseError as exc:
            raise ProviderError(f"{what}: {describe_error(exc)}") from None
        self.report.add("created", what)
        return result

    # -- shared network ---------------------------------------------------------------------
    def ensure_shared(self) -> tuple[str, str]:
        """Resource group, NSG, VNet and subnet; returns (subnet id, nsg id)."""
        topo, rg, net = self.topo, self.rg, self.az.network
        rg_label, nsg_label, vnet_label, subnet_label = plan.shared_labels(topo)
        self._ensure(
            rg_label,
            lambda: self.az.resources.resource_groups.get(rg),
            lambda: self.az.resources.resource_groups.create_or_update(
                rg, {"location": topo.azure.location, "tags": topo.owner_tags()}
            ),
            lambda g: tag_drift(topo, g.tags),
        )
        nsg_name = plan.nsg_name(topo)
        nsg = self._ensure(
            nsg_label,
            lambda: net.network_security_groups.get(rg, nsg_name),
            lambda: net.network_security_groups.begin_create_or_update(
                rg, nsg_name, NetworkSecurityGroup(plan.nsg_body(topo))
            ),
            lambda n: tag_drift(topo, n.tags) + nsg_drift(plan.nsg_rules(topo), n),
        )
        vnet = plan.vnet_name(topo)
        self._ensure(
            vnet_label,
            lambda: net.virtual_networks.get(rg, vnet),
            lambda: net.virtual_networks.begin_create_or_update(
                rg, vnet, VirtualNetwork(plan.vnet_body(topo))
            ),
            lambda v: tag_drift(topo, v.tags),
        )
        sub = plan.subnet_name(topo)
        subnet = self._ensure(
            subnet_label,
            lambda: net.subnets.get(rg, vnet, sub),
            lambda: net.subnets.begin_create_or_update(
                rg, vnet, sub, Subnet(plan.subnet_body(topo, nsg.id))
            ),
            lambda s: (
                []
                if s.address_prefix == topo.azure.subnet_cidr
                else [f"addressPrefix {s.address_prefix} != {topo.azure.subnet_cidr}"]
            ),
        )
        return str(subnet.id), str(nsg.id)

    # -- one VM -----------------------------------------------------------------------------
    def ensure_vm(self, vm: VM, subnet_id: str, nsg_id: str) -> Host:
        started = time.monotonic()
        topo, rg, net = self.topo, self.rg, self.az.network
        names = plan.names_for(vm)
        pip_label, nic_label, vm_label = plan.vm_labels(vm)
        pip = self._ensure(
            pip_label,
            lambda: net.public_ip_addresses.get(rg, names.pip),
            lambda: net.public_ip_addresses.begin_create_or_update(
                rg, names.pip, PublicIPAddress(plan.pip_body(topo, vm))
            ),
            lambda p: tag_drift(topo, p.tags) + pip_drift(p),
        )
        nic = self._ensure(
            nic_label,
            lambda: net.network_interfaces.get(rg, names.nic),
            lambda: net.network_interfaces.begin_create_or_update(
                rg,
                names.nic,
                NetworkInterface(
                    plan.nic_body(topo, vm, subnet_id=subnet_id, pip_id=pip.id, nsg_id=nsg_id)
                ),
            ),
            lambda n: tag_drift(topo, n.tags)
            + nic_drift(n, plan.private_addresses(topo)[vm.name]),
        )
        cloud_init = render_cloud_init(topo, vm)
        machine = self._ensure(
            vm_label,
            lambda: self.az.compute.virtual_machines.get(rg, names.vm),
            lambda: self.az.compute.virtual_machines.begin_create_or_update(
                rg,
                names.vm,
                VirtualMachine(
                    plan.vm_body(
                        topo,
                        vm,
                        nic_id=nic.id,
                        ssh_public_key=self.ssh_public_key,
                        cloud_init=cloud_init,
                    )
                ),
            ),
            lambda m: tag_drift(topo, m.tags) + vm_drift(vm, m),
        )
        # Addresses are read back: a Static IP is assigned once the PIP exists.
        nic = net.network_interfaces.get(rg, names.nic)
        ipc = nic.ip_configurations[0]
        public_ip = net.public_ip_addresses.get(rg, names.pip).ip_address
        if not public_ip:
            raise ProviderError(f"public IP {names.pip}: no address assigned")
        self.pin_host_key(names.vm, public_ip)
        self.report.seconds[vm.name] = round(time.monotonic() - started, 3)
        status = "created" if any(names.vm in c for c in self.report.created) else "unchanged"
        return Host(
            vm=vm.name,
            roles=tuple(vm.roles),
            address=public_ip,
            private_address=ipc.private_ip_address,
            ssh_user=machine.os_profile.admin_username if machine.os_profile else vm.admin_username,
            status=status,
        )

    def pin_host_key(self, vm_name: str, address: str) -> None:
        """Record the VM's SSH host key, read over ARM (authenticated TLS), in known_hosts.

        The installer then connects with RejectPolicy: an unknown or changed key is refused.
        """
        with self._known_hosts_lock:
            if self.known_hosts.exists() and any(
                line.split(" ", 1)[0] == address
                for line in self.known_hosts.read_text().splitlines()
            ):
                return
        poller = self.az.compute.virtual_machines.begin_run_command(
            self.rg,
            vm_name,
            {"commandId": "RunShellScript", "script": ["cat /etc/ssh/ssh_host_ed25519_key.pub"]},
        )
        result = poller.result(timeout=LRO_TIMEOUT_S)
        message = result.value[0].message if result and result.value else ""
        key = next((ln.strip() for ln in (message or "").splitlines() if ln.startswith("ssh-")), "")
        if len(key.split()) < 2:
            raise ProviderError(f"virtual machine {vm_name}: could not read its SSH host key")
        key_type, key_b64 = key.split()[:2]
        with self._known_hosts_lock:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self.known_hosts.open("a") as fh:
                fh.write(f"{address} {key_type} {key_b64}\n")

    # -- the whole topology -------------------------------------------------------------------
    def provision(self) -> ProvisionReport:
        started = time.monotonic()
        subnet_id, nsg_id = self.ensure_shared()
        self.report.seconds["network"] = round(time.monotonic() - started, 3)
        errors: list[str] = []
        workers = min(self.topo.azure.max_parallel, len(self.topo.vms))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="azure-vm") as pool:
            futures = {
                vm.name: pool.submit(self.ensure_vm, vm, subnet_id, nsg_id) for vm in self.topo.vms
            }
            for name, future in futures.items():
                try:
                    self.report.hosts.append(future.result())
                except (ProviderError, HttpResponseError) as exc:
                    msg = describe_error(exc) if isinstance(exc, HttpResponseError) else str(exc)
                    errors.append(f"{name}: {msg}")
                    self.report.add("failed", f"{name}: {msg}")
        self.report.seconds["total"] = round(time.monotonic() - started, 3)
        if errors:
            raise ProvisionFailed(self.report, errors)
        return self.report


class ProvisionFailed(ProviderError):
    """Some VMs failed; ``report`` says what exists (hosts that did come up, created resources)."""

    def __init__(self, report: ProvisionReport, errors: list[str]) -> None:
        existing = ", ".join(h.vm for h in report.hosts) or "none"
        super().__init__(
            "provisioning failed for "
            + "; ".join(e.rstrip(".") for e in errors)
            + f"; VMs that exist and are ready: {existing}"
        )
        self.report = report

"""Backend VMs the autoscaler adds when every host of a pool is full (pool.growth, "azure").

Single VMs, not a VM Scale Set (docs/scaling-out.md says why): an added VM is the
deploy-stack's stock API VM again, under another name, made by the same plan functions
(tasks/providers/azure/plan.py: public IP, NIC, VM bodies, its size, image, admin user, disk
and cloud-init) with the same owner tags, plus ``kongstack.added-by: autoscaler`` and
``kongstack.pool: <stack>``. Only VMs carrying both are ever removed here.

Nothing waits for ARM. Each tick ``advance`` reads what exists and starts the next missing
step with ``polling=False`` (the operation runs on in Azure); a later tick finds it done:

    public IP -> NIC (static private address in the subnet's upper half) -> VM
      -> host key read over ARM Run Command (its status URL kept in the record's memo),
         pinned in known_hosts -> install over SSH, started detached and polled
         (deployments/install/pool-host.sh: the engine and the stock API image)
      -> ready: ssh://<admin>@<public IP> joins the pool, instances advertised on the
         private address (the gateway reaches them inside the VNet)

``remove`` deletes VM, NIC and public IP in that order, one started per tick, and the host's
known_hosts line once all are gone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from kongstack.core.errors import ConfigError, ProviderError
from kongstack.core.extras import requires_extra
from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import VM, Role, Topology, load_topology
from tasks.instances.added import (
    ADDED_BY,
    ADDED_BY_TAG,
    POOL_TAG,
    AddedHostRecord,
    HostGrowthConfig,
    Progress,
)
from tasks.instances.hosts import HostConfig
from tasks.providers.azure import plan
from tasks.providers.azure.clients import AzureClients
from tasks.providers.azure.cloud_init import render_cloud_init
from tasks.providers.azure.nsg import added_range
from tasks.providers.azure.provision import describe_error

with requires_extra("azure", "the Azure provider"):
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.core.rest import HttpRequest
    from azure.mgmt.compute.models import VirtualMachine
    from azure.mgmt.network.models import NetworkInterface, PublicIPAddress

POOL_HOST_SCRIPT = REPO_ROOT / "deployments" / "install" / "pool-host.sh"
COMPUTE_API_VERSION = "2026-04-01"
"""The api-version azure-mgmt-compute 39 sends (its run-command request builder's)."""
TRANSIENT = ("Creating", "Updating", "Deleting")
FAILED = ("Failed", "Canceled")
InstallState = Literal["absent", "running", "done", "failed"]


class Installer(Protocol):
    """Runs the pool-host install on a new VM without waiting for it."""

    def state(self, address: str, user: str) -> tuple[InstallState, str]: ...

    def start(self, address: str, user: str) -> None: ...


def added_address(topo: Topology, name: str) -> str:
    """The static private address of added host ``<prefix>-N``: in the subnet's upper half
    (``nsg.added_range``, which the NSG opens when ``azure.added_hosts`` > 0), from its
    fourth address on (.132 for ``added-1`` in a /24)."""
    upper = ipaddress.ip_network(added_range(topo))
    match = re.search(r"-(\d+)$", name)
    if match is None:
        raise ConfigError(f"added host {name!r}: its name must end in -<number>")
    offset = 3 + int(match.group(1))
    if offset >= upper.num_addresses - 1:
        raise ConfigError(f"azure.subnet_cidr {topo.azure.subnet_cidr}: no room for added "
                          f"host {name}")
    return str(upper.network_address + offset)


@dataclass
class AzureHostFactory:
    """HostFactory for Azure (tasks/instances/added.py); see the module docstring."""

    config: HostGrowthConfig
    stack: str
    topo: Topology
    clients: AzureClients
    ssh_public_key: str
    known_hosts: Path
    installer: Installer

    def __post_init__(self) -> None:
        template = self.topo.vm_with(Role.STOCK_API)
        if template is None:
            raise ConfigError(f"pool.growth: the topology {self.topo.name} has no stock-api VM "
                              "to copy for added hosts")
        if self.config.max_added_hosts > self.topo.azure.added_hosts:
            raise ConfigError(
                f"pool.growth.max_added_hosts: {self.config.max_added_hosts} exceeds "
                f"azure.added_hosts ({self.topo.azure.added_hosts}) of stack {self.topo.name}: "
                "its NSG opens the added hosts' range only for that many (set it and run "
                "deploy-stack)")
        api = template.service(Role.STOCK_API)
        if api is not None and self.config.capacity > api.count:
            raise ConfigError(
                f"pool.growth.capacity: {self.config.capacity} exceeds the stock API's count "
                f"({api.count}) on {template.name}: the NSG opens only its {api.count} ports "
                "on added hosts")
        self.template = template
        self.rg = self.topo.azure.resource_group

    # -- names, bodies ---------------------------------------------------------------------

    def vm_for(self, name: str) -> VM:
        """The stock API VM's plan under ``name``, with the stock API as its only role."""
        api = self.template.service(Role.STOCK_API)
        return self.template.model_copy(update={"name": name, "services": [api]})

    def tags(self, vm: VM) -> dict[str, str]:
        return {**self.topo.owner_tags(), "kongstack.vm": vm.name,
                "kongstack.roles": ",".join(vm.roles), ADDED_BY_TAG: ADDED_BY,
                POOL_TAG: self.stack}

    def _ours(self, resource: Any) -> bool:
        tags = getattr(resource, "tags", None) or {}
        return tags.get(ADDED_BY_TAG) == ADDED_BY and tags.get(POOL_TAG) == self.stack

    # -- HostFactory -------------------------------------------------------------------------

    def existing(self) -> list[str]:
        return sorted(str(vm.name) for vm in self.clients.compute.virtual_machines.list(self.rg)
                      if self._ours(vm))

    def close(self) -> None:
        self.clients.close()

    def advance(self, record: AddedHostRecord) -> Progress:
        try:
            return self._advance(record)
        except HttpResponseError as exc:
            return Progress("failed", describe_error(exc))

    def remove(self, record: AddedHostRecord) -> Progress:
        try:
            return self._remove(record)
        except HttpResponseError as exc:  # retried next tick (the record stays "removing")
            return Progress("removing", f"delete: {describe_error(exc)}")

    # -- making one -------------------------------------------------------------------------

    def _advance(self, record: AddedHostRecord) -> Progress:
        vm = self.vm_for(record.name)
        names = plan.names_for(vm)
        net, compute, rg = self.clients.network, self.clients.compute, self.rg
        try:
            nsg = net.network_security_groups.get(rg, plan.nsg_name(self.topo))
            subnet = net.subnets.get(rg, plan.vnet_name(self.topo), plan.subnet_name(self.topo))
        except ResourceNotFoundError:
            return Progress("failed", f"the network of stack {self.topo.name} is missing "
                            "(run deploy-stack first)")
        tags = self.tags(vm)
        pip = self._step(f"public IP {names.pip}", lambda: net.public_ip_addresses.get(
            rg, names.pip), lambda: net.public_ip_addresses.begin_create_or_update(
            rg, names.pip, PublicIPAddress({**plan.pip_body(self.topo, vm), "tags": tags}),
            polling=False))
        if isinstance(pip, Progress):
            return pip
        nic_body = plan.nic_body(self.topo, vm, subnet_id=str(subnet.id), pip_id=str(pip.id),
                                 nsg_id=str(nsg.id),
                                 private_address=added_address(self.topo, vm.name))
        nic = self._step(f"network interface {names.nic}", lambda: net.network_interfaces.get(
            rg, names.nic), lambda: net.network_interfaces.begin_create_or_update(
            rg, names.nic, NetworkInterface({**nic_body, "tags": tags}), polling=False))
        if isinstance(nic, Progress):
            return nic
        body = plan.vm_body(self.topo, vm, nic_id=str(nic.id),
                            ssh_public_key=self.ssh_public_key,
                            cloud_init=render_cloud_init(self.topo, vm))
        machine = self._step(f"virtual machine {names.vm}", lambda: compute.virtual_machines.get(
            rg, names.vm), lambda: compute.virtual_machines.begin_create_or_update(
            rg, names.vm, VirtualMachine({**body, "tags": tags}), polling=False))
        if isinstance(machine, Progress):
            return machine
        if not self._ours(machine):
            return Progress("failed", f"virtual machine {names.vm} exists without the "
                            f"{ADDED_BY_TAG} tag: not the autoscaler's, left alone")
        public_ip = net.public_ip_addresses.get(rg, names.pip).ip_address
        private_ip = nic.ip_configurations[0].private_ip_address
        if not public_ip:
            return Progress("pending", f"public IP {names.pip}: no address yet")
        pinned = self._pin_host_key(record, names.vm, public_ip)
        if pinned is not None:
            return pinned
        user = vm.admin_username
        state, detail = self.installer.state(public_ip, user)
        if state == "absent":
            self.installer.start(public_ip, user)
            return Progress("pending", f"installing the engine on {names.vm} ({public_ip})")
        if state == "running":
            return Progress("pending", f"installing the engine on {names.vm}: {detail}")
        if state == "failed":
            return Progress("failed", f"install on {names.vm} failed: {detail}")
        return Progress("ready", f"{names.vm} at {public_ip} ({private_ip}) installed",
                        host=HostConfig(
                            name=record.name, docker_host=f"ssh://{user}@{public_ip}",
                            capacity=self.config.capacity, advertise_host=private_ip,
                            ssh_key_file=self.config.ssh_key_file,
                            # No key file: the engine is reached with the key the installer
                            # used, the topology's Secret block (read at each connect).
                            ssh_key_secret=(None if self.config.ssh_key_file else
                                            self.topo.ssh.private_key_secret),
                            known_hosts_file=self.known_hosts,
                            timeout_seconds=self.config.timeout_seconds, added=True))

    def _step(self, what: str, get: Callable[[], Any], create: Callable[[], Any]
              ) -> Any | Progress:
        """The resource if it is there and done; else start making it (or report it under
        way, or failed)."""
        try:
            existing = get()
        except ResourceNotFoundError:
            existing = None
        state = getattr(existing, "provisioning_state", None) if existing else None
        if existing is not None and state not in (*TRANSIENT, *FAILED):
            return existing
        if state in TRANSIENT:
            return Progress("pending", f"{what}: {state.lower()}")
        try:
            create()  # polling=False: the initial PUT only; a later tick reads the outcome
        except HttpResponseError as exc:
            return Progress("failed", f"{what}: {describe_error(exc)}")
        return Progress("pending", f"{what}: {'repairing' if state in FAILED else 'creating'}")

    def _pin_host_key(self, record: AddedHostRecord, vm_name: str, address: str
                      ) -> Progress | None:
        """None once the VM's host key is in known_hosts; else start or follow the ARM Run
        Command that reads it (its status and result URLs kept in the record's memo)."""
        if self._pinned(address):
            return None
        status_url = record.memo.get("hostkey_status")
        if not status_url:
            # The request begin_run_command sends, sent without its poller: the operation
            # runs on in Azure and a later tick follows its status URL.
            path = (f"/subscriptions/{self.clients.subscription_id}/resourceGroups/{self.rg}"
                    f"/providers/Microsoft.Compute/virtualMachines/{vm_name}/runCommand")
            response = self.clients.compute.send_request(HttpRequest(
                "POST", path, params={"api-version": COMPUTE_API_VERSION},
                json={"commandId": "RunShellScript",
                      "script": ["cat /etc/ssh/ssh_host_ed25519_key.pub"]}))
            response.raise_for_status()
            memo = {"hostkey_status": response.headers.get("Azure-AsyncOperation", ""),
                    "hostkey_result": response.headers.get("Location", "")}
            if not memo["hostkey_status"]:
                raise ProviderError(f"{vm_name}: Run Command gave no operation to follow")
            return Progress("pending", f"reading the host key of {vm_name} over ARM", memo=memo)
        status = self._get_json(status_url)
        phase = str(status.get("status", "")).lower()
        if phase in ("failed", "canceled"):
            error = status.get("error") or {}
            return Progress("pending", f"host key of {vm_name}: run command {phase} "
                            f"({error.get('code')}); trying again",
                            memo={"hostkey_status": ""})
        if phase != "succeeded":
            return Progress("pending", f"reading the host key of {vm_name} over ARM ({phase})")
        result = self._get_json(record.memo.get("hostkey_result") or status_url)
        message = "".join(str(v.get("message", "")) for v in result.get("value", []))
        key = next((ln.strip() for ln in message.splitlines() if ln.startswith("ssh-")), "")
        if len(key.split()) < 2:
            return Progress("failed", f"{vm_name}: its SSH host key could not be read over ARM")
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as fh:
            fh.write(f"{address} {' '.join(key.split()[:2])}\n")
        return None

    def _get_json(self, url: str) -> dict[str, Any]:
        response = self.clients.compute.send_request(HttpRequest("GET", url))
        response.raise_for_status()
        body = response.text()
        return json.loads(body) if body else {}

    def _pinned(self, address: str) -> bool:
        return self.known_hosts.exists() and any(
            line.split(" ", 1)[0] == address for line in self.known_hosts.read_text().splitlines())

    # -- removing one -----------------------------------------------------------------------

    def _remove(self, record: AddedHostRecord) -> Progress:
        vm = self.vm_for(record.name)
        names = plan.names_for(vm)
        net, compute, rg = self.clients.network, self.clients.compute, self.rg
        steps: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
            (f"virtual machine {names.vm}", lambda: compute.virtual_machines.get(rg, names.vm),
             lambda: compute.virtual_machines.begin_delete(rg, names.vm, polling=False)),
            (f"network interface {names.nic}", lambda: net.network_interfaces.get(rg, names.nic),
             lambda: net.network_interfaces.begin_delete(rg, names.nic, polling=False)),
            (f"public IP {names.pip}", lambda: net.public_ip_addresses.get(rg, names.pip),
             lambda: net.public_ip_addresses.begin_delete(rg, names.pip, polling=False)),
        ]
        address = None
        for what, get, delete in steps:
            try:
                found = get()
            except ResourceNotFoundError:
                continue
            if not self._ours(found):
                return Progress("failed", f"{what} lacks the {ADDED_BY_TAG} tag of pool "
                                f"{self.stack}: not the autoscaler's, left alone")
            address = address or getattr(found, "ip_address", None)
            if getattr(found, "provisioning_state", None) != "Deleting":
                delete()
            return Progress("removing", f"{what}: deleting")
        host = record.host_config()
        self._unpin(host.docker_host.rsplit("@", 1)[-1] if host else address)
        return Progress("gone", f"{names.vm}, its NIC and public IP deleted")

    def _unpin(self, address: str | None) -> None:
        if not address or not self.known_hosts.exists():
            return
        lines = self.known_hosts.read_text().splitlines()
        kept = [ln for ln in lines if ln.split(" ", 1)[0] != address]
        if kept != lines:
            self.known_hosts.write_text("".join(f"{ln}\n" for ln in kept))


# -- the SSH installer ---------------------------------------------------------------------


@dataclass
class SshInstaller:
    """Starts deployments/install/pool-host.sh detached on the VM and reads its outcome later.

    Files in the admin user's ~/.kongstack: pool-host.sh, .log, .rc (exit code, written when
    it ends). A start re-runs the idempotent script; an unreadable state is "absent"."""

    private_key: str | None
    key_file: Path | None
    known_hosts: Path
    env: dict[str, str]
    script: Path = POOL_HOST_SCRIPT
    connect_timeout: float = 15.0
    state_dir: str = "~/.kongstack"
    """Where on the host the script, its log and exit code are kept."""

    def _run(self, address: str, user: str, command: str, stdin: bytes = b"") -> str:
        from tasks.providers.ssh import SSHTarget, connect

        target = SSHTarget(host=address, username=user, private_key=self.private_key,
                           key_path=self.key_file, known_hosts=self.known_hosts,
                           connect_timeout=self.connect_timeout)
        client = connect(target)
        try:
            stdin_f, stdout, _ = client.exec_command(command, timeout=60)
            if stdin:
                stdin_f.write(stdin)
            stdin_f.channel.shutdown_write()
            out = stdout.read().decode(errors="replace")
            stdout.channel.recv_exit_status()
            return out
        finally:
            client.close()

    def state(self, address: str, user: str) -> tuple[InstallState, str]:
        out = self._run(address, user, f"d={self.state_dir}; if [ -f $d/pool-host.rc ]; then echo "
                        "rc=$(cat $d/pool-host.rc); tail -n 5 $d/pool-host.log; elif [ -f "
                        "$d/pool-host.started ]; then echo running; tail -n 1 $d/pool-host.log;"
                        " else echo absent; fi")
        first, _, rest = out.partition("\n")
        if first.startswith("rc="):
            return ("done", rest.strip()) if first == "rc=0" else ("failed", rest.strip())
        if first == "running":
            return "running", rest.strip()
        return "absent", ""

    def start(self, address: str, user: str) -> None:
        sudo = "" if user == "root" else "sudo -n "
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        self._run(address, user, f"d={self.state_dir}; mkdir -p $d && cat > $d/pool-host.sh && "
                  "rm -f $d/pool-host.rc && touch $d/pool-host.started && (setsid nohup sh -c "
                  f"'{sudo}env {exports} bash '$d'/pool-host.sh > '$d'/pool-host.log 2>&1; "
                  "echo $? > '$d'/pool-host.rc' </dev/null >/dev/null 2>&1 &)",
                  stdin=self.script.read_bytes())


def azure_host_factory(config: HostGrowthConfig, stack: str) -> AzureHostFactory:
    """The factory from the pool's growth config: the stack file's topology, its ARM
    clients (tasks.providers.azure.provider.client_factory) and SSH keys (Secret blocks)."""
    from tasks.providers import secrets
    from tasks.providers.azure import provider
    from tasks.providers.azure.clients import subscription_from
    from tasks.providers.azure.remote import IMAGE_ENV

    topo = load_topology(config.stack_file) if config.stack_file else load_topology()
    if topo.provider != "azure":
        raise ConfigError(f"pool.growth.stack_file: the topology {topo.name} is not an azure "
                          "one (provider: azure)")
    public_key = secrets.read_secret(topo.ssh.public_key_secret, "ssh.public_key_secret")
    private_key = (None if config.ssh_key_file else
                   secrets.read_secret(topo.ssh.private_key_secret, "ssh.private_key_secret"))
    known_hosts = config.known_hosts_file or provider.known_hosts_path(topo)
    image = os.environ.get(IMAGE_ENV, "")
    if not image:
        raise ConfigError(f"{IMAGE_ENV}: not set (the registry reference of the stock API "
                          "image added hosts pull)")
    installer = SshInstaller(private_key=private_key, key_file=config.ssh_key_file,
                             known_hosts=known_hosts, env={IMAGE_ENV: image},
                             connect_timeout=topo.ssh.connect_timeout_s)
    clients = provider.client_factory(subscription_from(topo.azure.subscription_id))
    return AzureHostFactory(config, stack, topo, clients, public_key, known_hosts, installer)

"""The Azure provider behind the ``Provider`` protocol.

    provision  ARM: resource group, NSG, VNet, subnet, then per VM a public IP, NIC and VM
    install    over SSH per host (tasks.providers.azure.remote), then the log store
    register   Kong on the kong VM gets the one registration state (tasks.gateway.desired),
               through an SSH tunnel to its loopback-only Admin API
    verify     every admin endpoint's health, then a request through Kong's proxy

The plan is built from the same objects: the provisioner's resource list, each host's
install steps (rendered for the VMs by name: their addresses come with provisioning), the
registration state with the instances as targets, and the health checks. The Azure SDK is
imported only when a step runs, so a dry run needs no ``[azure]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from kongstack.core.errors import ProviderError
from kongstack.core.settings import load_settings
from kongstack.core.topology import Host, Topology
from tasks.gateway.desired import registration_state
from tasks.gateway.kong.diff import CurrentState
from tasks.gateway.kong.diff import plan as gateway_plan
from tasks.providers import secrets
from tasks.providers.azure import plan as arm_plan
from tasks.providers.azure.plan import HEALTH, instance_targets, log_endpoint
from tasks.providers.azure.role_files import host_steps, render_bundle
from tasks.providers.consumers import deploy_consumers, planned_consumers
from tasks.providers.protocol import (
    DeployPlan,
    Installed,
    PlannedStep,
    Provisioned,
    Registered,
    Verified,
)
from tasks.runlog import run_logger

LogFn = Callable[[str], None]


def _connect(subscription_id: str) -> Any:
    from tasks.providers.azure.clients import connect

    return connect(subscription_id)


client_factory: Callable[[str], Any] = _connect
"""How ARM clients are built (DefaultAzureCredential against management.azure.com); the
deploy and the cleanup flow use it, tests point it at the local ARM double."""


def known_hosts_path(topo: Topology) -> Path:
    return topo.ssh.known_hosts or load_settings().home / "deploy" / topo.name / "known_hosts"


@dataclass
class AzureProvider:
    topo: Topology
    log: LogFn = print

    def plan(self) -> DeployPlan:
        topo = self.topo
        # The VMs' addresses come with provisioning: the plan names them by VM.
        hosts = [Host(vm=vm.name, roles=tuple(vm.roles), address=vm.name,
                      private_address=vm.name) for vm in topo.vms]
        bundle = render_bundle(topo, hosts, instance_targets(topo, hosts), resolve_secrets=False)
        install = [f"{host.vm}: {step.script}.sh"
                   + (f" with {', '.join(f.path for f in step.files)}" if step.files else "")
                   for host in hosts for step in host_steps(topo, host, hosts, bundle)]
        # Secrets are named, not read: the dry run needs no Secret block.
        state = registration_state(topo.name, consumers=planned_consumers(topo),
                                   api_key="(api_key_secret)" if topo.api_key_secret else None,
                                   targets=instance_targets(topo, hosts),
                                   log_endpoint=log_endpoint(topo, hosts),
                                   upstream_secret=SecretStr("(instance_secret)"),
                                   log_token=SecretStr("(log_token_secret)"))
        rules = [f"NSG rule {r.name}: {r.describe()}" for r in arm_plan.nsg_rules(topo)]
        checks = [f"{svc.role.value}@{vm.name}: GET {HEALTH[svc.role][1]}"
                  for vm in topo.vms for svc in vm.services if svc.role in HEALTH]
        return DeployPlan(stack=topo.name, provider="azure", steps=(
            PlannedStep(name="provision", actions=(
                *(f"ensure {r}" for r in arm_plan.desired_resources(topo)), *rules)),
            PlannedStep(name="install", actions=(
                *install, "log store: index template, ILM policy, ingest pipeline")),
            PlannedStep(name="register", actions=(
                *(f"kong (Admin API through SSH): ensure {op.kind} {op.name}"
                  for op in gateway_plan(CurrentState(), state)),
                "consumers: a key created in each Secret block that has none ("
                + ", ".join(topo.key_secret(c) for c in topo.consumers) + ")")),
            PlannedStep(name="verify", actions=(
                *checks, "GET /api/stocks through Kong's proxy with a read-only consumer's "
            "key")),
        ))

    def provision(self) -> Provisioned:
        from tasks.providers.azure.clients import subscription_from
        from tasks.providers.azure.provision import AzureProvisioner

        topo = self.topo
        public_key = secrets.read_secret(topo.ssh.public_key_secret, "ssh.public_key_secret")
        clients = client_factory(subscription_from(topo.azure.subscription_id))
        try:
            provisioner = AzureProvisioner(topology=topo, clients=clients,
                                           ssh_public_key=public_key,
                                           known_hosts=known_hosts_path(topo),
                                           logger=run_logger("kongstack.deploy"))
            error = ""
            try:
                provisioner.provision()
            except ProviderError as exc:  # some VMs failed; the report says what exists
                error = str(exc)
        finally:
            clients.close()
        report = provisioner.report
        self.log(f"azure: {len(report.created)} created, {len(report.unchanged)} unchanged, "
                 f"{len(report.drift)} drift")
        return Provisioned(hosts=tuple(report.hosts), changes=tuple(report.created),
                           notes=tuple(f"drift: {d}" for d in report.drift), error=error)

    def install(self, provisioned: Provisioned) -> Installed:
        from tasks.providers.azure.remote import install_hosts, install_log_store

        topo, hosts = self.topo, list(provisioned.hosts)
        key = secrets.read_secret(topo.ssh.private_key_secret, "ssh.private_key_secret")
        changes = install_hosts(topo, hosts, private_key=key,
                                known_hosts=known_hosts_path(topo), log=self.log)
        log_store = install_log_store(topo, hosts)
        return Installed(changes=tuple(changes), notes=(log_store,) if log_store else ())

    def register(self, provisioned: Provisioned, installed: Installed) -> Registered:
        from tasks.providers.azure.remote import register_kong

        consumers = deploy_consumers(self.topo, log=self.log)
        key = secrets.read_secret(self.topo.ssh.private_key_secret, "ssh.private_key_secret")
        changes = register_kong(
            self.topo, list(provisioned.hosts), admin_secret_block=self.topo.kong_admin_secret,
            consumers=consumers.configs, api_key=self._older_api_key(), private_key=key,
            known_hosts=known_hosts_path(self.topo))
        return Registered(changes=(*consumers.changes, *changes),
                          notes=tuple(f"warning: {w}" for w in consumers.warnings))

    def verify(self, provisioned: Provisioned, installed: Installed) -> Verified:
        from tasks.providers.azure.remote import verify_remote

        probe_key = deploy_consumers(self.topo, log=self.log).probe_key()
        return verify_remote(self.topo, list(provisioned.hosts), api_key=probe_key)

    def _older_api_key(self) -> str | None:
        """The single key of ``api_key_secret`` (before per-application consumers), if set."""
        if not self.topo.api_key_secret:
            return None
        return secrets.read_secret(self.topo.api_key_secret, "api_key_secret")

"""Prefect tasks for the Azure provider. They take configuration, never live clients."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from kongstack.core.settings import load_settings
from kongstack.core.topology import Topology
from tasks.providers.azure.clients import AzureClients, connect, subscription_from
from tasks.providers.azure.provision import AzureProvisioner, ProvisionReport
from tasks.providers.azure.teardown import execute_teardown, plan_teardown
from tasks.providers.secrets import read_secret

# How clients are built. Production: DefaultAzureCredential against management.azure.com.
# Tests replace this to point the real SDK clients at the local ARM double.
client_factory: Callable[[str], AzureClients] = connect


def known_hosts_path(topo: Topology) -> Path:
    return topo.ssh.known_hosts or load_settings().home / "deploy" / topo.name / "known_hosts"


@task(name="provision-azure", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def provision_azure(topology: Topology) -> ProvisionReport:
    """Create or reuse every Azure resource of ``topology``; VMs are created in parallel."""
    log = get_run_logger()
    public_key = read_secret(topology.ssh.public_key_secret, "ssh.public_key_secret")
    clients = client_factory(subscription_from(topology.azure.subscription_id))
    try:
        provisioner = AzureProvisioner(
            topology=topology,
            clients=clients,
            ssh_public_key=public_key,
            known_hosts=known_hosts_path(topology),
            logger=log,
        )
        report = provisioner.provision()
    finally:
        clients.close()
    log.info(
        "azure: %d created, %d unchanged, %d drift",
        len(report.created),
        len(report.unchanged),
        len(report.drift),
    )
    return report


@task(name="teardown-azure", cache_policy=NO_CACHE)
def teardown_azure(topology: Topology, *, dry_run: bool = False) -> list[str]:
    """Delete the resources tagged ``kongstack.owner=<stack>``; dry run lists them."""
    log = get_run_logger()
    clients = client_factory(subscription_from(topology.azure.subscription_id))
    try:
        rg = topology.azure.resource_group
        teardown = plan_teardown(clients, rg, topology.name)
        planned = [f"{kind} {name}" for kind, name in teardown.resources]
        if teardown.resource_group:
            planned.append(f"resource group {rg} (if empty)")
        for item in teardown.kept:
            log.info("not ours, kept: %s", item)
        if dry_run:
            return planned
        return execute_teardown(clients, rg, topology.name, teardown, log)
    finally:
        clients.close()

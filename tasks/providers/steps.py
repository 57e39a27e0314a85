"""The four deploy steps for each provider, as plain functions with JSON-able outputs.

``run_step(step, topology, carried)`` returns ``{"changes": [...], "notes": [...], "hosts":
[...], "components": [...], "urls": {...}}`` (keys as relevant). ``carried`` holds the
earlier steps' outputs (from this run, or from the markers of an interrupted one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from kongstack.core.procs import port_open
from kongstack.core.settings import LocalSettings
from kongstack.core.topology import Topology
from tasks.providers.report import Component, hosts_from_json, hosts_to_json

Out = dict[str, Any]
LogFn = Callable[[str], None]


def _components(items: list[Component]) -> list[dict[str, Any]]:
    return [asdict(c) for c in items]


def run_step(step: str, topo: Topology, carried: Out, *, settings: LocalSettings,
             log: LogFn) -> Out:
    if topo.provider == "local":
        return _local(step, topo, carried, settings, log)
    return _azure(step, topo, carried, log)


def _local(step: str, topo: Topology, carried: Out, settings: LocalSettings, log: LogFn) -> Out:
    from tasks.providers.local.stack import LocalStack

    stack = LocalStack(topo, settings, log)
    if step == "provision":
        hosts, changes = stack.provision()
        return {"hosts": hosts_to_json(hosts), "changes": changes,
                "notes": [f"{c.name}: {c.detail}" for c in stack.substitutes()]}
    if step == "install":
        comps, changes = stack.install()
        return {"components": _components(comps), "changes": changes}
    components = [Component(**c) for c in carried.get("components", [])]
    if step == "register":
        addresses = [c.url.removeprefix("http://") for c in components if c.role == "stock-api"]
        return {"changes": stack.register(addresses),
                "urls": {"stock API (gateway)": f"{stack.gateway_url()}/api/stocks"}}
    if step == "verify":
        from tasks.providers.local.verify import VerifyFailed, verify_local

        try:
            checked, urls = verify_local(stack, components)
        except VerifyFailed as exc:
            exc.partial = {"components": _components(exc.components), "urls": exc.urls}  # type: ignore[attr-defined]
            raise
        return {"components": _components(checked), "urls": urls}
    raise ValueError(f"unknown step {step!r}")


def _azure(step: str, topo: Topology, carried: Out, log: LogFn) -> Out:
    from tasks.providers.azure.remote import (
        install_hosts,
        install_log_store,
        register_kong,
        verify_remote,
    )
    from tasks.providers.azure.tasks import known_hosts_path, provision_azure
    from tasks.providers.secrets import read_secret

    if step == "provision":
        from tasks.providers.azure.provision import ProvisionFailed

        try:
            report = provision_azure.fn(topo)
        except ProvisionFailed as exc:
            exc.partial = {"hosts": hosts_to_json(exc.report.hosts),  # type: ignore[attr-defined]
                           "changes": exc.report.created, "notes": exc.report.drift}
            raise
        return {"hosts": hosts_to_json(report.hosts), "changes": report.created,
                "notes": [f"drift: {d}" for d in report.drift]}
    hosts = hosts_from_json(carried.get("hosts", []))
    if step == "install":
        key = read_secret(topo.ssh.private_key_secret, "ssh.private_key_secret")
        changes = install_hosts(topo, hosts, private_key=key,
                                known_hosts=known_hosts_path(topo), log=log)
        log_store = install_log_store(topo, hosts)
        return {"changes": changes, "notes": [log_store] if log_store else []}
    if step == "register":
        api_key = read_secret(topo.api_key_secret, "api_key_secret")
        return {"changes": register_kong(topo, hosts, admin_secret_block=topo.kong_admin_secret,
                                         api_key=api_key)}
    if step == "verify":
        api_key = read_secret(topo.api_key_secret, "api_key_secret")
        comps, urls = verify_remote(topo, hosts, api_key=api_key)
        return {"components": _components(comps), "urls": urls}
    raise ValueError(f"unknown step {step!r}")


def plan_changes(topo: Topology, settings: LocalSettings) -> dict[str, list[str]]:
    """What a run would do, from the configuration and read-only probes (dry run)."""
    if topo.provider == "azure":
        from tasks.providers.azure import plan

        rules = [f"NSG rule {r.name}: tcp {','.join(map(str, r.ports))} from {r.source}"
                 for r in plan.nsg_rules(topo)]
        return {
            "provision": [f"ensure resource group {topo.azure.resource_group} "
                          f"({topo.azure.location})", f"ensure vnet {plan.vnet_name(topo)} "
                          f"{topo.azure.vnet_cidr}", *rules,
                          *[f"ensure VM {vm.name} ({vm.size}): {', '.join(vm.roles)}"
                            for vm in topo.vms]],
            "install": [*(f"{vm.name}: run common.sh, {', '.join(r + '.sh' for r in vm.roles)}"
                          for vm in topo.vms),
                        "render prometheus.yml, rules, alertmanager.yml, Fluent Bit and Grafana "
                        "provisioning for the VMs' private addresses and upload them",
                        "node exporter on every VM; log shipper on the VMs that write logs"],
            "register": ["Kong: service, route /api, upstream, plugins; instance targets"],
            "verify": ["GET /api/stocks through Kong; health of every admin endpoint"],
        }
    s = settings
    checks = {"redis": port_open(s.host, s.redis_port),
              "prometheus": port_open(s.host, s.prometheus_port),
              "alertmanager": port_open(s.host, s.alertmanager_port),
              "nginx gateway": port_open(s.host, s.gateway_port)}
    install = [f"start {name} on {s.host}" for name, up in checks.items() if not up]
    install.append(f"ensure {topo.local.instances} stock API instances "
                   f"(driver {topo.local.driver}); seed store if empty")
    return {
        "provision": [f"this machine hosts {', '.join(vm.name for vm in topo.vms)}"],
        "install": install,
        "register": [f"reconcile gateway {s.host}:{s.gateway_port}: instances as targets; "
                     "Prometheus file_sd targets"],
        "verify": ["GET /api/stocks through the gateway; health of every component"],
    }

"""The NSG plan exposes only the gateway's API port, and only on the gateway's VM.

Rules are checked the way Azure applies them: for an inbound packet the custom rules are
evaluated by priority, the first match decides, then Azure's defaults (AllowVnetInBound 65000,
AllowAzureLoadBalancerInBound 65001, DenyAllInBound 65500). Every stack file under
deployments/ and every stack the tests deploy is checked.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import Role, Topology, parse_topology
from tasks.providers.azure.nsg import Rule, internet_exposure, nsg_rules, private_addresses
from tests.providers.azure.conftest import azure_topology

INTERNET = "198.18.7.7"  # somewhere outside the VNet and the admin range
ADMIN = "198.51.100.9"  # inside azure_topology's allowed_admin_cidr
AZURE_DEFAULTS = [
    Rule("AllowVnetInBound", 65000, (), ("VirtualNetwork",), protocol="*"),
    Rule("AllowAzureLoadBalancerInBound", 65001, (), ("AzureLoadBalancer",), protocol="*"),
    Rule("DenyAllInBound", 65500, (), ("*",), access="Deny", protocol="*"),
]


def _in(address: str, prefix: str, vnet: str) -> bool:
    if prefix == "*":
        return True
    if prefix == "VirtualNetwork":
        return ipaddress.ip_address(address) in ipaddress.ip_network(vnet)
    if prefix in ("Internet", "AzureLoadBalancer"):
        return prefix == "Internet" and ipaddress.ip_address(address) not in \
            ipaddress.ip_network(vnet)
    return ipaddress.ip_address(address) in ipaddress.ip_network(prefix, strict=False)


def allowed(topo: Topology, source: str, destination_vm: str, port: int) -> bool:
    """Would Azure let a TCP packet from ``source`` reach ``port`` on ``destination_vm``?"""
    vnet = topo.azure.vnet_cidr
    destination = private_addresses(topo)[destination_vm]
    for rule in sorted(nsg_rules(topo) + AZURE_DEFAULTS, key=lambda r: r.priority):
        if (any(_in(source, s, vnet) for s in rule.sources)
                and any(_in(destination, d, vnet) for d in rule.destinations)
                and (not rule.ports or port in rule.ports)):
            return rule.access == "Allow"
    raise AssertionError("Azure's DenyAllInBound matches everything")


def _stack_files() -> list[Path]:
    found = []
    for path in sorted((REPO_ROOT / "deployments").rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and "vms" in doc:
            found.append(path)
    assert found, "no stack file under deployments/"
    return found


def _as_azure(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "provider": "azure", "allowed_admin_cidr": "198.51.100.0/24",
            "api_key_secret": "k", "instance_secret": "i", "log_token_secret": "l"}


def _variants(tmp: Path) -> dict[str, Topology]:
    """The stacks under deployments/ and the ones the tests deploy, plus other layouts."""
    stacks = {p.name: parse_topology(_as_azure(yaml.safe_load(p.read_text())))
              for p in _stack_files()}
    stacks["tests: azure_topology"] = azure_topology(tmp)
    base = azure_topology(tmp).model_dump(mode="json")
    every_role_apart = dict(base, vms=[
        {"name": f"vm-{svc['role']}", "services": [svc]}
        for vm in base["vms"] for svc in vm["services"]])
    stacks["one VM per role"] = parse_topology(every_role_apart)
    one_vm = dict(base, vms=[{"name": "vm-all", "services": [
        s for vm in base["vms"] for s in vm["services"] if s["role"] not in
        ("prometheus", "kibana", "log-forwarder")]}])
    stacks["everything on one VM"] = parse_topology(one_vm)
    nginx_only = dict(base, vms=[
        {**vm, "services": [dict(s, public=["http"]) if s["role"] == "nginx" else s
                            for s in vm["services"] if s["role"] != "kong"]}
        for vm in base["vms"]])
    stacks["nginx is the gateway"] = parse_topology(nginx_only)
    return stacks


def _gateway(topo: Topology) -> tuple[str, int]:
    role, port_name = (Role.KONG, "proxy") if topo.vm_with(Role.KONG) else (Role.NGINX, "http")
    vm = topo.vm_with(role)
    assert vm is not None
    svc = vm.service(role)
    assert svc is not None
    return vm.name, svc.ports[port_name]


def test_only_the_gateways_api_port_faces_the_internet(tmp_path: Path) -> None:
    for name, topo in _variants(tmp_path).items():
        vm, port = _gateway(topo)
        gateway = f"{private_addresses(topo)[vm]}/32"
        assert internet_exposure(nsg_rules(topo)) == {gateway: {str(port)}}, name
        for other in topo.vms:  # the packet view agrees, port by port
            for svc in other.services:
                for _, p in svc.host_ports():
                    expect = (other.name, p) == (vm, port)
                    assert allowed(topo, INTERNET, other.name, p) is expect, (name, other, p)
            assert not allowed(topo, INTERNET, other.name, 22), name


def test_inside_the_vnet_each_port_is_open_only_to_the_roles_that_use_it(
    tmp_path: Path,
) -> None:
    topo = azure_topology(tmp_path)
    ip = private_addresses(topo)
    kong, logs, mon = ip["vm-kong"], ip["vm-logs"], ip["vm-monitoring"]
    expectations = [
        # (from, to VM, port, allowed, why)
        (mon, "vm-kong", 3021, True, "Prometheus scrapes the instances"),
        (logs, "vm-kong", 3021, False, "the logs VM never calls the API directly"),
        (logs, "vm-kong", 6379, False, "Redis only for the instances and the exporter"),
        (mon, "vm-kong", 6379, True, "redis_exporter"),
        (mon, "vm-kong", 5044, True, "mongodb_exporter"),
        (logs, "vm-kong", 8001, False, "the Admin API is loopback-only: no rule at all"),
        (mon, "vm-kong", 8001, False, "not even for Prometheus"),
        (mon, "vm-kong", 8100, True, "Prometheus scrapes Kong's Status API"),
        (logs, "vm-kong", 8100, False, "the Status API only for Prometheus"),
        (kong, "vm-logs", 8000, True, "Kong's http-log to the forwarder's HTTP input"),
        (mon, "vm-logs", 8000, False, "the log input only for the VMs that ship logs"),
        (kong, "vm-logs", 24224, True, "the shipper on the instances' VM"),
        (mon, "vm-logs", 24224, False, "the monitoring VM ships no request logs"),
        (mon, "vm-logs", 9201, True, "Grafana's log data source reads Elasticsearch"),
        (kong, "vm-logs", 9201, False, "Elasticsearch is no business of the API VM"),
        (mon, "vm-logs", 9100, True, "node_exporter on every VM, for Prometheus"),
        (kong, "vm-monitoring", 9200, False, "Prometheus' UI only from the admin range"),
        (kong, "vm-monitoring", 9093, False, "Alertmanager only from Prometheus' VM"),
        (kong, "vm-logs", 22, False, "SSH only from the admin range"),
        (ADMIN, "vm-kong", 22, True, "SSH from the admin range"),
        (ADMIN, "vm-monitoring", 9200, True, "Prometheus' UI from the admin range"),
        (ADMIN, "vm-logs", 9200, True, "Kibana from the admin range"),
        (ADMIN, "vm-kong", 8001, False, "the Admin API: through SSH, not the network"),
        (ADMIN, "vm-kong", 6379, False, "data ports are not admin ports"),
        (ADMIN, "vm-kong", 8000, True, "the public API port is open to everyone"),
    ]
    wrong = [(why, src, vm, port) for src, vm, port, ok, why in expectations
             if allowed(topo, src, vm, port) is not ok]
    assert wrong == []


def test_rules_are_valid_nsg_bodies(tmp_path: Path) -> None:
    rules = [r.body() for r in nsg_rules(azure_topology(tmp_path))]
    priorities = [r["properties"]["priority"] for r in rules]
    assert len(set(priorities)) == len(priorities) and all(100 <= p <= 4096 for p in priorities)
    for body in rules:
        props = body["properties"]
        assert len(body["name"]) <= 80
        assert ("sourceAddressPrefix" in props) != ("sourceAddressPrefixes" in props)
        assert ("destinationPortRange" in props) != ("destinationPortRanges" in props)
    deny = next(r for r in rules if r["name"] == "deny-vnet-inbound")["properties"]
    assert deny["access"] == "Deny" and deny["sourceAddressPrefix"] == "VirtualNetwork"
    assert deny["protocol"] == "*" and deny["destinationPortRange"] == "*"


def test_static_addresses_follow_the_subnet(tmp_path: Path) -> None:
    topo = azure_topology(tmp_path, azure={**azure_topology(tmp_path).azure.model_dump(),
                                           "subnet_cidr": "10.20.7.0/28"})
    assert private_addresses(topo) == {"vm-kong": "10.20.7.4", "vm-logs": "10.20.7.5",
                                       "vm-monitoring": "10.20.7.6"}


def test_an_explicit_override_opens_the_port_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = azure_topology(tmp_path).model_dump(mode="json")
    grafana = data["vms"][2]["services"][3]
    assert grafana["role"] == "grafana"
    grafana.update(public=["ui"], public_unsafe_reason="demo behind Grafana's own login")
    with caplog.at_level("WARNING", logger="kongstack.topology"):
        topo = parse_topology(data)
    assert any("grafana.ui" in r.getMessage() and "OPEN TO THE INTERNET" in r.getMessage()
               and "demo behind" in r.getMessage() for r in caplog.records)
    assert allowed(topo, INTERNET, "vm-monitoring", 3000)
    assert not allowed(topo, INTERNET, "vm-monitoring", 9200)

"""The network security group's inbound rules: only the API faces the Internet.

Pure: the rules follow from the topology alone, because every VM gets a static private
address (``private_addresses``: the subnet's first usable address, .4, for the first VM).

=========  =================================  ===================================  ==========
priority   from                               to                                   ports
=========  =================================  ===================================  ==========
100        Internet                           the gateway VM                       its API port
110+       Internet (``public_unsafe_reason``) that VM                             those ports
200        ``allowed_admin_cidr``             every VM                             22
210+       ``allowed_admin_cidr``             each VM with admin UIs               their ports
300+       the VMs of the client roles        the VM of one role                   its ports
4000       VirtualNetwork                     anything                             deny all
=========  =================================  ===================================  ==========

The last rule overrides Azure's default ``AllowVnetInBound`` (65000): inside the virtual
network a port is reachable only from the VMs whose roles use it (``CLIENTS``: the stock API
from the gateway and Prometheus, Redis and MongoDB from the instances and the exporters, the
log forwarder's HTTP input from Kong and its forward input from the shippers, ...). Traffic
between roles on one VM never crosses the NSG. Kong's Admin API has no rule at all: it listens
on loopback and is reached through SSH. Everything else from the Internet falls through to
Azure's ``DenyAllInBound`` (65500).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

from kongstack.core.topology import SSH_PORT, VM, Role, Topology, gateway_api
from tasks.providers.azure.role_files import FORWARD_PORT, LOG_WRITERS

# Admin UIs and APIs people (and the deployer) open from the admin range.
ADMIN_ROLES = frozenset({Role.PROMETHEUS, Role.ALERTMANAGER, Role.KIBANA, Role.GRAFANA,
                         Role.ELASTICSEARCH})
# (role, port name or "*") -> the roles whose VMs may connect to it from inside the VNet.
CLIENTS: dict[tuple[Role, str], frozenset[Role]] = {
    (Role.STOCK_API, "*"): frozenset({Role.KONG, Role.NGINX, Role.PROMETHEUS}),
    (Role.REDIS, "*"): frozenset({Role.STOCK_API, Role.EXPORTERS}),
    (Role.MONGODB, "*"): frozenset({Role.STOCK_API, Role.EXPORTERS}),
    (Role.ELASTICSEARCH, "*"): frozenset({Role.LOG_FORWARDER, Role.KIBANA, Role.GRAFANA}),
    (Role.LOG_FORWARDER, "*"): frozenset({Role.KONG}),  # http-log to the ingest port
    (Role.KONG, "status"): frozenset({Role.PROMETHEUS}),
    (Role.EXPORTERS, "*"): frozenset({Role.PROMETHEUS}),
    (Role.PROMETHEUS, "*"): frozenset({Role.GRAFANA}),
    (Role.ALERTMANAGER, "*"): frozenset({Role.PROMETHEUS}),
}
PUBLIC_PRIORITY, ADMIN_PRIORITY, INTERNAL_PRIORITY, DENY_PRIORITY = 100, 200, 300, 4000


@dataclass(frozen=True)
class Rule:
    name: str
    priority: int
    ports: tuple[int, ...]  # () = every port
    sources: tuple[str, ...]  # "Internet", "VirtualNetwork", CIDRs
    destinations: tuple[str, ...] = ("*",)
    access: Literal["Allow", "Deny"] = "Allow"
    protocol: Literal["Tcp", "*"] = "Tcp"

    @property
    def source(self) -> str:
        return ",".join(self.sources)

    @property
    def destination(self) -> str:
        return ",".join(self.destinations)

    def describe(self) -> str:
        ports = ",".join(map(str, self.ports)) or "any port"
        proto = "tcp" if self.protocol == "Tcp" else "any protocol"
        verb = "" if self.access == "Allow" else "deny "
        return f"{verb}{proto} {ports} from {self.source} to {self.destination}"

    def body(self) -> dict[str, Any]:
        props: dict[str, Any] = {
            "priority": self.priority, "direction": "Inbound", "access": self.access,
            "protocol": self.protocol, "sourcePortRange": "*",
        }
        for one, many, values in (
            ("sourceAddressPrefix", "sourceAddressPrefixes", list(self.sources)),
            ("destinationAddressPrefix", "destinationAddressPrefixes", list(self.destinations)),
            ("destinationPortRange", "destinationPortRanges", [str(p) for p in self.ports]),
        ):
            if not values:
                props[one] = "*"
            elif len(values) == 1:
                props[one] = values[0]
            else:
                props[many] = values
        return {"name": self.name, "properties": props}


def private_addresses(topo: Topology) -> dict[str, str]:
    """VM name -> its static private address (subnet order: .4, .5, ...)."""
    subnet = ipaddress.ip_network(topo.azure.subnet_cidr)
    return {vm.name: str(subnet.network_address + 4 + i) for i, vm in enumerate(topo.vms)}


def added_range(topo: Topology) -> str:
    """The subnet's upper half: where VMs the autoscaler adds get their static addresses
    (tasks/providers/azure/hostvm.py), apart from the stack's own VMs (.4, .5, ...)."""
    subnet = ipaddress.ip_network(topo.azure.subnet_cidr)
    return str(list(subnet.subnets(prefixlen_diff=1))[1])


def _ports(vm: VM, role: Role, port_name: str) -> list[int]:
    svc = vm.service(role)
    if svc is None:
        return []
    return [port for name, port in svc.host_ports() if port_name in ("*", name)]


def _vms_with(topo: Topology, roles: frozenset[Role] | set[Role]) -> list[VM]:
    return [vm for vm in topo.vms if roles & set(vm.roles)]


def _internal(topo: Topology) -> list[tuple[str, VM, list[int], list[VM]]]:
    """(name, server VM, ports, client VMs) for every flow between VMs."""
    flows: list[tuple[str, VM, list[int], list[VM]]] = []
    for (role, port_name), clients in CLIENTS.items():
        for vm in topo.vms:
            ports = _ports(vm, role, port_name)
            if ports:
                suffix = "" if port_name == "*" else f"-{port_name}"
                flows.append((f"{role.value}{suffix}", vm, ports, _vms_with(topo, clients)))
    node = next((p for vm in topo.vms for p in _ports(vm, Role.EXPORTERS, "node")), None)
    if node is not None:  # node_exporter runs on every VM, on the exporters' node port
        prometheus = _vms_with(topo, frozenset({Role.PROMETHEUS}))
        flows += [("node-exporter", vm, [node], prometheus) for vm in topo.vms]
    forwarders = _vms_with(topo, frozenset({Role.LOG_FORWARDER}))
    flows += [("log-forward", vm, [FORWARD_PORT], _vms_with(topo, LOG_WRITERS))
              for vm in forwarders]
    return flows


def nsg_rules(topo: Topology) -> list[Rule]:
    """The inbound rules, highest priority first (see the module's table)."""
    host = {name: f"{address}/32" for name, address in private_addresses(topo).items()}
    rules: list[Rule] = []
    api = gateway_api(topo)
    for vm in topo.vms:
        for svc in vm.services:
            for name in svc.public:
                ports = tuple(p for n, p in svc.host_ports() if n == name)
                if api == (svc.role, name):
                    rules.append(Rule("allow-public-api", PUBLIC_PRIORITY, ports,
                                      ("Internet",), (host[vm.name],)))
                else:  # validated: only with public_unsafe_reason (logged at every load)
                    rules.append(Rule(f"allow-public-unsafe-{vm.name}-{svc.role.value}-{name}",
                                      PUBLIC_PRIORITY + 10 + len(rules), ports,
                                      ("Internet",), (host[vm.name],)))
    admin_cidr = (topo.allowed_admin_cidr,)
    rules.append(Rule("allow-admin-ssh", ADMIN_PRIORITY, (SSH_PORT,), admin_cidr,
                      tuple(host[vm.name] for vm in topo.vms)))
    for i, vm in enumerate(topo.vms, start=1):
        admin_ports = tuple(sorted({p for role in ADMIN_ROLES for p in _ports(vm, role, "*")}))
        if admin_ports:
            rules.append(Rule(f"allow-admin-{vm.name}", ADMIN_PRIORITY + i, admin_ports,
                              admin_cidr, (host[vm.name],)))
    priority = INTERNAL_PRIORITY
    for name, vm, flow_ports, clients in _internal(topo):
        sources = tuple(host[c.name] for c in clients if c.name != vm.name)
        if sources:  # same-VM traffic never crosses the NSG
            rules.append(Rule(f"allow-{name}-{vm.name}", priority, tuple(sorted(flow_ports)),
                              sources, (host[vm.name],)))
            priority += 1
    rules.extend(_added_host_rules(topo, host, priority))
    rules.append(Rule("deny-vnet-inbound", DENY_PRIORITY, (), ("VirtualNetwork",),
                      access="Deny", protocol="*"))
    return rules


def _added_host_rules(topo: Topology, host: dict[str, str], priority: int) -> list[Rule]:
    """With ``azure.added_hosts``: the stock API's ports of the added hosts' range open to
    its clients, and SSH to it from the admin range (the autoscaler drives their engines)."""
    api_vm = topo.vm_with(Role.STOCK_API)
    if topo.azure.added_hosts <= 0 or api_vm is None:
        return []
    added = (added_range(topo),)
    ports = tuple(sorted(_ports(api_vm, Role.STOCK_API, "*")))
    clients = tuple(host[c.name] for c in _vms_with(topo, CLIENTS[(Role.STOCK_API, "*")]))
    rules = [Rule("allow-admin-ssh-added-hosts", ADMIN_PRIORITY + 90, (SSH_PORT,),
                  (topo.allowed_admin_cidr,), added)]
    if clients and ports:
        rules.append(Rule("allow-stock-api-added-hosts", priority, ports, clients, added))
    return rules


def internet_exposure(rules: list[Rule]) -> dict[str, set[str]]:
    """Destination -> the ports ("*": every port) that the rules open to the Internet."""
    out: dict[str, set[str]] = {}
    for rule in rules:
        if rule.access == "Allow" and set(rule.sources) & {"Internet", "*", "0.0.0.0/0", "Any"}:
            for dest in rule.destinations:
                out.setdefault(dest, set()).update({str(p) for p in rule.ports} or {"*"})
    return out

"""Compare existing ARM resources with the desired state; return human-readable differences."""

from __future__ import annotations

from typing import Any

from kongstack.core import OWNER_LABEL
from kongstack.core.topology import VM, Topology
from tasks.providers.azure.plan import Rule


def tag_drift(topo: Topology, tags: dict[str, str] | None) -> list[str]:
    owner = (tags or {}).get(OWNER_LABEL)
    if owner == topo.name:
        return []
    return [f"tag {OWNER_LABEL}={owner!r}, expected {topo.name!r} (not managed by this stack?)"]


def _text(value: Any) -> str:
    """Enum-or-string fields of SDK models as their wire value."""
    return str(getattr(value, "value", value))


def _one_or_many(props: Any, one: str, many: str) -> set[str]:
    values = set(getattr(props, many, None) or [])
    single = getattr(props, one, None)
    if single and single != "*":
        values.add(single)
    return values


def _rule_ports(props: Any) -> set[str]:
    return _one_or_many(props, "destination_port_range", "destination_port_ranges")


def nsg_drift(desired: list[Rule], nsg: Any) -> list[str]:
    problems: list[str] = []
    existing = {r.name: r for r in (nsg.security_rules or [])}
    for rule in desired:
        have = existing.pop(rule.name, None)
        if have is None:
            problems.append(f"rule {rule.name} missing ({rule.describe()})")
            continue
        checks = (
            ("ports", _rule_ports(have), {str(p) for p in rule.ports}),
            ("sources", _one_or_many(have, "source_address_prefix", "source_address_prefixes"),
             {s for s in rule.sources if s != "*"}),
            ("destinations", _one_or_many(have, "destination_address_prefix",
                                          "destination_address_prefixes"),
             {d for d in rule.destinations if d != "*"}),
        )
        for what, got, want in checks:
            if got != want:
                problems.append(f"rule {rule.name} {what} {sorted(got)} != {sorted(want)}")
        if (_text(have.access), have.priority, _text(have.protocol)) != (
                rule.access, rule.priority, rule.protocol):
            problems.append(f"rule {rule.name} access/priority/protocol changed")
    for extra in existing.values():
        if _text(extra.direction) == "Inbound" and _text(extra.access) == "Allow":
            sources = _one_or_many(extra, "source_address_prefix", "source_address_prefixes")
            problems.append(
                f"extra inbound allow rule {extra.name} (ports {sorted(_rule_ports(extra))}, "
                f"source {','.join(sorted(sources)) or '*'})"
            )
    return problems


def nic_drift(nic: Any, address: str) -> list[str]:
    """The NSG rules name each VM by its static private address: a NIC without it (e.g. one
    created before addresses were static) is not covered by them."""
    ipc = nic.ip_configurations[0] if nic.ip_configurations else None
    have = getattr(ipc, "private_ip_address", None)
    method = _text(getattr(ipc, "private_ip_allocation_method", None))
    if have == address and method == "Static":
        return []
    return [f"private address {have} ({method}) != {address} (Static): the NSG rules expect "
            f"{address}; recreate the NIC or change its address"]


def pip_drift(pip: Any) -> list[str]:
    sku = pip.sku.name if pip.sku else None
    return [] if sku in (None, "Standard") else [f"sku {sku} != Standard"]


def vm_drift(vm: VM, machine: Any) -> list[str]:
    problems: list[str] = []
    size = machine.hardware_profile.vm_size if machine.hardware_profile else None
    if size is None or _text(size) != vm.size:
        problems.append(f"size {_text(size)} != {vm.size} (resize is not automatic)")
    image = machine.storage_profile.image_reference if machine.storage_profile else None
    if image is not None and (image.offer, image.sku) != (vm.image.offer, vm.image.sku):
        problems.append(f"image {image.offer}/{image.sku} != {vm.image.offer}/{vm.image.sku}")
    return problems

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


def _rule_ports(props: Any) -> set[str]:
    ports = set(getattr(props, "destination_port_ranges", None) or [])
    if getattr(props, "destination_port_range", None):
        ports.add(props.destination_port_range)
    return ports


def nsg_drift(desired: list[Rule], nsg: Any) -> list[str]:
    problems: list[str] = []
    existing = {r.name: r for r in (nsg.security_rules or [])}
    for rule in desired:
        have = existing.pop(rule.name, None)
        if have is None:
            problems.append(f"rule {rule.name} missing")
            continue
        want_ports = {str(p) for p in rule.ports}
        if _rule_ports(have) != want_ports:
            problems.append(
                f"rule {rule.name} ports {sorted(_rule_ports(have))} != {sorted(want_ports)}"
            )
        if have.source_address_prefix != rule.source:
            problems.append(
                f"rule {rule.name} source {have.source_address_prefix} != {rule.source}"
            )
        if _text(have.access) != "Allow" or have.priority != rule.priority:
            problems.append(f"rule {rule.name} access/priority changed")
    for extra in existing.values():
        if _text(extra.direction) == "Inbound" and _text(extra.access) == "Allow":
            problems.append(
                f"extra inbound allow rule {extra.name} (ports {sorted(_rule_ports(extra))}, "
                f"source {extra.source_address_prefix})"
            )
    return problems


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

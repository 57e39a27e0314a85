"""Render the per-VM cloud-init document (``deployments/cloud-init/base.yaml``)."""

from __future__ import annotations

from pathlib import Path
from string import Template

from kongstack.core.errors import ConfigError
from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import VM, Topology

CLOUD_INIT_DIR = REPO_ROOT / "deployments" / "cloud-init"
MAX_CUSTOM_DATA = 65535  # decoded bytes ARM accepts in osProfile.customData


def render_cloud_init(topo: Topology, vm: VM, template: Path | None = None) -> str:
    source = template or CLOUD_INIT_DIR / "base.yaml"
    text = Template(source.read_text()).substitute(
        stack=topo.name, vm=vm.name, roles=" ".join(r.value for r in vm.roles)
    )
    if len(text.encode()) > MAX_CUSTOM_DATA:
        raise ConfigError(
            f"vms[{vm.name}]: cloud-init is {len(text)} bytes (max {MAX_CUSTOM_DATA})"
        )
    return text

"""The monitoring configuration for provisioned VMs, and its rendered files.

``monitoring_for`` starts from the topology's ``monitoring:`` section (or, without one, from
``deployments/prometheus/monitoring.yaml``) and fills every scrape target the operator did not
set explicitly from the topology: the VMs' private addresses and the roles' ports.
``render_monitoring`` renders it with ``tasks.monitoring.write_monitoring_files`` (the same
code that renders the committed files) and returns the bytes each role installs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kongstack.core.errors import InstallError
from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import Host, Role, Topology
from tasks.monitoring import (
    RULES_FILE,
    MonitoringConfig,
    ScrapeConfig,
    load_monitoring_config,
    write_alertmanager_secrets,
    write_monitoring_files,
    write_stock_api_targets,
)

DEFAULT_MONITORING = REPO_ROOT / "deployments" / "prometheus" / "monitoring.yaml"
# Where alertmanager.yml expects its secret files on the monitoring VM (alertmanager.sh).
REMOTE_SECRETS_DIR = Path("/etc/prometheus/alertmanager-secrets")
# Scrape fields derived from the topology unless set in the topology's monitoring.scrape.
DERIVED = ("gateway", "kong", "redis_exporter", "mongodb_exporter", "node_exporter",
           "prometheus", "alertmanagers", "external_labels")


def private(host: Host) -> str:
    return host.private_address or host.address


def host_of(topo: Topology, hosts: list[Host], role: Role) -> tuple[Host, dict[str, int]] | None:
    """The host running ``role`` and that service's named ports (None: no such role)."""
    vm = topo.vm_with(role)
    svc = vm.service(role) if vm else None
    host = next((h for h in hosts if vm and h.vm == vm.name), None)
    if svc is None or host is None:
        return None
    return host, dict(svc.ports)


def _targets(topo: Topology, hosts: list[Host], role: Role, port_name: str) -> list[str]:
    found = host_of(topo, hosts, role)
    if found is None or port_name not in found[1]:
        return []
    return [f"{private(found[0])}:{found[1][port_name]}"]


def node_exporter_port(topo: Topology) -> int | None:
    """node_exporter runs on every host on the exporters role's ``node`` port."""
    vm = topo.vm_with(Role.EXPORTERS)
    svc = vm.service(Role.EXPORTERS) if vm else None
    return svc.ports.get("node") if svc else None


def derived_scrape(topo: Topology, hosts: list[Host]) -> dict[str, Any]:
    prom = host_of(topo, hosts, Role.PROMETHEUS)
    node = node_exporter_port(topo)
    kong = _targets(topo, hosts, Role.KONG, "admin")
    return {
        "gateway": "kong" if kong else "nginx",
        "kong": kong,
        "redis_exporter": _targets(topo, hosts, Role.EXPORTERS, "redis"),
        "mongodb_exporter": _targets(topo, hosts, Role.EXPORTERS, "mongodb"),
        "node_exporter": sorted(f"{private(h)}:{node}" for h in hosts) if node else [],
        "prometheus": [f"localhost:{prom[1]['http']}"] if prom and "http" in prom[1] else [],
        "alertmanagers": _targets(topo, hosts, Role.ALERTMANAGER, "http"),
        "external_labels": {"stack": topo.name},
    }


def monitoring_for(topo: Topology, hosts: list[Host]) -> MonitoringConfig:
    """The monitoring config for these hosts: explicit settings win, targets are derived."""
    if topo.monitoring is not None:
        # explicit: set in the topology to something other than the loopback default (a
        # re-validated dump marks every field as set, defaults included)
        base, defaults = topo.monitoring, ScrapeConfig()
        explicit = {name for name in base.scrape.model_fields_set
                    if getattr(base.scrape, name) != getattr(defaults, name)}
    else:  # the committed file names hosts by VM name: take its thresholds, not its targets
        base, explicit = load_monitoring_config(DEFAULT_MONITORING), set()
    derived = {k: v for k, v in derived_scrape(topo, hosts).items()
               if k in DERIVED and k not in explicit}
    scrape = base.scrape.model_validate({**base.scrape.model_dump(by_alias=True), **derived})
    return base.model_copy(update={"scrape": scrape})


@dataclass(frozen=True)
class RenderedMonitoring:
    """Relative path -> bytes, per role (paths as the install scripts expect them)."""

    prometheus: dict[str, bytes]
    alertmanager: dict[str, bytes]
    secrets: dict[str, bytes]  # alertmanager secret files (mode 0600 on the VM)


def render_monitoring(
    topo: Topology, hosts: list[Host], *, instance_targets: list[str], resolve_secrets: bool = True
) -> RenderedMonitoring:
    """Render in a private temporary directory; secrets are resolved from env/Secret blocks."""
    cfg = monitoring_for(topo, hosts)
    with tempfile.TemporaryDirectory(prefix="kongstack-monitoring-") as tmp:
        out = Path(tmp)
        files = write_monitoring_files(cfg, out, secrets_dir=REMOTE_SECRETS_DIR)
        write_stock_api_targets(files.stock_api_targets, instance_targets,
                                {"stack": topo.name})
        secrets = (write_alertmanager_secrets(cfg, out / "secrets") if resolve_secrets else [])
        prom_dir = files.prometheus_config.parent
        rel_targets = files.stock_api_targets.relative_to(prom_dir).as_posix()
        if not rel_targets.startswith("targets/"):  # prometheus.sh installs targets/ only
            raise InstallError(f"monitoring.scrape.stock_api_file_sd: {rel_targets!r} must be "
                               "under targets/ (installed as /etc/prometheus/targets)")
        return RenderedMonitoring(
            prometheus={"prometheus.yml": files.prometheus_config.read_bytes(),
                        RULES_FILE: files.rules.read_bytes(),
                        rel_targets: files.stock_api_targets.read_bytes()},
            alertmanager={"alertmanager.yml": files.alertmanager_config.read_bytes()},
            secrets={p.name: p.read_bytes() for p in secrets},
        )

"""Install, register and verify on provisioned VMs (the Azure path after provisioning).

install: for each host (hosts in parallel), run ``deployments/install/common.sh`` and then one
script per role over SSH (tasks.ssh: pinned host keys, streamed output, retries).
register: the Kong Admin API on the kong VM (reached from the allowed admin range) gets the
gateway's desired state with the stock API instances as targets (private addresses).
verify: a real request through Kong's public proxy port, and every admin endpoint's health.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from kongstack.errors import InstallError
from kongstack.topology import Host, Role, Topology
from tasks.deploy_report import Component
from tasks.ssh import ScriptResult, SSHTarget, run_script

INSTALL_DIR = Path(__file__).resolve().parents[2] / "deployments" / "install"
LogFn = Callable[[str], None]
IMAGE_ENV = "KONGSTACK_STOCK_API_IMAGE"  # registry reference of the stock API image
# Health endpoints per role, on the role's named port (checked from the admin range).
HEALTH = {
    Role.KONG: ("admin", "/status"),
    Role.PROMETHEUS: ("http", "/-/ready"),
    Role.ALERTMANAGER: ("http", "/-/ready"),
    Role.GRAFANA: ("ui", "/api/health"),
    Role.KIBANA: ("ui", "/api/status"),
    Role.ELASTICSEARCH: ("http", "/_cluster/health"),
}


def script_for(role: Role) -> Path:
    path = INSTALL_DIR / f"{role.value}.sh"
    if not path.exists():
        raise InstallError(f"no install script for role {role.value}: {path}")
    return path


def role_env(topo: Topology, host: Host, hosts: list[Host] | None = None) -> dict[str, str]:
    """Ports and peers the scripts configure (the topology's ports, never secrets)."""
    env = {"KONGSTACK_STACK": topo.name, "KONGSTACK_ADMIN_CIDR": topo.allowed_admin_cidr,
           "KONGSTACK_VM": host.vm}
    for peer in hosts or [host]:  # e.g. KONGSTACK_HOST_VM_KONG=10.20.1.4 for the exporters
        key = "KONGSTACK_HOST_" + peer.vm.upper().replace("-", "_")
        env[key] = peer.private_address or peer.address
    if os.environ.get(IMAGE_ENV):
        env[IMAGE_ENV] = os.environ[IMAGE_ENV]
    vm = next(v for v in topo.vms if v.name == host.vm)
    for svc in vm.services:
        for name, port in svc.ports.items():
            key = f"KONGSTACK_{svc.role.value}_{name}_PORT".upper().replace("-", "_")
            env[key] = str(port)
        if svc.role == Role.STOCK_API:
            env["KONGSTACK_STOCK_API_COUNT"] = str(svc.count)
    return env


def install_host(topo: Topology, host: Host, target: SSHTarget, log: LogFn,
                 hosts: list[Host] | None = None) -> list[str]:
    changes: list[str] = []
    env = role_env(topo, host, hosts)
    scripts = [INSTALL_DIR / "common.sh", *(script_for(r) for r in host.roles)]
    for script in scripts:
        result: ScriptResult = run_script(
            target, script, sudo=True, timeout=topo.ssh.script_timeout_s,
            retries=topo.ssh.retries, env=env, log=log,
        )
        changes += [f"{host.vm}: {line.removeprefix('changed:').strip()}"
                    for line in result.output.splitlines() if line.startswith("changed:")]
    return changes


def install_hosts(topo: Topology, hosts: list[Host], *, private_key: str, known_hosts: Path,
                  log: LogFn) -> list[str]:
    def one(host: Host) -> list[str]:
        target = SSHTarget(host=host.address, port=host.ssh_port, username=host.ssh_user or "",
                           private_key=private_key, known_hosts=known_hosts,
                           connect_timeout=topo.ssh.connect_timeout_s)
        return install_host(topo, host, target, log, hosts)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts)), thread_name_prefix="install") as pool:
        results = list(pool.map(one, hosts))
    return [c for r in results for c in r]


def _host_with(hosts: list[Host], role: Role) -> Host:
    host = next((h for h in hosts if role in h.roles), None)
    if host is None:
        raise InstallError(f"no host has role {role.value}")
    return host


def instance_targets(topo: Topology, hosts: list[Host]) -> list[str]:
    vm = topo.vm_with(Role.STOCK_API)
    if vm is None:
        return []
    host = next(h for h in hosts if h.vm == vm.name)
    svc = vm.service(Role.STOCK_API)
    assert svc is not None
    port = next(iter(svc.ports.values()))
    return [f"{host.private_address or host.address}:{port + i}" for i in range(svc.count)]


def register_kong(
    topo: Topology, hosts: list[Host], *, admin_secret_block: str | None
) -> list[str]:
    from tasks.gateway_config import GatewayStackConfig, build_gateway_state
    from tasks.gateways import make_gateway

    kong_vm = topo.vm_with(Role.KONG)
    if kong_vm is None:
        raise InstallError("no VM has role kong")
    svc = kong_vm.service(Role.KONG)
    assert svc is not None
    host = _host_with(hosts, Role.KONG)
    gateway = make_gateway("kong", stack=topo.name,
                           admin_url=f"http://{host.address}:{svc.ports.get('admin', 8001)}",
                           admin_secret_block=admin_secret_block)
    try:
        state = build_gateway_state(GatewayStackConfig(stack=topo.name),
                                    targets=instance_targets(topo, hosts))
        result = gateway.apply(state)
    finally:
        gateway.close()
    return [f"kong: {op.describe()}" for op in result.operations]


def verify_remote(topo: Topology, hosts: list[Host], *, api_key: str | None,
                  timeout: float = 5.0) -> tuple[list[Component], dict[str, str]]:
    comps: list[Component] = []
    urls: dict[str, str] = {}
    for host in hosts:
        vm = next(v for v in topo.vms if v.name == host.vm)
        for svc in vm.services:
            if svc.role not in HEALTH:
                continue
            port_name, path = HEALTH[svc.role]
            port = svc.ports.get(port_name)
            if port is None:
                continue
            url = f"http://{host.address}:{port}{path}"
            try:
                code = httpx.get(url, timeout=timeout).status_code
                status, detail = ("healthy" if code < 400 else "unhealthy"), f"HTTP {code}"
            except httpx.HTTPError as exc:
                status, detail = "unhealthy", type(exc).__name__
            comps.append(Component(f"{svc.role.value}@{host.vm}", svc.role.value, status, url,
                                   detail))
            urls[svc.role.value] = url.removesuffix(path)
    kong = _host_with(hosts, Role.KONG)
    kong_svc = next(v for v in topo.vms if v.name == kong.vm).service(Role.KONG)
    proxy = kong_svc.ports.get("proxy", 8000) if kong_svc else 8000
    api = f"http://{kong.address}:{proxy}/api/stocks"
    urls["stock API (gateway)"] = api
    try:
        response = httpx.get(api, params={"per_page": 1}, timeout=timeout,
                             headers={"apikey": api_key} if api_key else {})
        ok = response.status_code == 200
        comps.append(Component("gateway request", "kong", "healthy" if ok else "unhealthy", api,
                               f"HTTP {response.status_code}"))
    except httpx.HTTPError as exc:
        comps.append(Component("gateway request", "kong", "unhealthy", api, type(exc).__name__))
    bad = [c for c in comps if c.status == "unhealthy"]
    if bad:
        raise InstallError("unhealthy: " + ", ".join(f"{c.name} ({c.detail})" for c in bad))
    return comps, urls

"""Install, register and verify on provisioned VMs (the Azure path after provisioning).

install: the monitoring, logging and Grafana configuration is rendered once for the hosts'
private addresses (tasks.providers.azure.role_files); then, for each host (hosts in parallel),
its steps run over SSH (tasks.providers.ssh: pinned host keys, streamed output, retries):
``common.sh``, the node exporter, one script per role, the log shipper; a step's rendered
files are uploaded to a private staging directory first (tasks.providers.azure.staging) and
named by ``$KONGSTACK_FILES``.
After the hosts, the log store's index template, ILM policy and ingest pipeline are installed.
register: the Kong Admin API on the kong VM (listening on its loopback only, reached through an
SSH tunnel with the pinned host key) gets the gateway's desired state with the stock API
instances as targets (private addresses), the gateway secret the instances require, and the
log token for Kong's http-log.
verify: a real request through Kong's public proxy port, and every admin endpoint's health
(Kong's Admin API is not on the network: register has just talked to it through SSH).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from kongstack.core.errors import InstallError
from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import Host, Role, Topology
from tasks.gateway.desired import ConsumerConfig, registration_state
from tasks.providers.azure import staging
from tasks.providers.azure.plan import HEALTH, instance_targets, log_endpoint
from tasks.providers.azure.role_files import (
    StackSecrets,
    Step,
    host_steps,
    read_stack_secrets,
    render_bundle,
    step_env,
)
from tasks.providers.protocol import Component, Verified
from tasks.providers.ssh import ScriptResult, SSHTarget, run_script

INSTALL_DIR = REPO_ROOT / "deployments" / "install"
LogFn = Callable[[str], None]
IMAGE_ENV = "KONGSTACK_STOCK_API_IMAGE"  # registry reference of the stock API image
# Hosts installed at once (None: all). Several "hosts" on one machine share its /tmp, where
# tasks.providers.ssh names uploaded scripts by content: such setups (tests) install one at a time.
HOST_PARALLELISM: int | None = None


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
    env.update(step_env(topo))
    vm = next(v for v in topo.vms if v.name == host.vm)
    for svc in vm.services:
        for name, port in svc.ports.items():
            key = f"KONGSTACK_{svc.role.value}_{name}_PORT".upper().replace("-", "_")
            env[key] = str(port)
        if svc.role == Role.STOCK_API:
            env["KONGSTACK_STOCK_API_COUNT"] = str(svc.count)
    return env


def install_host(topo: Topology, host: Host, target: SSHTarget, log: LogFn,
                 hosts: list[Host] | None = None,
                 steps: Sequence[Step] | None = None) -> list[str]:
    """Run ``steps`` (default: common.sh, then one script per role) on ``host``."""
    changes: list[str] = []
    env = role_env(topo, host, hosts)
    plan = list(steps) if steps is not None else [Step("common"), *(Step(r.value)
                                                                     for r in host.roles)]
    scripts = [(_script(s.script), s) for s in plan]  # all exist before anything runs
    for script, step in scripts:
        staged = (staging.upload(target, step.script, step.files, retries=topo.ssh.retries)
                  if step.files else None)
        try:
            result: ScriptResult = run_script(
                target, script, sudo=True, timeout=topo.ssh.script_timeout_s,
                retries=topo.ssh.retries, log=log,
                env={**env, "KONGSTACK_FILES": staged} if staged else env,
            )
        finally:
            if staged:
                staging.remove(target, staged, log)
        changes += [f"{host.vm}: {line.removeprefix('changed:').strip()}"
                    for line in result.output.splitlines() if line.startswith("changed:")]
    return changes


def _script(stem: str) -> Path:
    path = INSTALL_DIR / f"{stem}.sh"
    if not path.exists():
        raise InstallError(f"no install script {path}")
    return path


def install_hosts(topo: Topology, hosts: list[Host], *, private_key: str, known_hosts: Path,
                  log: LogFn) -> list[str]:
    # Rendered (and secrets resolved) before any host is touched: a missing secret fails early.
    bundle = render_bundle(topo, hosts, instance_targets(topo, hosts),
                           secrets=read_stack_secrets(topo))

    def one(host: Host) -> list[str]:
        target = SSHTarget(host=host.address, port=host.ssh_port, username=host.ssh_user or "",
                           private_key=private_key, known_hosts=known_hosts,
                           connect_timeout=topo.ssh.connect_timeout_s)
        return install_host(topo, host, target, log, hosts,
                            host_steps(topo, host, hosts, bundle))

    workers = max(1, HOST_PARALLELISM or len(hosts))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="install") as pool:
        results = list(pool.map(one, hosts))
    return [c for r in results for c in r]


def install_log_store(topo: Topology, hosts: list[Host], *,
                      transport: httpx.BaseTransport | None = None) -> str | None:
    """The index template, ILM policy and ingest pipeline that the daily ``kongstack-logs-*``
    indices need (the pipeline drops Kong's request headers, which may carry API keys).
    Elasticsearch's port is an admin port: reached on the logs VM's address from the admin
    range. Idempotent (PUTs of the committed documents)."""
    from tasks.monitoring.elasticsearch import NAME, ElasticsearchClient, LogStoreError

    vm = topo.vm_with(Role.ELASTICSEARCH)
    svc = vm.service(Role.ELASTICSEARCH) if vm else None
    host = next((h for h in hosts if vm and h.vm == vm.name), None)
    if svc is None or host is None or "http" not in svc.ports:
        return None
    url = f"http://{host.address}:{svc.ports['http']}"
    client = ElasticsearchClient(url, username=os.environ.get("ELASTICSEARCH_USERNAME"),
                                 password=os.environ.get("ELASTICSEARCH_PASSWORD"),
                                 transport=transport)
    try:
        client.install()
    except LogStoreError as exc:
        raise InstallError(f"log store {url}: {exc}") from None
    finally:
        client.close()
    return f"log store {url}: ILM policy, ingest pipeline and index template {NAME} in place"


def _host_with(hosts: list[Host], role: Role) -> Host:
    host = next((h for h in hosts if role in h.roles), None)
    if host is None:
        raise InstallError(f"no host has role {role.value}")
    return host


def admin_tunnel(topo: Topology, kong: Host, *, private_key: str,
                 known_hosts: Path) -> dict[str, object]:
    """The ``ssh_tunnel`` gateway option for the Kong VM (its SSH address, the pinned keys)."""
    return {"host": kong.address, "port": kong.ssh_port, "username": kong.ssh_user or "",
            "private_key": private_key, "known_hosts": str(known_hosts),
            "connect_timeout_s": topo.ssh.connect_timeout_s,
            "attempts": topo.ssh.retries + 1}


def register_kong(
    topo: Topology, hosts: list[Host], *, admin_secret_block: str | None,
    private_key: str, known_hosts: Path, consumers: Sequence[ConsumerConfig] = (),
    api_key: str | None = None, secrets: StackSecrets | None = None,
) -> list[str]:
    """Kong on the kong VM gets the one registration state (tasks.gateway.desired): the
    stack file's consumers (keys from their Secret blocks), the older ``api`` consumer when
    ``api_key`` is set, the stock API instances (private addresses) as targets, the gateway
    secret the instances require and the log token for http-log. The Admin API listens on
    the Kong VM's loopback: it is reached through an SSH tunnel (pinned host key), the URL is
    as seen from the VM."""
    from pydantic import SecretStr

    from tasks.gateway.factory import make_gateway

    secrets = secrets if secrets is not None else read_stack_secrets(topo)
    gateway = make_gateway("kong", stack=topo.name, admin_url=kong_admin_url(topo),
                           admin_secret_block=admin_secret_block,
                           ssh_tunnel=admin_tunnel(topo, _host_with(hosts, Role.KONG),
                                                   private_key=private_key,
                                                   known_hosts=known_hosts))
    try:
        # targets=None: apply leaves the upstream's targets alone. After the first deploy the
        # autoscaler owns the target list, so a re-run only adds the instances it installed
        # and never removes a target the autoscaler added (issue 16, item 9).
        result = gateway.apply(registration_state(
            topo.name, consumers=consumers, api_key=api_key, targets=None,
            log_endpoint=log_endpoint(topo, hosts),
            upstream_secret=(SecretStr(secrets.instance_secret)
                             if secrets.instance_secret else None),
            log_token=SecretStr(secrets.log_token) if secrets.log_token else None))
        changes = [f"kong: {op.describe()}" for op in result.operations]
        present = {t.address for t in gateway.list_targets()}
        for address in instance_targets(topo, hosts):
            if address not in present:
                gateway.add_target(address)
                changes.append(f"kong: add target {address}")
    finally:
        gateway.close()
    return changes


def kong_admin_url(topo: Topology) -> str:
    """The Admin API as seen from the Kong VM itself (it listens on loopback only)."""
    kong_vm = topo.vm_with(Role.KONG)
    svc = kong_vm.service(Role.KONG) if kong_vm else None
    if svc is None:
        raise InstallError("no VM has role kong")
    return f"http://127.0.0.1:{svc.ports['admin']}"


def verify_remote(topo: Topology, hosts: list[Host], *, api_key: str | None,
                  timeout: float = 5.0) -> Verified:
    """Every admin endpoint's health, then a request through Kong's proxy; the result's
    ``error`` names the unhealthy ones."""
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
    error = ("unhealthy: " + ", ".join(f"{c.name} ({c.detail})" for c in bad)) if bad else ""
    return Verified(components=tuple(comps), urls=urls, error=error)

"""What each host runs, in order, and the rendered files each script installs.

A host runs ``common.sh``, then ``node-exporter.sh`` (when the stack has Prometheus), then one
script per role, then ``log-shipper.sh`` (when it writes request logs and the stack has a log
forwarder). Scripts that install configuration get it as files in ``$KONGSTACK_FILES``:

=============  ==========================================================================
kong           kong.conf (the Admin API on 127.0.0.1 only; no Kong Manager listener)
stock-api      stock-api.env (secret: GATEWAY_SECRET, which the instances require)
prometheus     prometheus.yml, rules/kongstack.rules.yml, targets/stock_api.json
alertmanager   alertmanager.yml, secrets/* (resolved from env/Secret blocks; 0600)
log-forwarder  fluent-bit.conf (aggregator), parsers.conf, fluent-bit.env (secret: the
               Elasticsearch credentials and the log token), log-gate.conf (secret: nginx on
               the ingest port, passing only requests with the log token to Fluent Bit's
               HTTP input on 127.0.0.1)
log-shipper    fluent-bit.conf (shipper), parsers.conf, fluent-bit.env (secret: the log
               token, Fluent Bit's secure-forward shared key)
grafana        provisioning/{datasources,dashboards}/kongstack.yml, dashboards/*.json
=============  ==========================================================================

Everything is rendered once per install from the topology and the hosts' private addresses;
nothing secret is committed or passed on a command line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from kongstack.core.errors import InstallError
from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import Host, Role, Topology
from kongstack.core.yamlfile import load_yaml
from tasks.providers.azure.monitoring_render import (
    RenderedMonitoring,
    host_of,
    node_exporter_port,
    private,
    render_monitoring,
)

LOGGING_DIR = REPO_ROOT / "deployments" / "logging"
GRAFANA_DIR = REPO_ROOT / "deployments" / "grafana"
LOG_WRITERS = {Role.STOCK_API, Role.NGINX}  # roles whose JSON request logs the shipper tails
FORWARD_PORT = 24224  # the aggregator's forward input (fixed in both Fluent Bit configs)
# Fluent Bit's HTTP input listens here on 127.0.0.1 (fixed in the aggregator config); nginx
# on the ingest port checks the log token and passes requests on (log_gate_conf).
HTTP_INPUT_PORT = 9880
# Secrets end up in env files and nginx's config: plain token characters only.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,512}$")


@dataclass(frozen=True)
class StackSecrets:
    """The stack's shared secrets, read once per install (``read_stack_secrets``)."""

    instance_secret: str | None = field(default=None, repr=False)
    log_token: str | None = field(default=None, repr=False)


def read_stack_secrets(topo: Topology) -> StackSecrets:
    """The Secret blocks the stack file names; errors name the field, never the value."""
    from tasks.providers import secrets  # the module: tests replace read_secret

    values: dict[str, str | None] = {}
    for attr, block, fld in (("instance_secret", topo.instance_secret, "instance_secret"),
                             ("log_token", topo.log_token_secret, "log_token_secret")):
        value = secrets.read_secret(block, fld).strip() if block else None
        if value is not None and not TOKEN_PATTERN.fullmatch(value):
            raise InstallError(f"{fld}: Secret block {block!r} must hold 16-512 characters "
                               "of A-Z a-z 0-9 . _ ~ + / = - (e.g. secrets.token_urlsafe(32))")
        values[attr] = value
    return StackSecrets(**values)


@dataclass(frozen=True)
class StagedFile:
    path: str  # relative to $KONGSTACK_FILES, POSIX separators
    content: bytes = field(repr=False)
    secret: bool = False


@dataclass(frozen=True)
class Step:
    script: str  # file stem under deployments/install
    files: tuple[StagedFile, ...] = ()


def set_option(conf: str, section: str, plugin: str, key: str, value: str) -> str:
    """Set ``key`` in the ``[section]`` of Fluent Bit plugin ``plugin`` (classic format)."""
    out: list[str] = []
    current: str | None = None
    block: list[str] = []
    hits = 0

    def flush() -> None:
        nonlocal hits
        names = [ln.split(None, 1)[1].strip() for ln in block
                 if ln.strip().lower().startswith("name ") and len(ln.split(None, 1)) == 2]
        if current == section and names == [plugin]:
            for i, ln in enumerate(block):
                parts = ln.split(None, 1)
                if parts and parts[0].lower() == key.lower():
                    start = ln.index(parts[1]) if len(parts) == 2 else len(ln)
                    block[i] = ln[:start] + value
                    hits += 1
        out.extend(block)
        block.clear()

    for line in conf.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            flush()
            current = stripped[1:-1].strip().upper()
        block.append(line)
    flush()
    if hits != 1:
        raise InstallError(f"fluent-bit config: expected one {key} in [{section}] {plugin}, "
                           f"found {hits}")
    return "\n".join(out) + "\n"


def kong_conf(topo: Topology, host: Host) -> str:
    """Kong's kong.conf for ``host``. Kong OSS has no Admin API authentication, so the Admin
    API listens on loopback only (the deployer and the autoscaler come through SSH), Kong
    Manager (3.4+ OSS, on 0.0.0.0:8002 by default) is off, and the Status API (read-only
    /status and /metrics) is what Prometheus scrapes, from its VM only (the NSG)."""
    vm = next(v for v in topo.vms if v.name == host.vm)
    svc = vm.service(Role.KONG)
    if svc is None:
        raise InstallError(f"{host.vm} has no kong role")
    ports = svc.ports
    return (
        "# Rendered by tasks.providers.azure.role_files.kong_conf; installed by kong.sh.\n"
        "database = off\n"
        f"proxy_listen = 0.0.0.0:{ports['proxy']} reuseport backlog=16384\n"
        f"admin_listen = 127.0.0.1:{ports['admin']}\n"
        "admin_gui_listen = off\n"
        f"status_listen = 0.0.0.0:{ports['status']}\n"
        "nginx_worker_processes = auto\n"
        "log_level = notice\n"
    )


def log_gate_conf(token: str, port: int, *, backend_port: int = HTTP_INPUT_PORT) -> str:
    """nginx in front of Fluent Bit's HTTP input, which has no shared-token option: only
    ``POST <LOG_PATH>`` with ``Authorization: Bearer <token>`` (what Kong's http-log sends)
    reaches it; anything else gets 401/404, bodies are capped, the token is not passed on."""
    from tasks.gateway.kong.template import LOG_PATH

    if not TOKEN_PATTERN.fullmatch(token):
        raise InstallError("log_token_secret: not a plain token (see read_stack_secrets)")
    return f"""# Rendered by tasks.providers.azure.role_files.log_gate_conf (log-forwarder.sh).
map $http_authorization $kongstack_log_token_ok {{
    default 0;
    "Bearer {token}" 1;
}}
server {{
    listen {port};
    access_log off;
    client_max_body_size 1m;
    client_body_buffer_size 1m;
    location = {LOG_PATH} {{
        limit_except POST {{ deny all; }}
        if ($kongstack_log_token_ok = 0) {{ return 401; }}
        proxy_set_header Authorization "";
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://127.0.0.1:{backend_port};
    }}
    location / {{ return 404; }}
}}
"""


def aggregator_conf(topo: Topology, hosts: list[Host], logs: Host) -> str:
    text = (LOGGING_DIR / "fluent-bit-aggregator.conf").read_text()
    fwd = host_of(topo, hosts, Role.LOG_FORWARDER)
    if fwd is not None and fwd[1].get("ingest") == HTTP_INPUT_PORT:
        raise InstallError(f"vms: log-forwarder.ingest must not be {HTTP_INPUT_PORT}: Fluent "
                           "Bit's HTTP input listens there behind the token check")
    es = host_of(topo, hosts, Role.ELASTICSEARCH)
    if es is not None and "http" in es[1]:
        es_host = "127.0.0.1" if es[0].vm == logs.vm else private(es[0])
        text = set_option(text, "OUTPUT", "es", "Host", es_host)
        text = set_option(text, "OUTPUT", "es", "Port", str(es[1]["http"]))
    return text


def shipper_conf(logs: Host) -> str:
    text = (LOGGING_DIR / "fluent-bit-shipper.conf").read_text()
    text = set_option(text, "OUTPUT", "forward", "Host", private(logs))
    return set_option(text, "OUTPUT", "forward", "Port", str(FORWARD_PORT))


def forwarder_env(log_token: str | None = None) -> str:
    """Elasticsearch credentials for the aggregator's ${ELASTICSEARCH_*} references, from the
    deployer's environment (empty: the logs VM's Elasticsearch runs without security), and the
    log token for ${KONGSTACK_LOG_TOKEN} (the forward input's shared key)."""
    user = os.environ.get("ELASTICSEARCH_USERNAME", "")
    password = os.environ.get("ELASTICSEARCH_PASSWORD", "")
    for value in (user, password):
        if "\n" in value or "'" in value:
            raise InstallError("ELASTICSEARCH_USERNAME/PASSWORD must be one line without quotes")
    return (f"ELASTICSEARCH_USERNAME='{user}'\nELASTICSEARCH_PASSWORD='{password}'\n"
            + shipper_env(log_token))


def shipper_env(log_token: str | None) -> str:
    """${KONGSTACK_LOG_TOKEN} for Fluent Bit's secure forward (its shared key)."""
    return f"KONGSTACK_LOG_TOKEN='{log_token}'\n" if log_token else ""


def grafana_datasources(topo: Topology, hosts: list[Host], grafana: Host) -> str:
    doc = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "kongstack.yml",
                    what="Grafana data source provisioning")
    kept: list[dict[str, Any]] = []
    for ds in doc.get("datasources", []):
        role, port_name = ((Role.PROMETHEUS, "http") if ds.get("type") == "prometheus"
                           else (Role.ELASTICSEARCH, "http"))
        found = host_of(topo, hosts, role)
        if found is None or port_name not in found[1]:
            continue  # e.g. no Elasticsearch in this stack: no log data source
        where = "localhost" if found[0].vm == grafana.vm else private(found[0])
        kept.append({**ds, "url": f"http://{where}:{found[1][port_name]}"})
    doc["datasources"] = kept
    header = ("# Rendered by tasks.providers.azure.role_files from "
              "deployments/grafana/provisioning for this stack's hosts.\n")
    return header + yaml.safe_dump(doc, sort_keys=False)


def grafana_files(topo: Topology, hosts: list[Host], grafana: Host) -> tuple[StagedFile, ...]:
    files = [
        StagedFile("provisioning/datasources/kongstack.yml",
                   grafana_datasources(topo, hosts, grafana).encode()),
        StagedFile("provisioning/dashboards/kongstack.yml",
                   (GRAFANA_DIR / "provisioning" / "dashboards" / "kongstack.yml").read_bytes()),
    ]
    files += [StagedFile(f"dashboards/{p.name}", p.read_bytes())
              for p in sorted((GRAFANA_DIR / "dashboards").glob("*.json"))]
    return tuple(files)


@dataclass(frozen=True)
class Bundle:
    """Everything rendered for one install of the stack."""

    monitoring: RenderedMonitoring | None
    logs_host: Host | None
    secrets: StackSecrets = field(default_factory=StackSecrets)


def render_bundle(topo: Topology, hosts: list[Host], instance_targets: list[str],
                  *, resolve_secrets: bool = True,
                  secrets: StackSecrets | None = None) -> Bundle:
    has_prometheus = host_of(topo, hosts, Role.PROMETHEUS) is not None
    monitoring = (render_monitoring(topo, hosts, instance_targets=instance_targets,
                                    resolve_secrets=resolve_secrets)
                  if has_prometheus or host_of(topo, hosts, Role.ALERTMANAGER) else None)
    logs = host_of(topo, hosts, Role.LOG_FORWARDER)
    return Bundle(monitoring=monitoring, logs_host=logs[0] if logs else None,
                  secrets=secrets or StackSecrets())


def _role_files(role: Role, topo: Topology, hosts: list[Host], host: Host,
                bundle: Bundle) -> tuple[StagedFile, ...]:
    parsers = StagedFile("parsers.conf", (LOGGING_DIR / "parsers.conf").read_bytes())
    mon = bundle.monitoring
    if role == Role.KONG:
        return (StagedFile("kong.conf", kong_conf(topo, host).encode()),)
    if role == Role.STOCK_API and bundle.secrets.instance_secret:
        env = f"GATEWAY_SECRET={bundle.secrets.instance_secret}\n"
        return (StagedFile("stock-api.env", env.encode(), secret=True),)
    if role == Role.PROMETHEUS and mon is not None:
        return tuple(StagedFile(p, b) for p, b in sorted(mon.prometheus.items()))
    if role == Role.ALERTMANAGER and mon is not None:
        secrets = sorted(mon.secrets.items())
        return (*(StagedFile(p, b) for p, b in mon.alertmanager.items()),
                *(StagedFile(f"secrets/{n}", b, secret=True) for n, b in secrets))
    if role == Role.LOG_FORWARDER:
        token = bundle.secrets.log_token
        files = [StagedFile("fluent-bit.conf", aggregator_conf(topo, hosts, host).encode()),
                 parsers,
                 StagedFile("fluent-bit.env", forwarder_env(token).encode(), secret=True)]
        ingest = host_of(topo, hosts, Role.LOG_FORWARDER)
        if token and ingest is not None and "ingest" in ingest[1]:
            files.append(StagedFile("log-gate.conf",
                                    log_gate_conf(token, ingest[1]["ingest"]).encode(),
                                    secret=True))
        return tuple(files)
    if role == Role.GRAFANA:
        return grafana_files(topo, hosts, host)
    return ()


def host_steps(topo: Topology, host: Host, hosts: list[Host], bundle: Bundle) -> list[Step]:
    """The scripts ``host`` runs, in order, each with the files it installs."""
    steps = [Step("common")]
    if node_exporter_port(topo) is not None and host_of(topo, hosts, Role.PROMETHEUS):
        steps.append(Step("node-exporter"))  # HostHighCpu/Memory need every host's node metrics
    steps += [Step(role.value, _role_files(role, topo, hosts, host, bundle))
              for role in host.roles]
    logs = bundle.logs_host
    if logs is not None and logs.vm != host.vm and LOG_WRITERS & set(host.roles):
        parsers = StagedFile("parsers.conf", (LOGGING_DIR / "parsers.conf").read_bytes())
        env = StagedFile("fluent-bit.env", shipper_env(bundle.secrets.log_token).encode(),
                         secret=True)
        steps.append(Step("log-shipper", (StagedFile("fluent-bit.conf",
                                                     shipper_conf(logs).encode()), parsers, env)))
    return steps


def step_env(topo: Topology) -> dict[str, str]:
    """Stack-wide settings the extra steps need (the node exporter's port)."""
    port = node_exporter_port(topo)
    return {"KONGSTACK_NODE_EXPORTER_PORT": str(port)} if port is not None else {}

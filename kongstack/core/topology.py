"""The stack configuration: which hosts run which roles on which ports (the seed's topology).

Parsed once, at the edge, by :func:`load_topology`. Every rule that can be checked before
anything is created is checked here, and every error names the field it is about, e.g.
``vms[0].services[2].ports.http: port 8000 already used by kong.proxy on vm-kong``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kongstack.core.errors import ConfigError
from kongstack.core.monitoring_config import MonitoringConfig
from kongstack.core.roles import KONG_PORTS, port_kind
from kongstack.core.roles import Role as Role  # re-exported: the stack file's vocabulary
from kongstack.core.settings import REPO_ROOT
from kongstack.core.yamlfile import load_yaml

# Azure VM size names: "Standard_B2s", "Standard_D4s_v5", "Basic_A1" (tier, family+size, suffixes).
VM_SIZE_PATTERN = re.compile(r"^(Standard|Basic)_[A-Z]{1,3}[0-9]+[a-z]*(_[A-Za-z0-9]+)*$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
SSH_PORT = 22


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageRef(_Strict):
    """A marketplace image (the seed's VMs run Ubuntu LTS)."""

    publisher: str = "Canonical"
    offer: str = "ubuntu-24_04-lts"
    sku: str = "server"
    version: str = "latest"


log = logging.getLogger("kongstack.topology")


class Service(_Strict):
    """One role on one VM: its named ports and which of them face the internet."""

    role: Role
    ports: dict[str, int] = Field(default_factory=dict)
    public: list[str] = Field(
        default_factory=list,
        description="names of ports open to anyone: only the gateway's API port "
        "(kong.proxy, or nginx.http in a stack without Kong) unless public_unsafe_reason is set",
    )
    public_unsafe_reason: str | None = Field(
        default=None, min_length=10,
        description="why this service may expose other ports in `public` to the Internet "
        "(an admin, data or log port); the exposure is logged as a warning at every load",
    )
    count: int = Field(default=1, ge=1, le=32, description="instances; port N uses N..N+count-1")

    @field_validator("ports")
    @classmethod
    def _port_range(cls, ports: dict[str, int]) -> dict[str, int]:
        for name, port in ports.items():
            if not 1 <= port <= 65535:
                raise ValueError(f"port {name}={port} is outside 1-65535")
        return ports

    @model_validator(mode="after")
    def _public_names_exist(self) -> Service:
        for name in self.public:
            if name not in self.ports:
                raise ValueError(f"public port {name!r} is not one of ports {sorted(self.ports)}")
        return self

    def host_ports(self) -> list[tuple[str, int]]:
        """(port name, port) for every port this service binds, instances expanded."""
        out: list[tuple[str, int]] = []
        for name, port in self.ports.items():
            out.extend((name, port + i) for i in range(self.count))
        return out


class VM(_Strict):
    name: str
    size: str = "Standard_B2s"
    image: ImageRef = Field(default_factory=ImageRef)
    admin_username: str = "azureuser"
    os_disk_gb: int = Field(default=30, ge=30, le=4095)
    services: list[Service]

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"{name!r}: use 2-32 lowercase letters, digits and '-'")
        return name

    @field_validator("size")
    @classmethod
    def _size(cls, size: str) -> str:
        if not VM_SIZE_PATTERN.match(size):
            raise ValueError(f"{size!r} is not an Azure VM size name (e.g. Standard_B2s)")
        return size

    @property
    def roles(self) -> list[Role]:
        return [s.role for s in self.services]

    def service(self, role: Role) -> Service | None:
        return next((s for s in self.services if s.role == role), None)


class SSHSettings(_Strict):
    """How the installer reaches the VMs. Key material lives in Prefect Secret blocks."""

    public_key_secret: str | None = Field(default=None, description="Secret block: public key")
    private_key_secret: str | None = Field(default=None, description="Secret block: private key")
    known_hosts: Path | None = Field(
        default=None,
        description="pinned host keys (OpenSSH format); default var/deploy/<stack>/known_hosts, "
        "filled from each VM over the authenticated ARM Run Command channel",
    )
    connect_timeout_s: float = Field(default=15.0, gt=0, le=300)
    script_timeout_s: float = Field(default=900.0, gt=0, le=7200)
    retries: int = Field(default=4, ge=0, le=20)


class AzureSettings(_Strict):
    """Where the stack lives in Azure. Each VM gets a static private address in subnet_cidr
    (the first usable one, .4, for the first VM; Azure keeps .0-.3 and the last), so the NSG
    can open each internal port to exactly the VMs whose roles use it."""

    subscription_id: str | None = Field(default=None, description="else AZURE_SUBSCRIPTION_ID")
    location: str = "westeurope"
    resource_group: str = "kongstack-rg"
    vnet_cidr: str = "10.20.0.0/16"
    subnet_cidr: str = "10.20.1.0/24"
    polling_interval_s: float = Field(default=5.0, ge=0, le=300,
                                      description="LRO status poll period")
    max_parallel: int = Field(default=8, ge=1, le=32, description="VMs created at once")
    added_hosts: int = Field(
        default=0, ge=0, le=50,
        description="backend VMs the autoscaler may add to a full pool (pool.growth); above 0 "
        "the NSG opens the subnet's upper half, where they get their addresses, to the stock "
        "API's clients on its ports and to the admin range on SSH")

    @field_validator("vnet_cidr", "subnet_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        ipaddress.ip_network(value, strict=True)
        return value

    @model_validator(mode="after")
    def _subnet_inside_vnet(self) -> AzureSettings:
        vnet = ipaddress.ip_network(self.vnet_cidr)
        subnet = ipaddress.ip_network(self.subnet_cidr)
        if not subnet.subnet_of(vnet):  # type: ignore[arg-type]
            raise ValueError(f"subnet_cidr {subnet} is not inside vnet_cidr {vnet}")
        return self


MAX_RATE_PER_MINUTE = 6_000_000  # 100,000 req/s: far above one gateway node


class ConsumerSettings(_Strict):
    """One client application of the API: its own key-auth key, its access and its rate
    limit. The key is generated at deploy and kept in a Prefect Secret block, never here."""

    name: str = Field(description="the Kong consumer's username (2-32 of a-z, 0-9, '-')")
    access: Literal["read", "write"] = Field(
        default="read", description="read: GET/HEAD/OPTIONS; write: also POST/PUT/PATCH/DELETE "
        "(member of the writers group)")
    rate_limit_per_minute: int = Field(
        default=60000, ge=1, le=MAX_RATE_PER_MINUTE,
        description=f"requests per minute for this consumer (1..{MAX_RATE_PER_MINUTE:,}); "
        "enforced by Kong's rate-limiting and by the local gateway alike")
    key_secret: str | None = Field(
        default=None, description="Prefect Secret block holding the key; default "
        "'<stack>-key-<name>', created with a random key when missing")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"{name!r}: use 2-32 lowercase letters, digits and '-'")
        return name


def _default_consumers() -> list[ConsumerSettings]:
    return [ConsumerSettings(name="reader", access="read"),
            ConsumerSettings(name="writer", access="write")]


class LocalProviderSettings(_Strict):
    """The embedded default: every role on this machine, on LocalSettings' loopback ports."""

    instances: int = Field(default=3, ge=1, le=16, description="stock API instances to start")
    driver: Literal["auto", "docker", "process"] = "auto"
    seed_data: bool = True
    seed_symbols: int = Field(default=200, ge=1, le=5000, description="demo data set size")
    rate_limit_per_minute: int = Field(default=60000, ge=1, description="per consumer/IP")


class Topology(_Strict):
    name: str = Field(default="kongstack", description="stack name; the owner tag's value")
    provider: Literal["local", "azure"] = "local"
    allowed_admin_cidr: str = Field(
        default="127.0.0.1/32", description="source range allowed to reach admin ports"
    )
    api_key_secret: str | None = Field(
        default=None,
        description="Secret block with an older single API key: its consumer 'api' (read and "
        "write) is kept next to `consumers` so existing clients go on working (locally "
        "$KONGSTACK_API_KEY also works); new clients use a consumer of their own",
    )
    kong_admin_secret: str | None = Field(
        default=None, description="Secret block with the Kong Admin API token (Azure)"
    )
    instance_secret: str | None = Field(
        default=None,
        description="Secret block with the shared secret the gateway adds to every request it "
        "forwards (header X-Gateway-Secret; Kong and the local nginx gateway alike); the stock "
        "API instances refuse /api requests without it (required for provider 'azure')",
    )
    log_token_secret: str | None = Field(
        default=None,
        description="Secret block with the token Kong's http-log and the log shippers present "
        "to the log forwarder (required for provider 'azure' when a VM has role "
        "'log-forwarder')",
    )
    consumers: list[ConsumerSettings] = Field(
        default_factory=_default_consumers, min_length=1, max_length=32,
        description="client applications: one key-auth consumer each, with its access and "
        "rate limit (default: a read-only 'reader' and a 'writer')")
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    azure: AzureSettings = Field(default_factory=AzureSettings)
    local: LocalProviderSettings = Field(default_factory=LocalProviderSettings)
    monitoring: MonitoringConfig | None = Field(
        default=None,
        description="thresholds, receivers and intervals for the Azure monitoring VM; the "
        "scrape targets not set here are derived from the VMs' private addresses at deploy "
        "time (default: deployments/prometheus/monitoring.yaml)",
    )
    vms: list[VM]

    @field_validator("name")
    @classmethod
    def _stack_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"{name!r}: use 2-32 lowercase letters, digits and '-'")
        return name

    @field_validator("allowed_admin_cidr")
    @classmethod
    def _admin_cidr(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=False)
        if net.prefixlen == 0:
            raise ValueError("must not be 0.0.0.0/0: admin ports would be open to everyone")
        return str(net)

    @field_validator("consumers")
    @classmethod
    def _consumers_unique(cls, consumers: list[ConsumerSettings]) -> list[ConsumerSettings]:
        names = [c.name for c in consumers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"consumer names must be unique: {dupes}")
        return consumers

    def key_secret(self, consumer: ConsumerSettings) -> str:
        """The Secret block that holds ``consumer``'s key."""
        return consumer.key_secret or f"{self.name}-key-{consumer.name}"

    @field_validator("vms")
    @classmethod
    def _vms_unique(cls, vms: list[VM]) -> list[VM]:
        names = [vm.name for vm in vms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"VM names must be unique: {dupes}")
        if not vms:
            raise ValueError("at least one VM is required")
        return vms

    def owner_tags(self) -> dict[str, str]:
        from kongstack.core import OWNER_LABEL

        return {OWNER_LABEL: self.name}

    def vm_with(self, role: Role) -> VM | None:
        return next((vm for vm in self.vms if role in vm.roles), None)

    def fingerprint(self) -> str:
        """Stable hash of the whole configuration (keys resume markers and caches)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Host:
    """A provisioned machine for one VM of the topology (a real VM, or this machine)."""

    vm: str
    roles: tuple[Role, ...]
    address: str  # where the installer and verifier reach it
    private_address: str | None = None
    ssh_user: str | None = None
    ssh_port: int = SSH_PORT
    status: str = "unchanged"  # "created" | "unchanged" | "drifted"
    notes: tuple[str, ...] = ()


def _check_port_clashes(raw: Topology) -> list[str]:
    errors: list[str] = []
    for v, vm in enumerate(raw.vms):
        used: dict[int, str] = {SSH_PORT: "ssh"}
        for s, svc in enumerate(vm.services):
            for name, port in svc.host_ports():
                owner = f"{svc.role}.{name}"
                if port in used and used[port] != owner:
                    errors.append(
                        f"vms[{v}].services[{s}].ports.{name}: port {port} already used by "
                        f"{used[port]} on {vm.name}"
                    )
                used.setdefault(port, owner)
    return errors


def gateway_api(topo: Topology) -> tuple[Role, str] | None:
    """The gateway's role and API port name: Kong's proxy, or nginx's http without Kong."""
    roles = {r for vm in topo.vms for r in vm.roles}
    if Role.KONG in roles:
        return Role.KONG, "proxy"
    if Role.NGINX in roles:
        return Role.NGINX, "http"
    return None


def _check_exposure(raw: Topology) -> list[str]:
    """Only the gateway's API port may face the Internet, unless a service says why."""
    errors: list[str] = []
    api = gateway_api(raw)
    allowed = f"{api[0].value}.{api[1]}" if api else "none: the stack has no gateway"
    for v, vm in enumerate(raw.vms):
        for s, svc in enumerate(vm.services):
            for name in svc.public:
                if api == (svc.role, name):
                    continue
                where = f"vms[{v}].services[{s}].public"
                what = (f"{svc.role.value}.{name} ({port_kind(svc.role, name)} port "
                        f"{svc.ports[name]})")
                if svc.public_unsafe_reason is None:
                    errors.append(
                        f"{where}: {what} must not face the Internet; only the gateway's API "
                        f"port ({allowed}) may (set public_unsafe_reason on the service to "
                        "expose it anyway)")
                else:
                    log.warning("%s: %s is OPEN TO THE INTERNET on %s; override: %s",
                                where, what, vm.name, svc.public_unsafe_reason)
    return errors


def _check_references(raw: Topology) -> list[str]:
    errors: list[str] = []
    for v, vm in enumerate(raw.vms):
        for s, svc in enumerate(vm.services):
            if svc.role == Role.KONG:
                errors += [f"vms[{v}].services[{s}].ports.{name}: required for role kong "
                           "(proxy, admin on loopback, status for Prometheus)"
                           for name in KONG_PORTS if name not in svc.ports]
    if raw.provider == "azure":
        subnet = ipaddress.ip_network(raw.azure.subnet_cidr)
        room = subnet.num_addresses - 5  # Azure reserves the first four and the last
        if len(raw.vms) > room:
            errors.append(f"azure.subnet_cidr: {subnet} has room for {max(room, 0)} VMs' "
                          f"static addresses, the stack has {len(raw.vms)}")
        if not raw.instance_secret:
            errors.append("instance_secret: required for provider 'azure' (the instances refuse "
                          "requests that did not come through the gateway; a Secret block)")
        if raw.vm_with(Role.LOG_FORWARDER) is not None and not raw.log_token_secret:
            errors.append("log_token_secret: required for provider 'azure' with a log-forwarder "
                          "(its inputs accept only Kong and the shippers; a Secret block)")
        if not raw.ssh.public_key_secret:
            errors.append("ssh.public_key_secret: required for provider 'azure' (a Secret block)")
        if not raw.ssh.private_key_secret:
            errors.append("ssh.private_key_secret: required for provider 'azure' (a Secret block)")
    if raw.api_key_secret:
        errors += [f"consumers[{n}].name: 'api' is the consumer of api_key_secret's key; "
                   "choose another name" for n, c in enumerate(raw.consumers) if c.name == "api"]
    roles = [r for vm in raw.vms for r in vm.roles]
    for required in (Role.STOCK_API, Role.REDIS):
        if required not in roles:
            errors.append(f"vms: no VM has role {required.value!r}")
    if Role.KONG not in roles and Role.NGINX not in roles:
        errors.append("vms: no VM has a gateway role ('kong' or 'nginx')")
    return errors


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_topology(data: Any, *, source: str = "<config>") -> Topology:
    """Validate ``data`` (a mapping) into a Topology, or raise ConfigError naming each field."""
    try:
        topo = Topology.model_validate(data)
    except ValidationError as exc:
        lines = [f"{_loc(tuple(e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(
            f"{source}: invalid stack configuration:\n  " + "\n  ".join(lines)
        ) from None
    problems = _check_port_clashes(topo) + _check_references(topo) + _check_exposure(topo)
    if problems:
        raise ConfigError(f"{source}: invalid stack configuration:\n  " + "\n  ".join(problems))
    return topo


DEFAULT_TOPOLOGY_PATH = REPO_ROOT / "deployments" / "stack.yaml"


def load_topology(path: str | Path | None = None) -> Topology:
    """Read and validate a stack file (default ``deployments/stack.yaml``)."""
    file = Path(path) if path is not None else DEFAULT_TOPOLOGY_PATH
    data = load_yaml(file, what="stack configuration file")
    topo = parse_topology(data, source=str(file))
    if topo.ssh.known_hosts is not None and not topo.ssh.known_hosts.is_absolute():
        pinned = (file.parent / topo.ssh.known_hosts).resolve()
        topo = topo.model_copy(update={"ssh": topo.ssh.model_copy(update={"known_hosts": pinned})})
    return topo

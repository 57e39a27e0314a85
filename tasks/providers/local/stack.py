"""The embedded default provider: every role of the topology on this machine, on loopback.

Role → what runs here (each step reads what runs, starts only what is missing, says which):

- redis → redis-server (kongstack.core.procs.Daemon) on LocalSettings.redis_port
- mongodb → MongoDB at $MONGODB_URI if set, else the embedded on-disk store (montydb/sqlite)
- stock-api → instances via the instance driver (containers when the engine has the image,
  gunicorn processes otherwise), seeded with the demo data set
- prometheus, alertmanager, exporters → tasks.providers.local.monitoring.LocalMonitoring
- kong, nginx → the nginx gateway (Kong has no package for this machine; it is used when
  KONG_ADMIN_URL points at one)
- elasticsearch, kibana, log-forwarder → JSON request logs under var/log (no ELK here)
- grafana → not available here (dashboards are provisioned for a real Grafana)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from kongstack.core.errors import SetupError, StackError
from kongstack.core.extras import requires_extra
from kongstack.core.procs import Daemon, free_port, port_open
from kongstack.core.settings import LocalSettings
from kongstack.core.topology import Host, Role, Topology
from tasks.gateway.desired import registration_state
from tasks.gateway.kong.model import GatewayState
from tasks.providers.consumers import DeployConsumers, deploy_consumers, planned_consumers
from tasks.providers.protocol import Component, Installed, Provisioned

if TYPE_CHECKING:
    from tasks.instances.base import Instance

LogFn = Callable[[str], None]
SUBSTITUTES = {
    Role.KONG: ("substituted", "nginx gateway (no Kong package here; set KONG_ADMIN_URL)"),
    Role.ELASTICSEARCH: ("substituted", "JSON request logs in var/log (no Elasticsearch here)"),
    Role.KIBANA: ("absent", "not available on this machine"),
    Role.LOG_FORWARDER: ("substituted", "instances write JSON logs to var/log directly"),
    Role.GRAFANA: ("absent", "not available on this machine; dashboards in deployments/grafana"),
}


def _state_file(settings: LocalSettings, stack: str) -> Path:
    return settings.home / "deploy" / stack / "local.json"


@dataclass
class LocalStack:
    topo: Topology
    settings: LocalSettings = field(default_factory=LocalSettings)
    log: LogFn = print
    _consumers: DeployConsumers | None = field(default=None, init=False, repr=False)

    # -- helpers ------------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        return f"redis://{self.settings.host}:{self.settings.redis_port}/0"

    @property
    def store_dir(self) -> Path:
        return self.settings.data_dir / "stock_api"

    def _ports(self) -> dict[str, int]:
        """Exporter ports, chosen once and kept so re-runs find the same daemons."""
        path = _state_file(self.settings, self.topo.name)
        try:
            ports: dict[str, int] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            ports = {}
        changed = False
        for name in ("node_exporter", "redis_exporter", "nginx_exporter"):
            if name not in ports:
                ports[name] = free_port()
                changed = True
        if changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(ports))
        return ports

    def monitoring(self) -> Any:
        from tasks.providers.local.monitoring import LocalMonitoring, MonitoringPorts

        p = self._ports()
        s = self.settings
        return LocalMonitoring(
            home=s.home,
            ports=MonitoringPorts(prometheus=s.prometheus_port, alertmanager=s.alertmanager_port,
                                  node_exporter=p["node_exporter"],
                                  redis_exporter=p["redis_exporter"],
                                  nginx_exporter=p["nginx_exporter"]),
            webhook_url=f"http://{s.host}:{s.webhook_port}/alerts",
            redis_url=self.redis_url,
            nginx_status_url=f"http://{s.host}:{s.gateway_status_port}/nginx_status",
            host=s.host,
        )

    def driver(self) -> Any:
        from tasks.instances.factory import make_driver

        return make_driver(self.topo.local.driver, settings=self.settings, stack=self.topo.name,
                           redis_url=self.redis_url, data_dir=self.store_dir)

    def gateway(self) -> Any:
        from tasks.gateway.factory import make_gateway

        return make_gateway("nginx", stack=self.topo.name, settings=self.settings)

    # -- provision: this machine is every host -----------------------------------------------
    def missing_directories(self) -> list[Path]:
        return [d for d in (self.settings.data_dir, self.settings.log_dir, self.settings.run_dir,
                            self.store_dir) if not d.exists()]

    def provision(self) -> Provisioned:
        changes: list[str] = []
        for d in self.missing_directories():
            d.mkdir(parents=True, exist_ok=True)
            changes.append(f"created directory {d}")
        hosts = tuple(Host(vm=vm.name, roles=tuple(vm.roles), address=self.settings.host,
                           status="created" if changes else "unchanged",
                           notes=("this machine (local provider)",)) for vm in self.topo.vms)
        return Provisioned(hosts=hosts, changes=tuple(changes),
                           notes=tuple(f"{c.name}: {c.detail}" for c in self.substitutes()))

    # -- install ---------------------------------------------------------------------------
    def install(self) -> Installed:
        """Redis, store + seed data (in the background), nginx gateway, monitoring, instances.

        nginx starts before the exporters (the nginx exporter scrapes its status page). A
        failure ends the step with what did come up (``Installed.error`` says why)."""
        changes: list[str] = []
        seed_changes: list[str] = []
        comps: list[Component] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed") as pool:
            store = pool.submit(self._store, seed_changes)
            try:
                comps.append(self._redis(changes))
                comps.append(self._gateway(changes))
                comps += self._monitoring(changes)
                comps += self._instances(changes)
                comps.insert(1, store.result())
            except StackError as exc:
                return Installed(components=tuple(comps), changes=(*seed_changes, *changes),
                                 error=str(exc))
        return Installed(components=tuple(comps), changes=(*seed_changes, *changes))

    def install_plan(self) -> list[str]:
        """What ``install`` would start now (the same checks, read-only)."""
        s = self.settings
        actions = [f"start redis on {s.host}:{s.redis_port}"
                   if not self._redis_running() else "redis: running"]
        seed = (f"; seed {self.topo.local.seed_symbols} symbols if empty"
                if self.topo.local.seed_data else "")
        actions.append(f"store at {self.store_dir}{seed}")
        actions.append(f"start the nginx gateway on {s.host}:{s.gateway_port}"
                       if not port_open(s.host, s.gateway_port) else "nginx gateway: running")
        for name, port in (("prometheus", s.prometheus_port),
                           ("alertmanager", s.alertmanager_port)):
            actions.append(f"start {name} on {s.host}:{port}" if not port_open(s.host, port)
                           else f"{name}: running")
        actions.append("node, redis and nginx exporters (the ones not running)")
        actions.append(f"ensure {self.topo.local.instances} stock API instances "
                       f"(driver {self.topo.local.driver}); replace exited ones")
        return actions

    def _gateway(self, changes: list[str]) -> Component:
        gateway = self.gateway()
        try:
            result = gateway.apply(self.desired_gateway_state())
        finally:
            gateway.close()
        changes += self.consumers().changes
        changes += describe_ops(result.operations)
        status = "started" if any(op.kind == "process" for op in result.operations) else "running"
        return Component("nginx", "nginx", status, self.gateway_url(),
                         "configured" if result.changed else "already configured")

    def _redis(self, changes: list[str]) -> Component:
        s = self.settings
        daemon = Daemon("redis", s.run_dir)
        url = f"redis://{s.host}:{s.redis_port}"
        if self._redis_running():
            return Component("redis", "redis", "running", url, "already running")
        binary = shutil.which("redis-server")
        if binary is None:
            raise SetupError("redis-server is not installed (run scripts/setup)")
        redis_dir = s.data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        daemon.start([binary, "--port", str(s.redis_port), "--bind", s.host,
                      "--save", "", "--appendonly", "no", "--dir", str(redis_dir)],
                     ready=lambda: port_open(s.host, s.redis_port),
                     log_file=s.log_dir / "redis.log", timeout=20)
        changes.append(f"started redis on {s.host}:{s.redis_port}")
        return Component("redis", "redis", "started", url)

    def _redis_running(self) -> bool:
        s = self.settings
        return Daemon("redis", s.run_dir).running() or port_open(s.host, s.redis_port)

    def _store(self, changes: list[str]) -> Component:
        with requires_extra("api", "the local stock store"):
            from stock_api.config import StockApiConfig
            from stock_api.seed import DEFAULT_END, SeedParams, seed
            from stock_api.store import open_repository

        kind = "MongoDB ($MONGODB_URI)" if os.environ.get("MONGODB_URI") else "embedded store"
        try:
            repo = open_repository(StockApiConfig(data_dir=self.store_dir))
            try:
                repo.ensure_indexes()
                if not self.topo.local.seed_data:
                    return Component("store", "mongodb", "running", str(self.store_dir), kind)
                report = seed(repo, SeedParams(self.topo.local.seed_symbols, 365, 42,
                                               DEFAULT_END.isoformat()))
            finally:
                repo.close()
        except StackError:
            raise
        except Exception as exc:  # the store's own errors: name the step, keep the cause
            raise SetupError(f"store {self.store_dir} ({kind}): {exc}") from exc
        if report.skipped:
            return Component("store", "mongodb", "running", str(self.store_dir),
                             f"{kind}; seed data present ({report.kept} symbols)")
        changes.append(f"seeded {report.written} symbols ({report.bars} bars) in {kind}")
        return Component("store", "mongodb", "started", str(self.store_dir), kind)

    def _monitoring(self, changes: list[str]) -> list[Component]:
        mon = self.monitoring()
        before = mon.status()
        mon.start()
        after = mon.status()
        started = [n for n, up in after.items() if up and not before.get(n)]
        if started:
            changes.append(f"started {', '.join(started)}")
        role_of = {"prometheus": "prometheus", "alertmanager": "alertmanager"}
        urls = {"prometheus": mon.prometheus_url, "alertmanager": mon.alertmanager_url}
        return [Component(n, role_of.get(n, "exporters"), "started" if n in started else "running",
                          urls.get(n, ""), "" if n in started else "already running")
                for n in after]

    def _instances(self, changes: list[str]) -> list[Component]:
        from tasks.instances.base import InstanceState

        driver = self.driver()
        wanted = self.redeploy_count(driver.list())
        for inst in driver.list():
            if inst.state in (InstanceState.EXITED, InstanceState.UNHEALTHY):
                driver.stop(inst.id, grace=5.0)
                changes.append(f"removed {inst.state.value} instance {inst.name}")
        alive = [i for i in driver.list()
                 if i.state in (InstanceState.READY, InstanceState.STARTING,
                                InstanceState.DEGRADED)]
        started = [driver.start() for _ in range(max(0, wanted - len(alive)))]
        ready = [driver.wait_ready(i, timeout=60.0) for i in alive + started]
        for inst in started:
            changes.append(f"started stock API instance {inst.name} at {inst.address}")
        if wanted != self.topo.local.instances:
            self.log(f"keeping the pool's {wanted} instance(s) (the autoscaler's count; the "
                     f"stack file's {self.topo.local.instances} is for a first deploy)")
        new = {i.id for i in started}
        return [Component(i.name, "stock-api", "started" if i.id in new else "running",
                          f"http://{i.address}") for i in ready]

    def redeploy_count(self, instances: list[Instance]) -> int:
        """How many instances install ensures: the stack file's count on a first deploy;
        after that the autoscaler owns the count, so a redeploy keeps the pool's size (a dead
        instance counts: it is replaced) instead of resetting it (issue 16, item 9)."""
        from tasks.instances.base import InstanceState

        present = [i for i in instances if i.state is not InstanceState.DRAINING]
        return len(present) if present else self.topo.local.instances

    # -- register: the gateway's desired state plus the instances as targets ---------------------
    def api_key(self) -> str | None:
        """The older single key (``api_key_secret`` or $KONGSTACK_API_KEY), if any: its
        ``api`` consumer keeps working next to the stack file's consumers."""
        name = self.topo.api_key_secret
        if name:
            from tasks.providers.secrets import read_secret

            return read_secret(name, "api_key_secret")
        return os.environ.get("KONGSTACK_API_KEY") or None

    def consumers(self) -> DeployConsumers:
        """The stack file's consumers with their keys (tasks.providers.consumers), created in
        their Secret blocks when missing; read once per LocalStack."""
        if self._consumers is None:
            self._consumers = deploy_consumers(self.topo, log=self.log)
        return self._consumers

    def desired_gateway_state(self, *, planned: bool = False) -> GatewayState:
        """The one registration state (tasks.gateway.desired), as on every provider, key-auth
        always on: the stack file's consumers, plus the ``api`` consumer when an older single
        key is set; the instances become targets one by one (the autoscaler owns the target
        list). With the stack's ``instance_secret``, the gateway adds it to every request as
        X-Gateway-Secret (request-transformer, as Kong does). ``planned`` (a dry run):
        placeholder keys and secret, no Secret block read or created."""
        configs = planned_consumers(self.topo) if planned else self.consumers().configs
        return registration_state(self.topo.name, consumers=configs, api_key=self.api_key(),
                                  rate_limit_per_minute=self.topo.local.rate_limit_per_minute,
                                  upstream_secret=self.instance_secret(planned=planned))

    def instance_secret(self, *, planned: bool = False) -> SecretStr | None:
        """The gateway secret of ``instance_secret`` (a Secret block), if the stack names one."""
        block = self.topo.instance_secret
        if not block:
            return None
        if planned:
            return SecretStr(f"(Secret block {block})")
        from tasks.providers.secrets import read_secret

        return SecretStr(read_secret(block, "instance_secret").strip())

    def register(self, instance_addresses: list[str]) -> list[str]:
        from tasks.monitoring import write_stock_api_targets

        gateway = self.gateway()
        changes: list[str] = []
        try:
            result = gateway.apply(self.desired_gateway_state())  # converges again if drifted
            changes += describe_ops(result.operations)
            present = {t.address for t in gateway.list_targets()}
            for address in instance_addresses:
                if address not in present:
                    gateway.add_target(address)
                    changes.append(f"gateway: add target {address}")
        finally:
            gateway.close()
        targets = self.monitoring().files.stock_api_targets
        labels = {"job": "stock_api", "stack": self.topo.name}  # as the autoscaler writes them
        if write_stock_api_targets(targets, sorted(instance_addresses), labels):
            changes.append(f"prometheus targets: {len(instance_addresses)} stock API instances")
        return changes

    def substitutes(self) -> list[Component]:
        roles = {r for vm in self.topo.vms for r in vm.roles}
        return [Component(r.value, r.value, status=SUBSTITUTES[r][0], detail=SUBSTITUTES[r][1])
                for r in sorted(roles) if r in SUBSTITUTES]

    def stop(self) -> list[str]:
        """Stop what this stack runs here (tests and benchmarks; the cleanup flow owns teardown)."""
        stopped = []
        driver = self.driver()
        for inst in driver.list():
            driver.stop(inst.id, grace=5.0)
            stopped.append(inst.name)
        if self.gateway().stop():
            stopped.append("nginx")
        stopped += self.monitoring().stop()
        if Daemon("redis", self.settings.run_dir).stop(grace=5.0):
            stopped.append("redis")
        return stopped

    def gateway_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.gateway_port}"


def describe_ops(operations: list[Any]) -> list[str]:
    """Gateway operations as change lines; nginx settings are folded into one line."""
    settings = [op.name for op in operations if op.kind == "setting"]
    lines = [f"gateway: {op.describe()}" for op in operations if op.kind != "setting"]
    if settings:
        lines.insert(0, f"gateway: set {', '.join(settings)}")
    return lines

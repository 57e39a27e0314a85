"""Added hosts on Azure (tasks/providers/azure/hostvm.py) driven by the tick's host step
(tasks/tick/grow.py) through the real azure-mgmt SDK against the ARM double, whose operations
take time as ARM's do: the step never waits for one, later passes pick it up.

The engine side (SSH install, instances on the added host) is tests/multihost/
test_added_hosts.py; here the installer is a recording stand-in."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from autoscaler.placement import HostLoad
from kongstack.core import OWNER_LABEL
from kongstack.core.errors import ConfigError
from kongstack.core.procs import wait_until
from kongstack.core.topology import Topology
from tasks.instances.added import (
    ADDED_BY_TAG,
    POOL_TAG,
    AddedHostRecord,
    AddedHostStore,
    HostGrowthConfig,
)
from tasks.instances.hosts import HostRecord, HostStateStore
from tasks.providers.azure.clients import AzureClients
from tasks.providers.azure.hostvm import AzureHostFactory, InstallState, added_address
from tasks.providers.azure.nsg import nsg_rules
from tasks.providers.azure.provision import AzureProvisioner
from tasks.tick.grow import HostGrowth
from tasks.tick.pool import PoolConfig
from tasks.tick.record import ActionRecord
from tests.providers.azure.arm_double import ArmServer, Fault
from tests.providers.azure.conftest import HOST_KEY, azure_topology

PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO2b2b0z1m0X6Qe4lLrpjUeN5V0K9dJwG2Xo3Yy1uP7w "
              "deploy")
STACK = "pool-a"
# Seconds each ARM operation runs in the double (a real VM takes minutes; the ratio matters:
# the VM is the slowest step, as in Azure).
DELAYS = {"*": 0.15, "virtualMachines": 0.6, "runCommand": 0.3}


@dataclass
class RecordingInstaller:
    """The install as the factory sees it: started once, running for ``polls`` reads."""

    polls: int = 2
    outcome: InstallState = "done"
    started: list[str] = field(default_factory=list)
    reads: int = 0

    def state(self, address: str, user: str) -> tuple[InstallState, str]:
        if not self.started:
            return "absent", ""
        self.reads += 1
        return ("running", "apt-get") if self.reads <= self.polls else (self.outcome, "tail")

    def start(self, address: str, user: str) -> None:
        self.started.append(f"{user}@{address}")


@dataclass
class Rig:
    arm: ArmServer
    topo: Topology
    pool: PoolConfig
    installer: RecordingInstaller
    known_hosts: Path
    make_clients: Callable[..., AzureClients]
    clock: list[datetime]

    def factory(self) -> AzureHostFactory:
        assert self.pool.growth is not None
        return AzureHostFactory(self.pool.growth, STACK, self.topo, self.make_clients(),
                                PUBLIC_KEY, self.known_hosts, self.installer)

    def tick(self, loads: list[HostLoad], desired: int,
             factory: AzureHostFactory | None = None) -> list[ActionRecord]:
        """One tick's host step, with a fresh factory (a new worker process) unless given."""
        assert self.pool.growth is not None
        self.clock[0] += timedelta(seconds=30)
        return HostGrowth(self.pool, self.pool.growth, self.clock[0]).run(
            factory or self.factory(), loads, desired, dry_run=False)

    def records(self) -> list[AddedHostRecord]:
        return AddedHostStore(self.pool.added_hosts_file()).load()

    def until(self, state: str | None, loads: list[HostLoad], desired: int) -> list[str]:
        """Tick until the first added host is in ``state`` (None: gone); the actions seen."""
        seen: list[str] = []

        def reached() -> bool:
            seen.extend(f"{a.kind} {a.outcome}: {a.reason}" for a in self.tick(loads, desired))
            recs = self.records()
            return (not recs) if state is None else bool(recs) and recs[0].state == state

        try:
            wait_until(reached, timeout=30, interval=0.1, what=f"added host {state or 'gone'}")
        except Exception:
            raise AssertionError(f"{seen[-5:]} {self.records()}") from None
        return seen

    def added(self, type_suffix: str) -> list[dict[str, Any]]:
        return [r for r in self.arm.state.resources.values()
                if r["type"].endswith(type_suffix) and r["name"].startswith("added-")]


FULL = [HostLoad("h1", 2, 2)]


def with_added_hosts(topo: Topology, count: int) -> Topology:
    return topo.model_copy(update={"azure": topo.azure.model_copy(
        update={"added_hosts": count})})


@pytest.fixture
def rig(arm: ArmServer, make_clients: Callable[..., AzureClients], tmp_path: Path
        ) -> Iterator[Rig]:
    arm.state.delays = dict(DELAYS)
    arm.state.host_keys["added-1"] = HOST_KEY
    topo = with_added_hosts(azure_topology(tmp_path), 1)
    AzureProvisioner(topology=topo, clients=make_clients(), ssh_public_key=PUBLIC_KEY,
                     known_hosts=tmp_path / "deploy_known_hosts").ensure_shared()
    pool = PoolConfig.model_validate({
        "stack": STACK, "base_port": 3021, "local": {"home": str(tmp_path / "home")},
        "hosts": [{"name": "h1", "docker_host": "ssh://azureuser@192.0.2.10", "capacity": 2}],
        "growth": HostGrowthConfig(provider="azure", capacity=3, max_added_hosts=1,
                                   idle_cooldown_seconds=120, retry_seconds=300),
    })
    yield Rig(arm, topo, pool, RecordingInstaller(), tmp_path / "known_hosts", make_clients,
              [datetime(2026, 12, 7, 12, 0, tzinfo=UTC)])


def test_pool_full_adds_a_tagged_vm_by_the_deploy_plan_without_waiting(rig: Rig) -> None:
    first = rig.tick(FULL, desired=4)
    assert [(a.kind, a.outcome) for a in first] == [("add_host", "pending")]
    assert "pool full (h1 2/2): 2 of 4 instance(s) find no room" in first[0].reason
    assert rig.records()[0].state == "pending"  # written before ARM was asked
    # The step only started the first operation: nothing it created is finished yet.
    assert [r["properties"]["provisioningState"] for r in rig.added("publicIPAddresses")] \
        == ["Updating"]
    actions = rig.until("ready", FULL, desired=4)
    assert actions[-1].startswith("add_host ok: host added-1 ready")
    (vm,) = rig.added("virtualMachines")
    template = next(v for v in rig.topo.vms if v.name == "vm-kong")
    assert vm["tags"][ADDED_BY_TAG] == "autoscaler" and vm["tags"][POOL_TAG] == STACK
    assert vm["tags"][OWNER_LABEL] == rig.topo.name
    assert vm["tags"]["kongstack.roles"] == "stock-api"
    props = vm["properties"]
    assert props["hardwareProfile"]["vmSize"] == template.size
    assert props["storageProfile"]["imageReference"] == template.image.model_dump()
    cloud_init = base64.b64decode(props["osProfile"]["customData"]).decode()
    assert cloud_init.startswith("#cloud-config") and "VM=added-1" in cloud_init
    assert 'ROLES="stock-api"' in cloud_init
    keys = props["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    assert keys[0]["keyData"] == PUBLIC_KEY
    (nic,) = rig.added("networkInterfaces")
    ipc = nic["properties"]["ipConfigurations"][0]["properties"]
    assert ipc["privateIPAddress"] == added_address(rig.topo, "added-1") == "10.20.1.132"
    # host key read over ARM and pinned; installed once; the pool host's config
    address = rig.added("publicIPAddresses")[0]["properties"]["ipAddress"]
    assert rig.known_hosts.read_text() == f"{address} {HOST_KEY}\n"
    assert rig.installer.started == [f"azureuser@{address}"]
    host = rig.pool.all_hosts()[-1]
    assert (host.name, host.docker_host, host.capacity, host.advertise_host, host.added) == (
        "added-1", f"ssh://azureuser@{address}", 3, "10.20.1.132", True)
    # every ARM operation ran beside the step, none inside one call: the step never polled
    puts = [c for c in rig.arm.state.calls if c.method == "PUT" and "added-1" in c.path]
    assert len(puts) == 3  # public IP, NIC, VM: each created once


@pytest.mark.parametrize("key_file", [None, "pool-key"])
def test_the_added_engine_is_reached_with_the_key_the_installer_used(
        rig: Rig, tmp_path: Path, key_file: str | None) -> None:
    """No key file in pool.growth: the installer used the topology's Secret-block key, so the
    engine is reached with it too (the block named, the key not copied into the record); a
    key file, when set, is used for both."""
    if key_file is not None:
        data = rig.pool.model_dump(mode="json")
        data["growth"]["ssh_key_file"] = str(tmp_path / key_file)
        rig.pool = PoolConfig.model_validate(data)
    rig.until("ready", FULL, desired=4)
    host = rig.records()[0].host_config()
    assert host is not None and host.remote
    if key_file is None:
        assert host.ssh_key_file is None
        assert host.ssh_key_secret == rig.topo.ssh.private_key_secret
        assert host.ssh_key_secret == "kongstack-ssh-private-key"
    else:
        assert host.ssh_key_file == tmp_path / key_file and host.ssh_key_secret is None
    assert "PRIVATE KEY" not in rig.pool.added_hosts_file().read_text()


def test_idle_added_vm_is_removed_after_the_cool_down_and_only_it(rig: Rig) -> None:
    rig.until("ready", FULL, desired=4)
    loads = [HostLoad("h1", 2, 2), HostLoad("added-1", 3, 2)]
    assert rig.tick(loads, desired=4) == []  # busy: kept
    idle = [HostLoad("h1", 2, 1), HostLoad("added-1", 3, 0)]
    remembered = HostStateStore(rig.pool.host_state_file())
    remembered.save({"added-1": HostRecord(leftovers=["c0ffee"]), "h1": HostRecord()})
    rig.tick(idle, desired=1)  # idle from now on (30 s per tick, cool-down 120 s)
    for _ in range(3):
        assert rig.tick(idle, desired=1) == []
        assert rig.records()[0].state == "ready"
    actions = rig.until(None, idle, desired=1)
    assert actions[0].startswith("remove_host pending: added host added-1 idle for 120s")
    assert actions[-1].startswith("remove_host ok: host added-1 removed")
    assert rig.added("virtualMachines") == rig.added("networkInterfaces") == \
        rig.added("publicIPAddresses") == []
    assert rig.known_hosts.read_text() == ""
    assert [h.name for h in rig.pool.all_hosts()] == ["h1"]
    assert list(remembered.load()) == ["h1"]  # a later added-1 starts clean
    # the deploy-stack's shared resources are untouched
    assert {r["type"].rsplit("/", 1)[-1] for r in rig.arm.state.resources.values()} == {
        "networkSecurityGroups", "virtualNetworks", "subnets"}


def test_a_vm_without_the_autoscaler_tag_is_never_removed(rig: Rig) -> None:
    rig.until("ready", FULL, desired=4)
    (vm,) = rig.added("virtualMachines")
    del vm["tags"][ADDED_BY_TAG]  # as if the deploy-stack had made a VM of that name
    records = rig.records()
    records[0].state = "removing"
    AddedHostStore(rig.pool.added_hosts_file()).save(records)
    actions = rig.tick(FULL, desired=2)
    assert actions[0].outcome == "failed"
    assert "not the autoscaler's, left alone" in actions[0].reason
    assert rig.added("virtualMachines")  # still there
    assert not any(c.method == "DELETE" for c in rig.arm.state.calls)


def test_a_crash_mid_provision_converges_without_duplicates(rig: Rig) -> None:
    rig.tick(FULL, desired=4)
    rig.tick(FULL, desired=4)  # the public IP may be done, the NIC under way
    # The worker dies; a new one (fresh clients, fresh factory) carries on from the record.
    rig.until("ready", FULL, desired=4)
    puts = [c.path.split("?")[0].rsplit("/", 2)[-2] for c in rig.arm.state.calls
            if c.method == "PUT" and "added-1" in c.path]
    assert sorted(puts) == ["networkInterfaces", "publicIPAddresses", "virtualMachines"]


def test_a_vm_made_but_never_recorded_is_adopted(rig: Rig) -> None:
    rig.until("ready", FULL, desired=4)
    AddedHostStore(rig.pool.added_hosts_file()).save([])  # the record was lost in a crash
    actions = rig.until("ready", FULL, desired=4)
    assert [r.name for r in rig.records()] == ["added-1"]
    assert len(rig.added("virtualMachines")) == 1
    assert any("add_host ok" in a for a in actions)


def test_quota_error_is_a_clear_status_line_and_is_retried_later(rig: Rig) -> None:
    rig.arm.state.faults.append(Fault(
        "PUT", "/virtualMachines/added-1", 409, "OperationNotAllowed",
        "Operation could not be completed as it results in exceeding approved standardBSFamily "
        "Cores quota."))
    actions = rig.until("failed", FULL, desired=4)
    assert any("add_host failed: host added-1 failed: virtual machine added-1: "
               "(OperationNotAllowed) Operation could not be completed as it results in "
               "exceeding approved standardBSFamily Cores quota" in a for a in actions), actions
    # the pool keeps working: no new attempt inside retry_seconds (300 s = 10 ticks)
    for _ in range(8):
        actions_now = rig.tick(FULL, desired=4)
        assert all(a.kind != "add_host" or a.outcome != "pending" for a in actions_now)
    assert rig.records()[0].state == "failed"
    # after retry_seconds: the partial resources go, then a fresh add succeeds
    actions = rig.until("ready", FULL, desired=4)
    kinds = [a.split(":")[0] for a in actions]
    assert kinds.index("remove_host ok") < kinds.index("add_host pending"), actions
    assert "partial resources are removed" in actions[0]
    assert len(rig.added("virtualMachines")) == 1


def test_max_added_hosts_is_a_ceiling(rig: Rig) -> None:
    rig.until("ready", FULL, desired=4)
    full = [HostLoad("h1", 2, 2), HostLoad("added-1", 3, 3)]
    actions = rig.tick(full, desired=8)
    assert actions == []
    assert len(rig.added("virtualMachines")) == 1


def test_the_nsg_opens_the_added_range_only_when_the_stack_allows_added_hosts(
        tmp_path: Path) -> None:
    plain = azure_topology(tmp_path)
    assert not [r for r in nsg_rules(plain) if "added" in r.name]
    rules = {r.name: r for r in nsg_rules(with_added_hosts(plain, 2))}
    api = rules["allow-stock-api-added-hosts"]
    assert api.destinations == ("10.20.1.128/25",) and api.ports == (3021, 3022, 3023)
    assert set(api.sources) == {"10.20.1.4/32", "10.20.1.6/32"}  # Kong and Prometheus
    ssh = rules["allow-admin-ssh-added-hosts"]
    assert ssh.sources == ("198.51.100.0/24",) and ssh.ports == (22,)
    assert ipaddress.ip_address(added_address(plain, "added-1")) in ipaddress.ip_network(
        "10.20.1.128/25")


def test_growth_beyond_what_the_stack_opened_is_refused_naming_the_fields(rig: Rig) -> None:
    assert rig.pool.growth is not None
    too_many = rig.pool.growth.model_copy(update={"max_added_hosts": 2})
    with pytest.raises(ConfigError, match=r"pool.growth.max_added_hosts: 2 exceeds "
                                          r"azure.added_hosts \(1\)"):
        AzureHostFactory(too_many, STACK, rig.topo, rig.make_clients(), PUBLIC_KEY,
                         rig.known_hosts, rig.installer)
    too_big = rig.pool.growth.model_copy(update={"capacity": 4})
    with pytest.raises(ConfigError, match=r"pool.growth.capacity: 4 exceeds the stock API's "
                                          r"count \(3\)"):
        AzureHostFactory(too_big, STACK, rig.topo, rig.make_clients(), PUBLIC_KEY,
                         rig.known_hosts, rig.installer)


def test_a_dry_run_says_it_would_add_and_changes_nothing(rig: Rig) -> None:
    assert rig.pool.growth is not None
    actions = HostGrowth(rig.pool, rig.pool.growth, rig.clock[0]).run(
        rig.factory(), FULL, 4, dry_run=True)
    assert [(a.kind, a.from_count, a.to_count, a.outcome) for a in actions] == [
        ("add_host", 1, 2, "dry_run")]
    assert rig.records() == []
    assert not [c for c in rig.arm.state.calls if c.method in ("PUT", "POST", "DELETE")
                and "added-" in c.path]

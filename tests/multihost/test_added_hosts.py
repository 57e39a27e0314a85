"""A full pool grows by a VM, end to end: the ARM double makes the VM (its public IP is a
namespace host's address, its host key that host's sshd key, read over ARM Run Command), the
real SSH installer runs deployments/install/pool-host.sh there detached, the host joins the
pool and an instance is placed on it; idle, it is removed again after the cool-down."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kongstack.core.procs import wait_until
from tasks.instances.added import FACTORIES, AddedHostStore, HostFactory, HostGrowthConfig
from tasks.instances.hosts import HOST_LABEL
from tasks.providers.azure.hostvm import AzureHostFactory, SshInstaller, added_address
from tasks.providers.azure.provision import AzureProvisioner
from tasks.providers.azure.remote import IMAGE_ENV
from tasks.tick.grow import grow_hosts
from tasks.tick.pool import PoolConfig, build_multihost_driver
from tasks.tick.scaling_log import ScalingLog
from tests.multihost.test_pool import (
    BASE_PORT,
    host_config,
    owned_on,
    remove_stack,
    status_output,
)
from tests.providers.azure.arm_double import ArmServer, arm_double
from tests.providers.azure.conftest import azure_topology, clients_for
from tests.support.autoscale_stack import autoscale_stack
from tests.support.hostfactory import NetnsHostFactory
from tests.support.multihost import NetnsLab, netns_lab
from tests.support.services import redis_server

pytestmark = pytest.mark.timeout(300)

PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO2b2b0z1m0X6Qe4lLrpjUeN5V0K9dJwG2Xo3Yy1uP7w "
              "deploy")


@pytest.fixture
def arm(hosts: NetnsLab) -> Iterator[ArmServer]:
    vm_host = hosts.hosts[2]
    with arm_double(delays={"*": 0.1, "virtualMachines": 0.5, "runCommand": 0.3},
                    host_keys={"added-1": vm_host.ssh.host_public_key}) as server:
        server.state.next_public_ip = lambda: vm_host.address  # type: ignore[method-assign]
        yield server


def test_full_pool_gets_a_vm_installed_over_ssh_and_places_on_it(
        hosts: NetnsLab, arm: ArmServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    h1, _, vm_host = hosts.hosts
    stack = f"grow-{uuid.uuid4().hex[:8]}"
    # The VNet's subnet is the lab's: the added VM's private address (the subnet's .132) is
    # given to the namespace host that plays the VM, so the gateway side reaches it there.
    topo = azure_topology(tmp_path)
    topo = topo.model_copy(update={"azure": topo.azure.model_copy(update={
        "vnet_cidr": hosts.subnet, "subnet_cidr": hosts.subnet, "added_hosts": 1})})
    private = added_address(topo, "added-1")
    vm_host.run(["ip", "addr", "add", f"{private}/24", "dev", "eth0"])
    topo = topo.model_copy(update={"vms": [  # the namespace hosts' sshd admits root
        v.model_copy(update={"admin_username": "root"}) if v.name == "vm-kong" else v
        for v in topo.vms]})
    AzureProvisioner(topology=topo, clients=clients_for(arm), ssh_public_key=PUBLIC_KEY,
                     known_hosts=tmp_path / "deploy_known_hosts").ensure_shared()
    known_hosts = tmp_path / "known_hosts"  # empty: the added VM's key comes over ARM only
    state_dir = tmp_path / "install-state"

    def factory(config: HostGrowthConfig, pool_stack: str) -> HostFactory:
        installer = SshInstaller(private_key=None, key_file=hosts.key_file,
                                 known_hosts=known_hosts, env={IMAGE_ENV: hosts.image},
                                 state_dir=str(state_dir))
        return AzureHostFactory(config, pool_stack, topo, clients_for(arm), PUBLIC_KEY,
                                known_hosts, installer)

    monkeypatch.setitem(FACTORIES, "arm-double", factory)
    pool = PoolConfig.model_validate({
        "stack": stack, "base_port": BASE_PORT, "redis_url": "redis://192.0.2.1:6379/0",
        "local": {"image": hosts.image, "home": str(tmp_path / "home")},
        "hosts": [host_config(hosts, h1, 1).model_dump(mode="json")],
        "growth": {"provider": "arm-double", "capacity": 2, "max_added_hosts": 1,
                   "idle_cooldown_seconds": 0, "ssh_key_file": str(hosts.key_file)},
    })
    store = AddedHostStore(pool.added_hosts_file())
    try:
        driver = build_multihost_driver(pool)
        first = driver.start()
        assert first.labels[HOST_LABEL] == "h1"  # h1 is now full (capacity 1)
        driver.close()

        kinds: list[str] = []

        def state_is(state: str | None, desired: int = 3) -> bool:
            kinds.extend(f"{a.kind} {a.outcome}" for a in grow_hosts.fn(pool, desired=desired))
            records = store.load()
            return (not records) if state is None else bool(records) and \
                records[0].state == state

        wait_until(lambda: state_is("ready"), timeout=120, interval=0.2,
                   what="the added host ready")
        assert kinds[0] == "add_host pending" and kinds[-1] == "add_host ok", kinds
        assert (state_dir / "pool-host.rc").read_text().strip() == "0"
        assert "pool host ready" in (state_dir / "pool-host.log").read_text()
        assert known_hosts.read_text().split()[0] == vm_host.address

        driver = build_multihost_driver(pool)  # the next tick's driver: h1 and added-1
        placed = driver.start()
        assert placed.labels[HOST_LABEL] == "added-1"
        assert placed.address.split(":")[0] == private
        wait_until(lambda: _serving(placed.address), timeout=90,  # on the VM's private address
                   what="the instance on the added host")
        assert placed.id[:12] in {c[:12] for c in _ids_on(vm_host, stack)}
        assert any("added-1 (added): up 1/2" in s.line() for s in driver.status())
        driver.stop(placed.id, grace=1)
        driver.close()

        # idle (cool-down 0): removed from ARM and from the pool; h1 keeps its instance
        wait_until(lambda: state_is(None, desired=1), timeout=60, interval=0.2,
                   what="the host removed")
        assert "remove_host ok" in kinds
        assert not [r for r in arm.state.resources.values() if "added-1" in r["id"]]
        assert [h.name for h in pool.all_hosts()] == ["h1"]
        assert len(owned_on(h1, stack)) == 1
    finally:
        remove_stack(hosts, stack)
        vm_host.run(["ip", "addr", "del", f"{private}/24", "dev", "eth0"])


def _serving(address: str) -> bool:
    try:
        return httpx.get(f"http://{address}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _ids_on(host: object, stack: str) -> list[str]:
    client = host.docker_client(timeout=10)  # type: ignore[attr-defined]
    try:
        return [c.id for c in client.containers.list(
            all=True, filters={"label": f"kongstack.owner={stack}"})]
    finally:
        client.close()


@pytest.mark.usefixtures("prefect_harness")
def test_ticks_grow_a_full_pool_by_a_new_namespace_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local provider's equivalent, through the autoscale flow itself: one host of
    capacity 1 and a policy that wants 2. The first tick starts 1 (the other finds no room)
    and starts a host; it comes up in the background; a later tick places the instance on
    it. The history, the tick's summary and ``kongstack status`` show the added host."""
    with netns_lab(1) as lab, redis_server(tmp_path / "redis", bind=lab.gateway) as (
            redis_host, redis_port, _):
        made: list[NetnsHostFactory] = []

        def factory(config: HostGrowthConfig, pool_stack: str) -> HostFactory:
            if not made:  # one factory for the test: it owns the hosts it made
                made.append(NetnsHostFactory(lab, config))
            return made[0]

        monkeypatch.setitem(FACTORIES, "netns", factory)
        pool = {"hosts": [host_config(lab, lab.hosts[0], 1).model_dump(mode="json")],
                "base_port": BASE_PORT, "data_dir": None, "local": {"image": lab.image},
                "growth": {"provider": "netns", "capacity": 2, "max_added_hosts": 1}}
        with autoscale_stack(tmp_path / "stack", driver="docker",
                             redis_url=f"redis://{redis_host}:{redis_port}/0",
                             policy={"min_instances": 2, "max_instances": 3,
                                     "target_rps_per_instance": 100000.0},
                             pool_overrides=pool) as s:
            try:
                first = s.tick()
                assert first["after"] == 1, first
                assert "scale_up 0->1 partial" in first["actions"], first
                assert "add_host 1->1 pending" in first["actions"], first
                summaries = [first]
                for _ in range(6):  # bounded: each tick moves the host on
                    made[0].wait()
                    summaries.append(s.tick())
                    if summaries[-1]["after"] == 2:
                        break
                actions = [a for summary in summaries for a in summary["actions"]]
                assert "add_host 1->2 ok" in actions, summaries
                assert summaries[-1]["after"] == 2, summaries
                assert Counter(i.labels[HOST_LABEL] for i in s.driver().list()) == {
                    "h1": 1, "added-1": 1}
                added = lab.hosts[1]
                assert {t.split(":")[0] for t in s.targets()} == {lab.hosts[0].address,
                                                                 added.address}
                kinds = {(e.kind, e.outcome) for e in
                         ScalingLog(s.config.record.scaling_log_path).recent(50)}
                assert {("add_host", "pending"), ("add_host", "ok")} <= kinds
                status = status_output(s, tmp_path)
                assert "host added-1 (added): up 1/2" in status
            finally:
                remove_stack(lab, s.config.pool.stack)

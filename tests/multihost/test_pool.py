"""A pool over several hosts (tasks/instances/multihost.py) on the namespace hosts: spread
placement, capacity, bad hosts named while the rest keeps working, and a host lost under
load (link cut or engine killed) with its instances replaced and its leftovers removed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from kongstack.core.procs import wait_until
from kongstack.core.settings import REPO_ROOT
from tasks.instances.base import InstanceState
from tasks.instances.common import DockerSettings
from tasks.instances.hosts import HOST_LABEL, LOST_LABEL, HostConfig, HostStateStore
from tasks.instances.multihost import MultiHostDriver, PoolFullError
from tests.support.autoscale_stack import API_HEADERS, Stack, autoscale_stack
from tests.support.multihost import NetnsHost, NetnsLab, netns_lab
from tests.support.services import redis_server
from tests.support.sshd import ed25519_keypair

pytestmark = pytest.mark.timeout(600)

BASE_PORT = 18400


def host_config(lab: NetnsLab, host: NetnsHost, capacity: int, **extra: Any) -> HostConfig:
    return HostConfig.model_validate({
        "name": host.name, "docker_host": host.docker_url, "capacity": capacity,
        "ssh_key_file": lab.key_file, "known_hosts_file": lab.known_hosts,
        "timeout_seconds": 10, **extra})


def stack_name() -> str:
    return f"mh-{uuid.uuid4().hex[:8]}"


def owned_on(host: NetnsHost, stack: str) -> list[str]:
    client = host.docker_client(timeout=10)
    try:
        found = client.containers.list(all=True, filters={"label": f"kongstack.owner={stack}"})
        return [c.name for c in found]
    finally:
        client.close()


def remove_stack(lab: NetnsLab, stack: str) -> None:
    for host in lab.hosts:
        if host.is_cut:
            continue
        client = host.docker_client(timeout=10)
        try:
            owned = {"label": f"kongstack.owner={stack}"}
            for container in client.containers.list(all=True, filters=owned):
                container.remove(force=True)
            for volume in client.volumes.list(filters=owned):
                volume.remove(force=True)
        finally:
            client.close()


@pytest.fixture
def redis_on_bridge(hosts: NetnsLab, tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path / "redis", bind=hosts.gateway) as (host, port, _):
        yield f"redis://{host}:{port}/0"


def driver_for(lab: NetnsLab, hosts: list[HostConfig], stack: str, redis_url: str,
               tmp_path: Path) -> MultiHostDriver:
    base = DockerSettings(stack=stack, base_port=BASE_PORT, host="0.0.0.0", redis_url=redis_url,
                          image=lab.image)
    return MultiHostDriver(hosts, base, HostStateStore(tmp_path / "hosts.json"))


def test_spread_placement_fills_hosts_by_free_room(hosts: NetnsLab, redis_on_bridge: str,
                                                   tmp_path: Path) -> None:
    h1, h2, h3 = hosts.hosts
    stack = stack_name()
    driver = driver_for(hosts, [host_config(hosts, h1, 2), host_config(hosts, h2, 1),
                                host_config(hosts, h3, 1)], stack, redis_on_bridge, tmp_path)
    try:
        placed = [driver.start() for _ in range(4)]
        # free room 2,1,1 -> h1; then 1,1,1 -> h1 has more used, so h2, h3; then h1
        assert [i.labels[HOST_LABEL] for i in placed] == ["h1", "h2", "h3", "h1"]
        assert {i.address.split(":")[0] for i in placed} == {h1.address, h2.address, h3.address}
        with pytest.raises(PoolFullError, match=r"h1: up 2/2.*h2: up 1/1.*h3: up 1/1"):
            driver.start()
        ready = driver.wait_ready(placed[1], timeout=90)
        assert ready.state is InstanceState.READY and ready.labels[HOST_LABEL] == "h2"
        assert httpx.get(f"http://{ready.address}/ready", timeout=3).status_code == 200
        # A fresh driver (the next tick) sees the same pool, each instance with its host.
        listed = driver_for(hosts, [host_config(hosts, h, 2) for h in (h1, h2, h3)], stack,
                            redis_on_bridge, tmp_path).list()
        assert Counter(i.labels[HOST_LABEL] for i in listed) == {"h1": 2, "h2": 1, "h3": 1}
        for inst in placed:
            driver.stop(inst.id, grace=2)
        assert driver.list() == []
    finally:
        driver.close()
        remove_stack(hosts, stack)


def test_bad_hosts_are_named_and_the_rest_keeps_working(hosts: NetnsLab, redis_on_bridge: str,
                                                        tmp_path: Path) -> None:
    """A host whose engine lacks the image, one with a key it does not accept and one listed
    at an address nothing answers on: each gets a status line; instances go to the good host;
    nothing is left behind on the bad ones."""
    h1 = hosts.hosts[0]
    wrong_key = tmp_path / "wrong_key"
    wrong_key.write_text(ed25519_keypair("not-authorized")[0])
    wrong_key.chmod(0o600)
    with netns_lab(1, with_image=False) as bare:
        blank = bare.hosts[0]
        stack = stack_name()
        configs = [
            host_config(bare, blank, 3, name="a-noimage"),
            host_config(hosts, hosts.hosts[1], 3, name="b-badkey", ssh_key_file=wrong_key),
            host_config(hosts, h1, 3, name="c-nobody",
                        docker_host=f"ssh://root@{hosts.subnet.rsplit('.', 1)[0]}.99"),
            host_config(hosts, h1, 3),
        ]
        driver = driver_for(hosts, configs, stack, redis_on_bridge, tmp_path)
        try:
            assert driver.list() == []
            started = driver.start()
            assert started.labels[HOST_LABEL] == "h1"
            lines = {s.name: s.line() for s in driver.status()}
            assert "unusable" in lines["a-noimage"] and "lacks image" in lines["a-noimage"]
            assert lines["b-badkey"].startswith("b-badkey: down") and "Authentication" in lines[
                "b-badkey"]
            assert lines["c-nobody"].startswith("c-nobody: down")
            assert lines["h1"] == "h1: up 1/3"
            assert owned_on(blank, stack) == []  # the refused create left nothing
            driver.stop(started.id, grace=2)
        finally:
            driver.close()
            remove_stack(hosts, stack)


@pytest.mark.usefixtures("prefect_harness")
def test_engines_reached_with_keys_from_secret_blocks(hosts: NetnsLab, redis_on_bridge: str,
                                                      tmp_path: Path) -> None:
    """A host whose key lives in a Prefect Secret block (as an added Azure VM's does) serves;
    one whose block holds a key it does not accept, or names no block, is down with a status
    line naming why, never showing the key; the pool goes on without them."""
    from prefect.blocks.system import Secret

    suffix = uuid.uuid4().hex[:8]
    good_key, wrong_key = hosts.key_file.read_text(), ed25519_keypair("not-authorized")[0]
    for name, key in ((f"pool-key-{suffix}", good_key), (f"wrong-key-{suffix}", wrong_key)):
        Secret(value=SecretStr(key)).save(name)
    h1, h2 = hosts.hosts[0], hosts.hosts[1]
    stack = stack_name()
    configs = [
        host_config(hosts, h2, 3, name="a-wrongkey", ssh_key_file=None,
                    ssh_key_secret=f"wrong-key-{suffix}"),
        host_config(hosts, h2, 3, name="b-noblock", ssh_key_file=None,
                    ssh_key_secret=f"missing-{suffix}",
                    docker_host=f"ssh://root@{hosts.subnet.rsplit('.', 1)[0]}.98"),
        host_config(hosts, h1, 3, ssh_key_file=None, ssh_key_secret=f"pool-key-{suffix}"),
    ]
    driver = driver_for(hosts, configs, stack, redis_on_bridge, tmp_path)
    try:
        started = driver.start()
        assert started.labels[HOST_LABEL] == "h1"
        assert driver.wait_ready(started, timeout=60).state is InstanceState.READY
        lines = {s.name: s.line() for s in driver.status()}
        assert lines["a-wrongkey"].startswith("a-wrongkey: down")
        assert "Authentication" in lines["a-wrongkey"]
        assert lines["b-noblock"].startswith("b-noblock: down")
        assert f"ssh_key_secret: Secret block 'missing-{suffix}' not found" in lines["b-noblock"]
        assert lines["h1"] == "h1: up 1/3"
        shown = " ".join(lines.values())
        assert good_key.splitlines()[1] not in shown and wrong_key.splitlines()[1] not in shown
        driver.stop(started.id, grace=2)
    finally:
        driver.close()
        remove_stack(hosts, stack)


# -- a host lost under load, through the real tick ------------------------------------------


class Load:
    """Requests through the gateway in a loop; failures counted after ``mark()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.marked = False
        self.ok_after = 0
        self.failed_after: list[str] = []
        self.total = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10, headers=API_HEADERS) as client:  # the gateway is keyed
            while not self.stop.is_set():
                try:
                    code = client.get(f"{self.url}/api/stocks").status_code
                    outcome = None if code == 200 else f"HTTP {code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self.lock:
                    self.total += 1
                    if self.marked:
                        if outcome is None:
                            self.ok_after += 1
                        else:
                            self.failed_after.append(outcome)

    def mark(self) -> None:
        with self.lock:
            self.marked = True

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def hosts_of(stack: Stack) -> Counter[str]:
    driver = stack.driver()
    try:
        return Counter(i.labels.get(HOST_LABEL, "?") for i in driver.list()
                       if i.state is InstanceState.READY)
    finally:
        close = getattr(driver, "close", None)
        if callable(close):
            close()


def status_output(stack: Stack, tmp_path: Path) -> str:
    """``kongstack status`` for the stack's pool: a host column and one line per host."""
    from typer.testing import CliRunner

    from kongstack.cli.app import app

    config = tmp_path / "autoscale.yaml"
    config.write_text(stack.config.model_dump_json())  # JSON is YAML
    result = CliRunner().invoke(app, ["status", "--config", str(config)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def target_hosts(stack: Stack) -> set[str]:
    return {t.split(":")[0] for t in stack.targets()}


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("fault", ["cut", "kill_engine"])
def test_a_lost_host_is_replaced_under_load_and_cleaned_when_back(
        fault: str, hosts: NetnsLab, redis_on_bridge: str, tmp_path: Path) -> None:
    h1, h2, h3 = hosts.hosts
    pool = {"hosts": [host_config(hosts, h, 2).model_dump(mode="json") for h in hosts.hosts],
            "base_port": BASE_PORT, "data_dir": None, "drain_seconds": 2.0,
            "local": {"image": hosts.image}}
    with autoscale_stack(tmp_path / "stack", driver="docker", redis_url=redis_on_bridge,
                         policy={"min_instances": 3, "max_instances": 6,
                                 "target_rps_per_instance": 100000.0},
                         pool_overrides=pool) as s:
        try:
            first = s.tick()
            assert first["after"] == 3, first
            assert hosts_of(s) == {"h1": 1, "h2": 1, "h3": 1}  # spread: one per host
            assert target_hosts(s) == {h1.address, h2.address, h3.address}
            lost_container = owned_on(h2, s.config.pool.stack)
            assert len(lost_container) == 1

            with Load(s.gateway_url) as load:
                wait_until(lambda: load.total >= 20, timeout=60, what="load through nginx")
                h2.cut() if fault == "cut" else h2.kill_engine()
                replaced = s.tick()  # repair: h2 down, its instance lost and replaced
                # From here on (the lost target is out of nginx) nothing may fail.
                load.mark()
                assert any("repair" in a and "ok" in a for a in replaced["actions"]), replaced
                assert replaced["after"] == 3, replaced
                assert hosts_of(s) == {"h1": 2, "h3": 1}
                assert target_hosts(s) == {h1.address, h3.address}
                shown = status_output(s, tmp_path)
                assert "host h2: down" in shown and "host h1: up 2/2" in shown, shown
                wait_until(lambda: load.ok_after >= 50, timeout=120,
                           what="requests through the gateway after the replacement")
                steady = s.tick()
                assert steady["actions"] == [], steady  # nothing stuck, nothing to repair
            assert load.failed_after == [], Counter(load.failed_after)

            h2.heal()  # link up / engine started: the host answers again
            back = s.tick()
            assert back["after"] == 3, back
            assert owned_on(h2, s.config.pool.stack) == []  # the leftover is gone
            assert hosts_of(s) == {"h1": 2, "h3": 1}
            store = HostStateStore(s.config.pool.host_state_file()).load()
            assert store["h2"].down_since is None and store["h2"].leftovers == []
        finally:
            h2.heal()
            remove_stack(hosts, s.config.pool.stack)


def test_lost_instances_carry_the_reason(hosts: NetnsLab, redis_on_bridge: str,
                                         tmp_path: Path) -> None:
    """What the tick's repair sees on a cut host: its last-seen instance, EXITED, with why;
    a stop of it is a promise to remove it later, not a hang."""
    h3 = hosts.hosts[2]
    stack = stack_name()
    driver = driver_for(hosts, [host_config(hosts, h3, 1)], stack, redis_on_bridge, tmp_path)
    try:
        inst = driver.start()
        driver.close()
        h3.cut()
        again = driver_for(hosts, [host_config(hosts, h3, 1)], stack, redis_on_bridge, tmp_path)
        (lost,) = again.list()
        assert lost.id == inst.id and lost.state is InstanceState.EXITED
        assert lost.labels[LOST_LABEL].startswith("host h3 down")
        again.stop(lost.id)
        assert again.list() == []  # given up: not reported again
        with pytest.raises(PoolFullError, match="h3: down"):
            again.start()
        again.close()
        h3.restore()
        back = driver_for(hosts, [host_config(hosts, h3, 1)], stack, redis_on_bridge, tmp_path)
        assert back.list() == []
        assert owned_on(h3, stack) == []
        back.close()
    finally:
        h3.heal()
        remove_stack(hosts, stack)


@pytest.mark.usefixtures("prefect_harness")
def test_a_tick_killed_while_placing_is_repaired_by_the_next(
        hosts: NetnsLab, redis_on_bridge: str, tmp_path: Path) -> None:
    """The tick runs in its own process (as a worker's would) and is killed once it has
    placed its instances on the hosts and before any became a gateway target."""
    from prefect.settings import PREFECT_API_URL

    pool = {"hosts": [host_config(hosts, h, 2).model_dump(mode="json") for h in hosts.hosts],
            "base_port": BASE_PORT, "data_dir": None, "local": {"image": hosts.image}}
    with autoscale_stack(tmp_path / "stack", driver="docker", redis_url=redis_on_bridge,
                         policy={"min_instances": 3, "max_instances": 6,
                                 "target_rps_per_instance": 100000.0},
                         pool_overrides=pool) as s:
        try:
            cfg = tmp_path / "tick-config.json"
            cfg.write_text(s.config.model_dump_json())
            env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
            proc = subprocess.Popen([sys.executable, "-m", "tests.tick.doomed_tick", str(cfg)],
                                    cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
            try:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == "started", "the tick never placed"
            finally:
                proc.kill()
                proc.wait(timeout=30)
            placed = {h.name: owned_on(h, s.config.pool.stack) for h in hosts.hosts}
            assert [len(v) for v in placed.values()] == [1, 1, 1], placed  # spread
            assert s.targets() == []  # killed before any became a target
            for _ in range(6):  # bounded: each tick registers what has become ready
                result = s.tick()
                assert result["after"] == 3, result
                if len(target_hosts(s)) == 3 and len(s.targets()) == 3:
                    break
                wait_until(lambda: sum(hosts_of(s).values()) > len(s.targets()), timeout=60,
                           what="another placed instance ready")
            assert target_hosts(s) == {h.address for h in hosts.hosts}
            after = {h.name: owned_on(h, s.config.pool.stack) for h in hosts.hosts}
            assert after == placed  # repaired, not duplicated
        finally:
            remove_stack(hosts, s.config.pool.stack)

"""The namespace hosts behave as separate machines: each its own address, hostname, sshd and
engine, reached only through its address with the docker SDK over SSH."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import pytest

from kongstack.core.procs import free_port, port_open, wait_until
from tasks.instances.base import InstanceState
from tasks.instances.common import DockerSettings
from tasks.instances.docker import DockerDriver
from tests.multihost.conftest import IMAGE
from tests.support.multihost import NetnsLab
from tests.support.services import redis_server

pytestmark = pytest.mark.timeout(180)


def serving(address: str, port: int) -> bool:
    try:
        return httpx.get(f"http://{address}:{port}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_each_host_is_its_own_machine(hosts: NetnsLab) -> None:
    addresses = [h.address for h in hosts.hosts]
    assert len(set(addresses)) == 3
    assert all(a.startswith(hosts.subnet.rsplit(".", 1)[0] + ".") for a in addresses)
    roots, names = set(), set()
    for host in hosts.hosts:
        client = host.docker_client(timeout=10)
        info = client.info()
        roots.add(info["DockerRootDir"])
        names.add(info["Name"])
        assert client.images.get(IMAGE).tags  # the stock image, without a registry
        client.close()
        # Over SSH, `hostname` and `docker` are the host's own.
        out = subprocess.run(
            ["ssh", "-F", str(hosts.ssh_home / ".ssh" / "config"), host.address,
             "hostname && docker info --format '{{.Store.GraphRoot}}'"],
            capture_output=True, text=True, timeout=30, env=hosts.ssh_env(), check=True,
        ).stdout.split()
        assert out[0] == host.netns
        assert out[1] in roots
    assert len(roots) == 3, "each host has its own storage"
    assert names == {h.netns for h in hosts.hosts}


def test_containers_spread_over_two_hosts(hosts: NetnsLab, run_label: dict[str, str]) -> None:
    """The same port on two hosts: two containers, each answering on its own host's address
    only, each engine listing only its own."""
    h1, h2 = hosts.hosts[0], hosts.hosts[1]
    # Free on this (root) namespace, so the leak check below cannot see someone else's
    # listener (a demo's first instance is on 18101).
    port = free_port()
    clients = {h.name: h.docker_client(timeout=10) for h in (h1, h2)}
    started = {}
    for host in (h1, h2):
        started[host.name] = clients[host.name].containers.run(
            host.image, detach=True, network_mode="host", labels=run_label,
            name=f"spread-{host.name}-{run_label['kongstack.test-run']}",
            environment={"PORT": str(port), "INSTANCE_ID": f"api-on-{host.name}"},
        )
    for host in (h1, h2):
        wait_until(partial(serving, host.address, port), timeout=60, what=f"API on {host.name}")
        body = httpx.get(f"http://{host.address}:{port}/health", timeout=2).json()
        assert body["instance_id"] == f"api-on-{host.name}"
    assert not port_open("127.0.0.1", port), "nothing leaks onto the root namespace"
    assert not serving(hosts.hosts[2].address, port), "the third host runs nothing"

    selector = {"label": f"kongstack.test-run={run_label['kongstack.test-run']}"}
    for host in (h1, h2):
        listed = clients[host.name].containers.list(filters=selector)
        assert [c.id for c in listed] == [started[host.name].id]
        stats = listed[0].stats(stream=False)
        assert stats["memory_stats"]["usage"] > 0
        assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    for host in (h1, h2):
        started[host.name].stop(timeout=5)
        started[host.name].remove()
        assert clients[host.name].containers.list(all=True, filters=selector) == []
        assert not serving(host.address, port)
        clients[host.name].close()


def test_stock_sdk_reaches_a_host_with_the_lab_home(hosts: NetnsLab) -> None:
    """A subprocess using plain ``docker.DockerClient(base_url="ssh://root@ADDR")`` (as the
    product's DockerDriver does) works with ``lab.ssh_env()``: key, config, known hosts."""
    host = hosts.hosts[1]
    code = ("import docker, json, sys; c = docker.DockerClient(base_url=sys.argv[1], timeout=10);"
            "print(json.dumps({'name': c.info()['Name'], 'images': [t for i in c.images.list()"
            " for t in i.tags]}))")
    out = subprocess.run([sys.executable, "-c", code, host.docker_url], capture_output=True,
                         text=True, timeout=60, env=hosts.ssh_env(), check=True).stdout
    seen = json.loads(out)
    assert seen["name"] == host.netns
    assert IMAGE in seen["images"]


def test_product_docker_driver_runs_an_instance_on_a_host(
    hosts: NetnsLab, tmp_path: Path
) -> None:
    """tasks.instances.DockerDriver, unchanged, on an ssh:// namespace host: the instance
    binds on the host, reaches Redis in the root namespace through the bridge, is ready on
    the host's address, and is gone after stop."""
    host = hosts.hosts[2]
    with redis_server(tmp_path, bind=hosts.gateway) as (redis_host, redis_port, _):
        settings = DockerSettings(
            base_url=host.docker_url, base_port=18300, host="0.0.0.0",
            stack=f"mh-{tmp_path.name[-12:].lower().replace('_', '-')}".rstrip("-"),
            redis_url=f"redis://{redis_host}:{redis_port}/0",
        )
        driver = DockerDriver(settings, client=host.docker_client(timeout=15))
        instance = driver.start()
        try:
            assert instance.address == f"{host.address}:18300"
            ready = driver.wait_ready(instance, timeout=60)
            assert ready.state is InstanceState.READY
            assert [i.name for i in driver.list()] == [instance.name]
            assert httpx.get(f"http://{instance.address}/ready", timeout=2).status_code == 200
        finally:
            driver.stop(instance.id, grace=5)
            owned = {"label": f"kongstack.owner={settings.stack}"}
            for volume in driver.client.volumes.list(filters=owned):
                volume.remove(force=True)
        assert driver.list() == []
        assert not serving(host.address, 18300)

"""The lab's own life cycle: hosts added, a host without the image, clean teardown, and a
crashed run's leftovers removed by name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from kongstack.core.procs import pid_alive, port_open
from kongstack.core.settings import REPO_ROOT
from tests.multihost.conftest import IMAGE
from tests.support import netns
from tests.support.multihost import NetnsLab, netns_lab
from tests.support.netns import SlotNames

pytestmark = pytest.mark.timeout(240)

CRASHING_RUN = f"""
import sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from kongstack.core.procs import port_open, wait_until
from tests.support.multihost import netns_lab
context = netns_lab(1)  # kept referenced: a collected generator would tear the lab down
lab = context.__enter__()
host = lab.hosts[0]
host.docker_client().containers.run(host.image, detach=True, network_mode="host",
                                     environment={{"PORT": "18120"}})
wait_until(lambda: port_open(host.address, 18120), timeout=60, what="the API")
print(lab.names.slot, host.engine.daemon.pid(), flush=True)
sys.stdin.read()  # until killed: no teardown ever runs
"""


def leftovers(names: SlotNames) -> list[str]:
    found = [f"netns {n}" for n in netns.slot_netns(names)]
    links = netns.ip("-o", "link", "show").stdout
    found += [f"link {names.bridge}"] if f": {names.bridge}:" in links else []
    found += [f"dir {names.state_dir}"] if names.state_dir.exists() else []
    mounts = Path("/proc/self/mountinfo").read_text()
    found += ["mounts"] if f" {names.state_dir}/" in mounts else []
    pinned = subprocess.run(["podman", "image", "exists", netns.pinned_image(names.slot)],
                            timeout=60).returncode == 0
    found += [f"image tag {netns.pinned_image(names.slot)}"] if pinned else []
    pin = subprocess.run(["podman", "container", "exists", netns.pin_container(names.slot)],
                         timeout=60).returncode == 0
    found += [f"container {netns.pin_container(names.slot)}"] if pin else []
    return found


def test_crashed_run_is_cleaned_by_name(hosts: NetnsLab) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_RUN], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the lab is up and its container serves
    assert line, f"the crashing run failed to start (exit {proc.wait(timeout=30)})"
    slot, engine_pid = (int(v) for v in line.split())
    names = SlotNames(slot)
    address = names.address(1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert slot != hosts.names.slot
    # The crash left everything behind: namespace, bridge, engine, container, mounts, and
    # the image pin (tag and container in the main store).
    assert len(leftovers(names)) == 6, leftovers(names)
    assert pid_alive(engine_pid)
    assert port_open(address, 18120)

    assert slot in netns.sweep_stale()
    assert leftovers(names) == []
    assert not pid_alive(engine_pid)
    assert not port_open(address, 18120, timeout=1.0)
    assert netns.sweep_stale() == []  # idempotent
    # The sweep never touches a slot that a live run holds.
    assert all(h.docker_client(timeout=5).ping() for h in hosts.hosts)


def test_added_host_and_host_without_the_image() -> None:
    with netns_lab(1, with_image=False) as lab:
        bare = lab.hosts[0]
        added = lab.add_host()
        assert [h.name for h in lab.hosts] == ["h1", "h2"]
        assert added.address == lab.names.address(2)
        bare_client = bare.docker_client(timeout=10)
        with pytest.raises(docker.errors.ImageNotFound):
            bare_client.images.get(IMAGE)
        with pytest.raises(docker.errors.APIError, match="kongstack-stock-api"):
            bare_client.containers.run(lab.image, detach=True, network_mode="host")
        assert bare_client.containers.list(all=True) == []
        ran = added.docker_client(timeout=10).containers.run(
            added.image, ["python3", "-c", "import socket; print(socket.gethostname())"],
            network_mode="host", remove=True)
        assert ran.decode().strip() == added.netns
        names = lab.names
    assert leftovers(names) == []

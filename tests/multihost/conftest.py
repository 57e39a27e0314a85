from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.multihost import NetnsLab, netns_lab

IMAGE = "localhost/kongstack-stock-api:latest"


@pytest.fixture(scope="session")
def netns_hosts() -> Iterator[NetnsLab]:
    """Three namespace hosts (sshd + Podman engine each) for the whole session (~1 s)."""
    with netns_lab(3) as lab:
        yield lab


@pytest.fixture
def hosts(netns_hosts: NetnsLab) -> Iterator[NetnsLab]:
    """The session's hosts, every fault undone after the test (link up, engine running)."""
    yield netns_hosts
    netns_hosts.heal_all()


@pytest.fixture
def run_label(hosts: NetnsLab) -> Iterator[dict[str, str]]:
    """A label unique to this test; its containers are removed from every host afterwards."""
    label = {"kongstack.test-run": uuid.uuid4().hex[:12]}
    yield label
    selector = f"kongstack.test-run={label['kongstack.test-run']}"
    for host in hosts.hosts:
        client = host.docker_client(timeout=10)
        for container in client.containers.list(all=True, filters={"label": selector}):
            container.remove(force=True)
        client.close()

"""DockerDriver on the Podman socket (Docker Engine API) with the real stock API image:
the container path of issue 2 (build, run, /ready, stats, stop) plus labels, limits, the shared
store and exited containers. Skipped with the reason when no engine answers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from kongstack import OWNER_LABEL
from kongstack.procs import port_open
from tasks.containers import DockerDriver
from tasks.drivers import DockerSettings, ProcessSettings
from tasks.instances import InstanceDriver, InstanceState
from tasks.processes import ProcessDriver

pytestmark = [pytest.mark.engine, pytest.mark.timeout(180)]

STOCK = {
    "symbol": "KSTK", "name": "Kongstack Containers", "exchange": "NASDAQ",
    "sector": "Information Technology", "currency": "USD", "price": 42.5,
}


def test_container_path_build_run_ready_stats_stop(docker_driver: DockerDriver) -> None:
    assert isinstance(docker_driver, InstanceDriver)
    image = docker_driver.client.images.get(docker_driver.settings.image)
    assert image.labels.get("kongstack.image.content-hash")  # built by scripts/build-image
    assert OWNER_LABEL not in image.labels  # only containers are owned, never the image

    started = docker_driver.start()
    assert started.state is InstanceState.STARTING
    ready = docker_driver.wait_ready(started, timeout=60)
    assert ready.state is InstanceState.READY

    port = ready.address.split(":")[1]
    assert ready.address == f"127.0.0.1:{port}"
    assert ready.name == f"kongstack-api-{port}"
    assert httpx.get(f"http://{ready.address}/ready", timeout=5).status_code == 200
    container = docker_driver.client.containers.get(ready.id)
    assert container.labels[OWNER_LABEL] == docker_driver.settings.stack
    assert container.labels["kongstack.role"] == "stock-api"
    assert container.labels["kongstack.port"] == port
    host_config = container.attrs["HostConfig"]
    assert host_config["NetworkMode"] == "host"
    assert container.attrs["Config"]["User"] == "stockapi"  # the image's non-root user
    [listed] = docker_driver.list()
    assert listed.id == ready.id and listed.state is InstanceState.READY

    stats = docker_driver.stats(ready.id)
    assert stats.cpu_percent is not None and 0 <= stats.cpu_percent <= 100
    assert stats.memory_bytes is not None and stats.memory_bytes > 10 * 2**20
    assert stats.memory_percent is not None
    # memory % is of the container's own 256 MiB cgroup limit, read back from the engine.
    limit = stats.memory_bytes / (stats.memory_percent / 100)
    assert abs(limit - 256 * 2**20) < 2**20
    assert "Booting worker" in docker_driver.logs(ready.id, tail=200)

    docker_driver.stop(ready.id, grace=5)
    assert docker_driver.list() == []
    assert not port_open("127.0.0.1", int(port))
    docker_driver.stop(ready.id, grace=5)  # idempotent: missing counts as done


def test_cpu_and_memory_limits_are_applied_or_explained(docker_driver: DockerDriver) -> None:
    instance = docker_driver.start()
    host_config = docker_driver.client.containers.get(instance.id).attrs["HostConfig"]
    if docker_driver.limits_note is not None:
        pytest.skip(docker_driver.limits_note)  # the engine said it cannot; the driver said so
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Memory"] == 256 * 2**20


def test_store_written_by_a_container_is_read_by_a_process_instance(
    docker_driver: DockerDriver, docker_settings: DockerSettings, tmp_path: Path,
) -> None:
    container = docker_driver.wait_ready(docker_driver.start(), timeout=60)
    created = httpx.post(f"http://{container.address}/api/stocks", json=STOCK, timeout=10)
    assert created.status_code == 201, created.text

    process = ProcessDriver(ProcessSettings(
        stack=docker_settings.stack, redis_url=docker_settings.redis_url,
        data_dir=docker_settings.data_dir, run_dir=tmp_path / "run", log_dir=tmp_path / "log",
    ))
    try:
        reader = process.wait_ready(process.start(), timeout=60)
        got = httpx.get(f"http://{reader.address}/api/stocks/KSTK", timeout=10)
        assert got.status_code == 200
        assert got.json()["name"] == STOCK["name"]
    finally:
        for instance in process.list():
            process.stop(instance.id, grace=2)


def test_exited_container_is_listed_exited_until_stopped(docker_driver: DockerDriver) -> None:
    instance = docker_driver.wait_ready(docker_driver.start(), timeout=60)
    docker_driver.client.containers.get(instance.id).kill()  # a crash, as the engine sees it
    deadline = time.monotonic() + 10
    while docker_driver.list()[0].state is not InstanceState.EXITED:
        assert time.monotonic() < deadline, "killed container never showed as exited"
        time.sleep(0.1)
    stats = docker_driver.stats(instance.id)
    assert stats.cpu_percent is None and stats.memory_percent is None

    docker_driver.stop(instance.id)
    assert docker_driver.list() == []


def test_containers_of_other_stacks_are_invisible(
    docker_driver: DockerDriver, docker_settings: DockerSettings,
) -> None:
    other = DockerDriver(docker_settings.model_copy(update={"stack": "t-other-stack"}))
    mine = docker_driver.start()
    theirs = other.start()
    try:
        assert [i.id for i in docker_driver.list()] == [mine.id]
        assert [i.id for i in other.list()] == [theirs.id]
        assert mine.address != theirs.address  # ports are never shared across stacks
    finally:
        other.stop(theirs.id, grace=2)

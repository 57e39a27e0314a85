"""DockerDriver on the Podman socket (Docker Engine API) with the real stock API image:
the container path of issue 2 (build, run, /ready, stats, stop) plus labels, limits, the shared
store and exited containers. Skipped with the reason when no engine answers."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx
import pytest

from kongstack.core import OWNER_LABEL
from kongstack.core.procs import port_open
from kongstack.core.settings import LocalSettings
from tasks.instances.base import InstanceDriver, InstanceState
from tasks.instances.common import DockerSettings, ProcessSettings
from tasks.instances.docker import DockerDriver
from tasks.instances.factory import make_driver
from tasks.instances.process import ProcessDriver
from tests.support.instances import in_flight

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
    assert host_config["NanoCpus"] == 1_000_000_000
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


def test_cpu_limit_caps_a_busy_container(
    docker_settings: DockerSettings, engine_image: tuple[str, str],
) -> None:
    driver = DockerDriver(docker_settings.model_copy(update={"cpus": 0.25}))
    instance = driver.wait_ready(driver.start(), timeout=90)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                client.get(f"http://{instance.address}/api/stocks?per_page=200")

    workers = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        samples = [driver.stats(instance.id).cpu_percent for _ in range(3)]
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
        driver.stop(instance.id, grace=2)
    busy = [s for s in samples if s is not None]
    assert busy, "no CPU sample"
    assert max(busy) > 5  # it was working...
    assert max(busy) < 25 * 1.4  # ...but never beyond its quarter of a CPU (+ sampling jitter)


def test_stop_drains_an_in_flight_request(docker_driver: DockerDriver) -> None:
    instance = docker_driver.wait_ready(
        docker_driver.start(env={"STOCK_API_DEBUG_ENDPOINTS": "true"}), timeout=60
    )
    result: dict[str, int] = {}

    def slow_request() -> None:
        response = httpx.get(f"http://{instance.address}/debug/slow?seconds=1.5", timeout=15)
        result["status"] = response.status_code

    client = threading.Thread(target=slow_request)
    client.start()
    deadline = time.monotonic() + 10
    while in_flight(instance.address) < 2:  # the slow request + this scrape
        assert time.monotonic() < deadline, "the slow request never arrived"

    docker_driver.stop(instance.id, grace=10)
    client.join(timeout=15)

    assert result.get("status") == 200  # the engine's SIGTERM drained it, not a SIGKILL
    assert docker_driver.list() == []


def test_auto_picks_the_engine_when_it_answers_with_the_image(
    engine_image: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    base_url, _image = engine_image
    with caplog.at_level(logging.INFO, logger="kongstack.instances"):
        driver = make_driver("auto", settings=LocalSettings(home=tmp_path), docker_host=base_url)
    assert isinstance(driver, DockerDriver)
    assert "instance driver: docker" in caplog.text


def test_named_volume_store_is_writable_by_the_image_user(
    docker_settings: DockerSettings,
) -> None:
    driver = DockerDriver(docker_settings.model_copy(update={"data_dir": None}))
    volume_name = f"{docker_settings.stack}-stock-data"
    try:
        instance = driver.wait_ready(driver.start(), timeout=60)
        created = httpx.post(f"http://{instance.address}/api/stocks", json=STOCK, timeout=10)
        assert created.status_code == 201, created.text
        volume = driver.client.volumes.get(volume_name)
        assert volume.attrs["Labels"][OWNER_LABEL] == docker_settings.stack  # cleanup finds it
    finally:
        for listed in driver.list():
            driver.stop(listed.id, grace=2)
        driver.client.volumes.get(volume_name).remove(force=True)


def test_build_image_with_nothing_changed_does_nothing(engine_image: tuple[str, str]) -> None:
    import subprocess

    from kongstack.core.settings import REPO_ROOT

    done = subprocess.run([str(REPO_ROOT / "scripts" / "build-image")], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    if "sources changed" in done.stdout:  # stock_api/ was edited since the session fixture ran
        done = subprocess.run([str(REPO_ROOT / "scripts" / "build-image")],
                              capture_output=True, text=True, timeout=900)
    assert "nothing to do" in done.stdout
    assert "STEP" not in done.stdout  # no podman build ran

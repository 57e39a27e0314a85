"""ProcessDriver against the real stock API under gunicorn and a real Redis."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from kongstack.core import OWNER_LABEL
from kongstack.core.errors import InstanceError
from kongstack.core.procs import free_port_block, port_open
from tasks.instances.base import InstanceDriver, InstanceState
from tasks.instances.common import ProcessSettings
from tasks.instances.process import ProcessDriver
from tests.support.instances import in_flight

pytestmark = pytest.mark.timeout(120)


def _pid(driver: ProcessDriver, name: str) -> int:
    pid = driver._daemon(name).pid()
    assert pid is not None
    return pid


def test_two_instances_start_become_ready_and_serve(process_driver: InstanceDriver) -> None:
    assert isinstance(process_driver, InstanceDriver)
    first, second = process_driver.start(), process_driver.start()
    assert first.state is InstanceState.STARTING
    assert first.address != second.address

    ready = [process_driver.wait_ready(i, timeout=60) for i in (first, second)]

    assert all(i.state is InstanceState.READY for i in ready)
    for instance in ready:
        host, port = instance.address.split(":")
        assert host == "127.0.0.1"
        assert instance.name == f"kongstack-api-{port}"
        health = httpx.get(f"http://{instance.address}/health", timeout=5)
        assert health.status_code == 200
        # INSTANCE_ID is the instance name: logs and metrics tell instances apart.
        assert health.json()["instance_id"] == instance.name
    listed = {i.id: i for i in process_driver.list()}
    assert set(listed) == {first.id, second.id}
    assert all(i.state is InstanceState.READY for i in listed.values())
    labels = listed[first.id].labels
    assert labels[OWNER_LABEL] == first.labels[OWNER_LABEL]
    assert labels["kongstack.role"] == "stock-api"
    assert labels["kongstack.port"] == first.address.split(":")[1]


def test_stats_and_logs_reflect_the_running_instance(process_driver: InstanceDriver) -> None:
    instance = process_driver.wait_ready(process_driver.start(), timeout=60)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                client.get(f"http://{instance.address}/api/stocks?per_page=50")

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        process_driver.stats(instance.id)  # first call samples twice; the next uses deltas
        busy = process_driver.stats(instance.id)
    finally:
        stop.set()
        worker.join(timeout=10)

    assert busy.cpu_percent is not None and busy.cpu_percent > 1.0  # it is serving requests
    assert busy.cpu_percent <= 100.0 * (os.cpu_count() or 1) + 5
    assert busy.memory_bytes is not None and busy.memory_bytes > 20 * 2**20  # python + flask
    assert busy.memory_percent is not None and 0 < busy.memory_percent < 50
    logs = process_driver.logs(instance.id, tail=500)
    assert "/api/stocks" in logs  # the app's JSON request log reaches the instance log


def test_killed_instance_is_listed_exited_and_stop_is_idempotent(
    process_driver: ProcessDriver,
) -> None:
    instance = process_driver.wait_ready(process_driver.start(), timeout=60)
    port = int(instance.address.split(":")[1])
    os.kill(_pid(process_driver, instance.name), signal.SIGKILL)

    deadline = time.monotonic() + 10  # the signal is delivered asynchronously
    while process_driver.list()[0].state is not InstanceState.EXITED:
        assert time.monotonic() < deadline, "killed instance never showed as exited"
        time.sleep(0.05)
    [listed] = process_driver.list()
    assert listed.id == instance.id
    assert process_driver.stats(instance.id).cpu_percent is None

    process_driver.stop(instance.id, grace=2)
    process_driver.stop(instance.id, grace=2)  # missing counts as done
    process_driver.stop("kongstack-api-1", grace=2)  # never existed

    assert process_driver.list() == []
    # The orphaned gunicorn worker went with the group: the port is free again.
    deadline = time.monotonic() + 5
    while port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_open("127.0.0.1", port)


def test_stop_finds_a_server_whose_pid_file_was_never_written(
    process_driver: ProcessDriver,
) -> None:
    """A tick killed between spawning gunicorn and recording its pid leaves a live server
    that only its environment markers identify; stop() must still end it."""
    instance = process_driver.wait_ready(process_driver.start(), timeout=60)
    port = int(instance.address.split(":")[1])
    process_driver._daemon(instance.name).pidfile.unlink()  # the crash window, reproduced
    assert [i.state for i in process_driver.list()] == [InstanceState.EXITED]
    assert port_open("127.0.0.1", port)  # ...yet it still serves

    process_driver.stop(instance.id, grace=2)

    deadline = time.monotonic() + 5
    while port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_open("127.0.0.1", port)
    assert process_driver.list() == []


def test_stop_lets_an_in_flight_request_finish(process_driver: InstanceDriver) -> None:
    instance = process_driver.wait_ready(
        process_driver.start(env={"STOCK_API_DEBUG_ENDPOINTS": "true"}), timeout=60
    )
    result: dict[str, int] = {}

    def slow_request() -> None:
        response = httpx.get(f"http://{instance.address}/debug/slow?seconds=1.5", timeout=10)
        result["status"] = response.status_code

    client = threading.Thread(target=slow_request)
    client.start()
    deadline = time.monotonic() + 5
    while in_flight(instance.address) < 2:  # the slow request + this scrape
        assert time.monotonic() < deadline, "the slow request never arrived"

    process_driver.stop(instance.id, grace=10)
    client.join(timeout=10)

    assert result["status"] == 200  # SIGTERM drained it instead of killing it
    assert process_driver.list() == []


def test_not_ready_past_the_grace_is_degraded_and_unanswering_is_unhealthy(
    process_settings: ProcessSettings, redis_url: str
) -> None:
    """Readiness and liveness are separate (issue 16): an instance that is alive but cannot
    get ready (its store is down) is DEGRADED past the start-up grace, which the pool keeps;
    only one that no longer answers /live at all (here: stopped with SIGSTOP) is UNHEALTHY."""
    from kongstack.core.procs import Daemon, free_port

    # Its store never answers (nothing listens there): /ready answers 503. (A dead Redis
    # would not do: the API serves from the store then, ready and degraded.)
    dead_store = {"MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
                  "STOCK_API_STORE_TIMEOUT": "0.2"}
    grace = 3.0
    driver = ProcessDriver(process_settings.model_copy(update={"startup_grace": grace}))
    pid = None
    try:
        instance = driver.start(env=dead_store)
        with pytest.raises(InstanceError, match="not ready"):
            driver.wait_ready(instance, timeout=1)
        state = driver.list()[0].state
        young = (datetime.now(UTC) - instance.started_at).total_seconds() < grace
        if young:  # listed within the grace (the machine may be slow: then it is past it)
            assert state is InstanceState.STARTING
        deadline = time.monotonic() + 15
        while driver.list()[0].state is not InstanceState.DEGRADED:
            assert time.monotonic() < deadline, "never reported DEGRADED"
            time.sleep(0.2)
        pid = Daemon(instance.name, process_settings.run_dir).pid()
        assert pid is not None
        os.killpg(pid, signal.SIGSTOP)  # alive as a process, answers nothing
        deadline = time.monotonic() + 15
        while driver.list()[0].state is not InstanceState.UNHEALTHY:
            assert time.monotonic() < deadline, "never reported UNHEALTHY"
            time.sleep(0.2)
    finally:
        if pid is not None:
            os.killpg(pid, signal.SIGCONT)
        for i in driver.list():
            driver.stop(i.id, grace=2)


def test_instance_that_exits_at_start_fails_fast_with_its_log(
    process_driver: InstanceDriver,
) -> None:
    instance = process_driver.start(env={"STOCK_API_THREADS": "0"})  # rejected by its config
    started = time.monotonic()
    with pytest.raises(InstanceError, match="exited") as failure:
        process_driver.wait_ready(instance, timeout=60)
    assert time.monotonic() - started < 30  # did not wait out the whole timeout
    assert "threads" in str(failure.value).lower()  # the log tail names the bad setting
    assert process_driver.list()[0].state is InstanceState.EXITED


def test_new_instances_use_the_first_free_port_from_base(
    process_settings: ProcessSettings,
) -> None:
    base = free_port_block()
    driver = ProcessDriver(process_settings.model_copy(update={"base_port": base}))
    try:
        first = driver.start()
        second = driver.start()
        assert int(first.address.split(":")[1]) >= base
        assert second.address != first.address
    finally:
        for i in driver.list():
            driver.stop(i.id, grace=2)

"""The fault tools: a host cut off (link down) and back, a host's engine killed and back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import docker
import httpx
import paramiko
import pytest
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from kongstack.core.procs import port_open, wait_until
from tests.support.multihost import NetnsHost, NetnsLab

pytestmark = pytest.mark.timeout(240)

SDK_TIMEOUT = 3.0
# What a failed engine call raises through the SDK over SSH: HTTP timeouts and connection
# errors from requests, SSH errors (channel open timed out or refused) from paramiko.
ENGINE_DOWN = (requests.exceptions.RequestException, paramiko.SSHException, OSError,
               docker.errors.DockerException)


def serving(address: str, port: int) -> bool:
    try:
        return httpx.get(f"http://{address}:{port}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def failure_time(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    """(what ``call`` raised or None, seconds it took)."""
    started = time.monotonic()
    try:
        call()
    except ENGINE_DOWN as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def start_api(host: NetnsHost, label: dict[str, str], port: int) -> str:
    client = host.docker_client(timeout=10)
    container = client.containers.run(
        host.image, detach=True, network_mode="host", labels=label,
        name=f"fault-{host.name}-{label['kongstack.test-run']}", environment={"PORT": str(port)},
    )
    wait_until(lambda: serving(host.address, port), timeout=60, what=f"API on {host.name}")
    client.close()
    return str(container.id)


def bounded_client(host: NetnsHost) -> docker.DockerClient:
    """A client whose calls fail within ~SDK_TIMEOUT, connected while the engine is up.

    Connecting (SSH handshake and the engine's version) is itself bounded by SDK_TIMEOUT;
    on a loaded machine one attempt can miss it. What the test measures is how calls fail
    after the engine dies, so a slow connect to a live engine is retried, not a failure.
    """
    for attempt in Retrying(retry=retry_if_exception_type(ENGINE_DOWN),
                            stop=stop_after_attempt(5), wait=wait_exponential(max=4),
                            reraise=True):
        with attempt:
            return host.docker_client(timeout=SDK_TIMEOUT)
    raise AssertionError("unreachable")  # Retrying either returns or re-raises


def running_ids(client: docker.DockerClient, label: dict[str, str]) -> list[str]:
    selector = f"kongstack.test-run={label['kongstack.test-run']}"
    return [str(c.id) for c in client.containers.list(filters={"label": selector})]


def test_cut_host_fails_calls_within_the_timeout_and_recovers(
    hosts: NetnsLab, run_label: dict[str, str]
) -> None:
    host, other = hosts.hosts[2], hosts.hosts[0]
    port = 18111
    container_id = start_api(host, run_label, port)
    client = bounded_client(host)
    assert running_ids(client, run_label) == [container_id]

    host.cut()
    assert host.is_cut
    bound = 3 * SDK_TIMEOUT + 2
    # Twice: the first call times out on its open channel, the second must open a new one.
    for attempt in (1, 2):
        error, took = failure_time(lambda: running_ids(client, run_label))
        assert error is not None, f"call {attempt} to a cut-off host succeeded"
        assert took < bound, f"call {attempt} took {took:.1f}s ({error!r})"
    error, took = failure_time(lambda: host.docker_client(timeout=SDK_TIMEOUT))
    assert error is not None and took < bound, f"new client: {error!r} after {took:.1f}s"
    assert not serving(host.address, port), "the cut-off host's API still answered"
    assert not port_open(host.address, 22, timeout=1.0)
    # Only that host is gone: another one answers as before.
    assert bounded_client(other).ping()

    host.restore()
    assert not host.is_cut
    # Its container ran on through the cut; the same client object works again.
    wait_until(lambda: failure_time(lambda: running_ids(client, run_label))[0] is None,
               timeout=30, what="the old client after the link came back")
    assert running_ids(client, run_label) == [container_id]
    assert running_ids(bounded_client(host), run_label) == [container_id]
    assert serving(host.address, port)


def test_killed_engine_fails_calls_and_comes_back_with_its_containers(
    hosts: NetnsLab, run_label: dict[str, str]
) -> None:
    host = hosts.hosts[0]
    port = 18112
    container_id = start_api(host, run_label, port)
    client = bounded_client(host)

    assert host.kill_engine()
    assert not host.engine.answering()
    error, took = failure_time(lambda: running_ids(client, run_label))
    assert error is not None, "a call to a killed engine succeeded"
    assert took < 3 * SDK_TIMEOUT + 2, f"{took:.1f}s ({error!r})"
    # The host itself is up (sshd answers) and the container outlives its engine.
    assert port_open(host.address, 22)
    assert serving(host.address, port)

    host.start_engine()
    assert running_ids(bounded_client(host), run_label) == [container_id]
    wait_until(lambda: failure_time(lambda: running_ids(client, run_label))[0] is None,
               timeout=30, what="the old client after the engine came back")
    container = client.containers.get(container_id)
    assert container.status == "running"
    container.stop(timeout=5)
    container.remove()
    assert running_ids(client, run_label) == []
    assert not serving(host.address, port)

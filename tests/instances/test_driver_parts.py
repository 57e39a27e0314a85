"""The drivers' small parts: stats arithmetic, retry classification, settings, driver choice."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from docker.errors import APIError, NotFound
from pydantic import ValidationError

from kongstack.core.errors import InstanceError
from kongstack.core.procs import free_port_block
from kongstack.core.settings import LocalSettings
from stock_api.config import StockApiConfig
from tasks.instances.common import DockerSettings, pick_port, port_of
from tasks.instances.docker import (
    DockerDriver,
    cpu_percent,
    cpu_percent_over,
    memory_usage,
    transient,
)
from tasks.instances.factory import make_driver
from tasks.instances.process import ProcessDriver


def _cpu(total: int, system: int, pre_total: int, pre_system: int | None,
         online: int | None = 2) -> dict[str, Any]:
    cpu: dict[str, Any] = {"cpu_usage": {"total_usage": total}, "system_cpu_usage": system}
    if online is not None:
        cpu["online_cpus"] = online
    pre: dict[str, Any] = {"cpu_usage": {"total_usage": pre_total}}
    if pre_system is not None:
        pre["system_cpu_usage"] = pre_system
    return {"cpu_stats": cpu, "precpu_stats": pre}


@pytest.mark.parametrize(
    ("stats", "expected", "why"),
    [
        (_cpu(1_500, 10_000, 1_000, 9_000), 100.0, "half the host's time on 2 CPUs = one CPU"),
        (_cpu(1_250, 10_000, 1_000, 9_000), 50.0, "a quarter of 2 CPUs = half a CPU"),
        (_cpu(1_000, 10_000, 1_000, 9_000), 0.0, "idle"),
        (_cpu(1_500, 10_000, 1_000, 9_000, online=None), 50.0, "online_cpus absent: assume 1"),
        (_cpu(1_500, 10_000, 0, None), None, "no precpu sample (Podman one-shot): no value"),
        (_cpu(1_500, 10_000, 1_000, 10_000), None, "no system time passed: no rate"),
        ({"cpu_stats": {}}, None, "malformed answer"),
    ],
)
def test_cpu_percent_is_computed_the_docker_way(
    stats: dict[str, Any], expected: float | None, why: str
) -> None:
    got = cpu_percent(stats)
    if expected is None:
        assert got is None, why
    else:
        assert got == pytest.approx(expected), why


def _usage(ns: int) -> dict[str, Any]:
    return {"cpu_stats": {"cpu_usage": {"total_usage": ns}}}


@pytest.mark.parametrize(
    ("first", "second", "elapsed", "expected", "why"),
    [
        (_usage(1_000_000_000), _usage(1_250_000_000), 1.0, 25.0,
         "a quarter CPU-second in one second is 25 % (Podman: measured against wall time)"),
        (_usage(0), _usage(3_000_000_000), 1.5, 200.0, "two busy CPUs read 200 %"),
        (_usage(5), _usage(5), 0.5, 0.0, "idle"),
        (_usage(10), _usage(5), 0.5, None, "counter went backwards (container restarted)"),
        (_usage(0), _usage(5), 0.0, None, "no time passed"),
        ({"cpu_stats": {}}, _usage(5), 0.5, None, "malformed answer"),
    ],
)
def test_cpu_percent_over_wall_time(
    first: dict[str, Any], second: dict[str, Any], elapsed: float, expected: float | None,
    why: str,
) -> None:
    got = cpu_percent_over(first, second, elapsed)
    if expected is None:
        assert got is None, why
    else:
        assert got == pytest.approx(expected), why


@pytest.mark.parametrize(
    ("memory", "expected", "why"),
    [
        ({"usage": 100 * 2**20, "limit": 400 * 2**20}, (100 * 2**20, 25.0), "plain usage/limit"),
        ({"usage": 100 * 2**20, "limit": 400 * 2**20, "stats": {"inactive_file": 20 * 2**20}},
         (80 * 2**20, 20.0), "page cache is not counted (cgroup v2 name)"),
        ({"usage": 100 * 2**20, "limit": 400 * 2**20, "stats": {"total_inactive_file": 2**20}},
         (99 * 2**20, 24.75), "page cache is not counted (cgroup v1 name)"),
        ({"usage": 5, "limit": 0}, (5, None), "no limit reported"),
        ({}, (None, None), "container not running"),
    ],
)
def test_memory_usage_excludes_cache(
    memory: dict[str, Any], expected: tuple[int | None, float | None], why: str
) -> None:
    assert memory_usage({"memory_stats": memory}) == expected, why


def _api_error(code: int) -> APIError:
    response = requests.Response()
    response.status_code = code
    return APIError(f"HTTP {code}", response=response)


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (requests.exceptions.ConnectionError("refused"), True),
        (requests.exceptions.ReadTimeout("slow"), True),
        (_api_error(500), True),
        (_api_error(503), True),
        (_api_error(404), False),
        (_api_error(409), False),
        (ValueError("bug"), False),
    ],
)
def test_only_transient_engine_faults_are_retried(exc: BaseException, retry: bool) -> None:
    assert transient(exc) is retry


class _Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def _offline_driver(tmp_path: Path) -> DockerDriver:
    # A client for a socket nobody serves: constructing it does not connect.
    return DockerDriver(DockerSettings(base_url=f"unix://{tmp_path}/none.sock", timeout=2))


def test_engine_calls_retry_connection_errors_then_succeed(tmp_path: Path) -> None:
    flaky = _Flaky([requests.exceptions.ConnectionError("x"), _api_error(502)])
    assert _offline_driver(tmp_path)._call(flaky) == "ok"
    assert flaky.calls == 3


def test_engine_calls_do_not_retry_client_errors(tmp_path: Path) -> None:
    conflict = _Flaky([_api_error(409)])
    with pytest.raises(InstanceError, match="409"):
        _offline_driver(tmp_path)._call(conflict)
    assert conflict.calls == 1
    missing = _Flaky([NotFound("gone")])
    with pytest.raises(NotFound):  # callers treat "missing" as a state, not a failure
        _offline_driver(tmp_path)._call(missing)


def test_engine_calls_give_up_after_bounded_retries(tmp_path: Path) -> None:
    down = _Flaky([requests.exceptions.ConnectionError("x")] * 10)
    with pytest.raises(InstanceError, match="failed"):
        _offline_driver(tmp_path)._call(down)
    assert down.calls == 4


def test_settings_reject_unknown_keys_and_name_bad_fields() -> None:
    with pytest.raises(ValidationError, match="cpu"):
        DockerSettings(cpu=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="memory"):
        DockerSettings(memory="lots")
    with pytest.raises(ValidationError, match="redis_url"):
        DockerSettings(redis_url="http://127.0.0.1:6379")


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://h:1", "unix:///run/r.sock",
                                 "http://h:6379", "h:6379", ""])
def test_the_driver_accepts_exactly_the_redis_urls_the_instance_accepts(url: str) -> None:
    """One check (stock_api.config.check_redis_url): a URL the driver passes is one the
    instance starts with, and the driver refuses the others before starting anything."""
    def accepted(build: Any) -> bool:
        try:
            build()
        except ValidationError as exc:
            assert "redis_url" in str(exc)
            return False
        return True

    instance = accepted(lambda: StockApiConfig(redis_url=url))
    assert accepted(lambda: DockerSettings(redis_url=url)) is instance
    assert instance is url.startswith(("redis://", "rediss://", "unix://"))


def test_ports_skip_taken_and_listening_ones() -> None:
    base = free_port_block()
    assert pick_port("127.0.0.1", base, taken={base}) > base
    assert pick_port("127.0.0.1", None, taken=set()) > 0
    assert port_of("kongstack-api-18101") == 18101
    assert port_of("redis") is None


def test_auto_falls_back_to_processes_when_no_engine_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = LocalSettings(home=tmp_path)
    with caplog.at_level(logging.INFO, logger="kongstack.instances"):
        driver = make_driver(
            "auto", settings=settings, docker_host=f"unix://{tmp_path}/no-engine.sock"
        )
    assert isinstance(driver, ProcessDriver)
    assert driver.settings.run_dir == tmp_path / "run" / "instances"
    assert "instance driver: process" in caplog.text and "does not answer" in caplog.text


def test_explicit_kinds_are_honoured(tmp_path: Path) -> None:
    settings = LocalSettings(home=tmp_path)
    assert isinstance(make_driver("process", settings=settings), ProcessDriver)
    docker = make_driver("docker", settings=settings, cpus=0.5, memory="128m")
    assert isinstance(docker, DockerDriver)
    assert docker.settings.base_url == settings.docker_host
    assert docker.settings.base_port == settings.api_base_port


def test_ssh_engine_advertises_the_remote_host(tmp_path: Path) -> None:
    import docker

    # Injected client (a fixed API version does not connect): an ssh:// one would dial SSH.
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/none.sock", version="1.41")
    settings = DockerSettings(base_url="ssh://azureuser@vm-1.example", base_port=18101)
    driver = DockerDriver(settings, client=client)
    assert driver.remote and driver.address_host == "vm-1.example"


def test_ssh_engine_needs_a_base_port() -> None:
    with pytest.raises(ValidationError, match="base_port"):
        DockerSettings(base_url="ssh://azureuser@vm-1.example")


def test_remote_engine_binds_all_interfaces_and_uses_a_named_volume(tmp_path: Path) -> None:
    driver = make_driver("docker", settings=LocalSettings(home=tmp_path),
                         docker_host="ssh://azureuser@vm-1.example")
    assert isinstance(driver, DockerDriver)  # built without connecting (the engine is lazy)
    assert driver.settings.host == "0.0.0.0"
    assert driver.settings.data_dir is None  # a local path means nothing on the VM
    assert driver.address_host == "vm-1.example"

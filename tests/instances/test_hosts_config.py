"""A pool's host list: bad input named before anything runs; the host store round-trips."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.instances.base import Instance, InstanceState
from tasks.instances.hosts import HostConfig, HostRecord, HostStateStore, KnownInstance
from tasks.tick.pool import PoolConfig

SSH1 = {"name": "h1", "docker_host": "ssh://root@10.0.0.1", "capacity": 2}


def pool(*hosts: dict[str, object], **extra: object) -> PoolConfig:
    return PoolConfig.model_validate({"base_port": 18300, "hosts": list(hosts), **extra})


def test_a_host_listed_twice_is_named() -> None:
    with pytest.raises(ValidationError, match="host name 'h1' is listed twice"):
        pool(SSH1, {**SSH1, "docker_host": "ssh://root@10.0.0.2"})
    with pytest.raises(ValidationError, match=r"engine ssh://root@10.0.0.1 is already host 'h1'"):
        pool(SSH1, {**SSH1, "name": "h2"})


def test_capacity_zero_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        pool({**SSH1, "capacity": 0})
    assert "hosts.0.capacity" in str(err.value)


@pytest.mark.parametrize("url", ["tcp://10.0.0.1:2375", "ssh://10.0.0.1", "/run/docker.sock"])
def test_engine_address_must_be_unix_or_ssh_with_user(url: str) -> None:
    with pytest.raises(ValidationError, match="docker_host"):
        pool({**SSH1, "docker_host": url})


def test_a_key_file_and_a_key_secret_together_are_refused_naming_the_host() -> None:
    with pytest.raises(ValidationError, match="host h1: set ssh_key_file or ssh_key_secret"):
        pool({**SSH1, "ssh_key_file": "/etc/kongstack/key", "ssh_key_secret": "pool-key"})
    assert pool({**SSH1, "ssh_key_secret": "pool-key"}).hosts[0].ssh_key_secret == "pool-key"


def test_ssh_hosts_need_a_base_port() -> None:
    with pytest.raises(ValidationError, match="base_port is required"):
        PoolConfig.model_validate({"hosts": [SSH1]})


def test_cpu_capacity_caps_the_instance_count() -> None:
    host = HostConfig.model_validate({**SSH1, "capacity": 10, "cpus": 2})
    assert host.effective_capacity(0.5) == 4
    assert host.effective_capacity(None) == 10
    small = HostConfig.model_validate({**SSH1, "capacity": 1, "cpus": 8})
    assert small.effective_capacity(0.5) == 1


def test_store_round_trips_and_reports_lost_instances(tmp_path: Path) -> None:
    store = HostStateStore(tmp_path / "hosts.json")
    assert store.load() == {}
    started = datetime(2026, 1, 1, 12, tzinfo=UTC)
    inst = Instance("c1", "kongstack-api-18300", "10.0.0.1:18300", InstanceState.READY, started)
    store.save({"h1": HostRecord([KnownInstance.of(inst)], "2026-01-01T12:05:00+00:00",
                                 "link down", ["c0"])})
    rec = store.load()["h1"]
    assert rec.leftovers == ["c0"] and rec.reason == "link down"
    lost = rec.instances[0].lost("h1", "host h1 down: link down")
    assert lost.state is InstanceState.EXITED
    assert lost.started_at == started
    assert lost.labels == {"kongstack.host": "h1", "kongstack.lost": "host h1 down: link down"}

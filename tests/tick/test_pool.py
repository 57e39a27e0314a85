"""One driver and one gateway per tick: tasks inside a pool session share them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import tasks.tick.pool as pool_module
from tasks.tick.pool import PoolConfig, pool_clients, pool_session


class FakeGateway:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    made: dict[str, list[Any]] = {"drivers": [], "gateways": []}

    def driver(config: PoolConfig) -> object:
        made["drivers"].append(object())
        return made["drivers"][-1]

    def gateway(config: PoolConfig) -> FakeGateway:
        made["gateways"].append(gateway := FakeGateway())
        return gateway

    monkeypatch.setattr(pool_module, "build_driver", driver)
    monkeypatch.setattr(pool_module, "build_gateway", gateway)
    return made


def config(tmp_path: Path, stack: str = "p") -> PoolConfig:
    return PoolConfig(stack=stack, driver="process", gateway="nginx",
                      local={"home": str(tmp_path)})


def test_inside_a_session_every_task_shares_one_driver_and_gateway(
        tmp_path: Path, built: dict[str, list[Any]]) -> None:
    pool = config(tmp_path)
    seen: list[object] = []
    with pool_session(pool):
        for _ in range(4):  # repair, observe, act, publish
            with pool_clients(pool) as clients:
                seen += [clients.driver, clients.gateway]
        worker = threading.Thread(target=lambda: seen.append(
            PoolClientsProbe.driver_of(pool)))  # observe-instances runs in a worker thread
        worker.start()
        worker.join()
        assert built["gateways"][0].closed == 0  # still in use
    assert len(built["drivers"]) == 1 and len(built["gateways"]) == 1
    assert len({id(x) for x in seen}) == 2
    assert built["gateways"][0].closed == 1  # released with the session


def test_outside_a_session_each_caller_builds_and_releases_its_own(
        tmp_path: Path, built: dict[str, list[Any]]) -> None:
    pool = config(tmp_path)
    for _ in range(2):
        with pool_clients(pool) as clients:
            assert clients.gateway is not None
    assert len(built["gateways"]) == 2 and all(g.closed == 1 for g in built["gateways"])
    assert built["drivers"] == []  # built only when asked for


def test_sessions_are_per_pool_and_nest(tmp_path: Path, built: dict[str, list[Any]]) -> None:
    a, b = config(tmp_path, "a"), config(tmp_path, "b")
    with pool_session(a), pool_session(b), pool_session(a):
        assert PoolClientsProbe.driver_of(a) is PoolClientsProbe.driver_of(a)
        assert PoolClientsProbe.driver_of(a) is not PoolClientsProbe.driver_of(b)
    assert len(built["drivers"]) == 2


class PoolClientsProbe:
    @staticmethod
    def driver_of(pool: PoolConfig) -> object:
        with pool_clients(pool) as clients:
            return clients.driver

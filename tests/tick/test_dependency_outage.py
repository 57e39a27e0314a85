"""Fail soft on shared dependencies (issue 16, item 3), on a real local stack: Redis, then the
store, down for three ticks while requests keep coming. Readiness and liveness are separate:
the instances stay alive and in the pool (degraded), none is replaced, reads are still
answered (from the store without Redis; from Redis for what it holds without the store), and
everything is ready again once the dependency is back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kongstack.core.procs import Daemon, free_port, port_open, wait_until
from stock_api.seed import SeedParams, seed
from stock_api.store import open_embedded
from tasks.instances.base import InstanceState
from tests.support.autoscale_stack import Stack, autoscale_stack
from tests.support.faults import store_unreachable
from tests.tick.conftest import _require

pytestmark = pytest.mark.slow


class OwnRedis:
    """A Redis for this test alone, so it can be stopped and started again on its port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (run scripts/setup)")
        self.port = free_port()
        self.workdir = workdir
        self.daemon = Daemon(name=f"redis-{self.port}", run_dir=workdir)
        self.argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(workdir)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.daemon.start(self.argv, ready=lambda: port_open("127.0.0.1", self.port),
                          log_file=self.workdir / "redis.log", timeout=15)

    def stop(self) -> None:
        self.daemon.stop(grace=5)


@pytest.fixture
def outage_stack(tmp_path: Path, prefect_harness: None) -> Iterator[tuple[Stack, OwnRedis]]:
    _require("nginx")
    _require("prometheus")
    (tmp_path / "redis").mkdir()
    redis = OwnRedis(tmp_path / "redis")
    redis.start()
    try:
        with autoscale_stack(tmp_path, driver="process", redis_url=redis.url) as s:
            # Short start-up grace and dependency checks, so "degraded" shows within seconds.
            pool = s.config.pool.model_copy(update={
                "startup_grace_seconds": 2.0,
                "instance_env": {"STOCK_API_DEPENDENCY_CHECK": "0.5"}})
            s.config = s.config.model_copy(update={"pool": pool})
            assert pool.data_dir is not None
            repo = open_embedded(pool.data_dir, "kongstack")  # a few stocks to read
            seed(repo, SeedParams(symbols=8, days=10, seed=7, end="2025-12-31"))
            repo.close()
            yield s, redis
    finally:
        redis.stop()


def readiness(s: Stack) -> dict[str, list[str]]:
    """Instance address -> the dependencies its /ready lists as down."""
    out = {}
    for inst in s.driver().list():
        body = httpx.get(f"http://{inst.address}/ready", timeout=2).json()
        out[inst.address] = body["degraded"]
    return out


def pool_ids(s: Stack) -> list[str]:
    return sorted(i.id for i in s.driver().list())


def bootstrap(s: Stack) -> None:
    wait_until(lambda: s.tick()["after"] == 2 and len(s.ready()) == 2, timeout=120,
               what="the pool at min_instances", interval=1.0)


def three_ticks_serving(s: Stack, path: str, ids: list[str]) -> None:
    for _ in range(3):
        served = [s.get(path).status_code for _ in range(20)]
        result = s.tick()
        assert not any(a.startswith("repair") for a in result["actions"]), result
        assert result["after"] == 2 and pool_ids(s) == ids  # nothing replaced or removed
        assert served == [200] * 20


def test_redis_down_for_three_ticks(outage_stack: tuple[Stack, OwnRedis]) -> None:
    s, redis = outage_stack
    bootstrap(s)
    ids = pool_ids(s)
    redis.stop()
    wait_until(lambda: all(d == ["redis"] for d in readiness(s).values()), timeout=30,
               what="every instance to report redis down")
    assert {i.state for i in s.driver().list()} == {InstanceState.READY}  # degraded, ready
    three_ticks_serving(s, "/api/stocks", ids)
    redis.start()
    wait_until(lambda: all(d == [] for d in readiness(s).values()), timeout=30,
               what="every instance to see redis again")
    assert s.tick()["after"] == 2 and pool_ids(s) == ids and s.targets() == s.ready()


def test_store_down_for_three_ticks(outage_stack: tuple[Stack, OwnRedis]) -> None:
    s, _ = outage_stack
    bootstrap(s)
    ids = pool_ids(s)
    symbol = s.get("/api/stocks?per_page=1").json()["items"][0]["symbol"]
    warm = f"/api/stocks/{symbol}"
    for _ in range(4):  # every instance has had the chance to cache it (round robin)
        assert s.get(warm).status_code == 200
    assert s.config.pool.data_dir is not None
    with store_unreachable(s.config.pool.data_dir):
        wait_until(lambda: {i.state for i in s.driver().list()} == {InstanceState.DEGRADED},
                   timeout=30, what="every instance degraded (alive, store down)")
        three_ticks_serving(s, warm, ids)  # cached reads still answered
    wait_until(lambda: len(s.ready()) == 2, timeout=30, what="the pool ready again")
    assert s.tick()["after"] == 2 and pool_ids(s) == ids and s.targets() == s.ready()

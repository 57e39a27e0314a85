"""Targets change at run time, as in Kong's balancer: add, drain and remove under load lose
no request (clients that never retry), a drained target finishes what it serves, and a dead
target is marked unhealthy within seconds by the health checks."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tasks.gateway.protocol import TargetHealth
from tests.gateway.backends import backends
from tests.gateway.behaviour.conftest import Harness
from tests.gateway.load import SteadyLoad


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "new-connections"])
def test_add_drain_remove_under_load_fail_zero_requests(gw: Harness, keepalive: bool) -> None:
    with backends(3) as (a, b, c):
        gw.apply(gw.config(reader_limit=1_000_000), targets=[a.address, b.address])
        headers = {"apikey": gw.reader_key}
        with gw.client() as probe:
            gw.eventually(lambda: probe.get(gw.path(), headers=headers).status_code == 200,
                          "the gateway serving")
        with SteadyLoad(f"{gw.proxy_url}{gw.path()}", headers=headers, threads=4,
                        max_requests=20000, max_seconds=60, keepalive=keepalive) as load:
            load.wait_for(50)
            gw.gateway.add_target(c.address)
            # In effect when the call returns, but the proof is a request reaching it, which
            # waits for the load's next sends (a busy machine can delay them): bounded poll.
            gw.eventually(lambda: c.api_hits() > 0, "the added target serving", timeout=10.0)
            load.wait_for(load.result.total + 50)
            gw.gateway.drain_target(a.address)
            drained_at = time.monotonic()
            load.wait_for(load.result.total + 100)
            gw.gateway.remove_target(a.address)
            load.wait_for(load.result.total + 50)
        result = load.result
        assert result.failed == 0, (result.statuses, result.errors[:3])
        assert result.total >= 250
        late_on_a = [t for t, port in result.answered if port == a.port and t > drained_at]
        assert late_on_a == [], "a drained target got a request sent after the drain"
        assert result.backends[c.port] > 0 and result.backends[b.port] > 0
        assert set(gw.targets()) == {b.address, c.address}


def test_drained_target_finishes_its_in_flight_request(gw: Harness) -> None:
    with backends(2) as (a, b):
        gw.apply(targets=[a.address])
        headers = {"apikey": gw.reader_key}
        with gw.client() as probe:
            gw.eventually(lambda: probe.get(gw.path(), headers=headers).status_code == 200,
                          "the gateway serving")
        started, release = a.hold("inflight")
        outcome: dict[str, httpx.Response] = {}

        def slow() -> None:
            with gw.client() as client:
                outcome["r"] = client.get(gw.path("/slow"), params={"hold": "inflight"},
                                          headers=headers, timeout=30)

        worker = threading.Thread(target=slow)
        worker.start()
        assert started.wait(10), "the slow request never reached target a"
        gw.gateway.add_target(b.address)
        gw.gateway.drain_target(a.address)
        before = a.api_hits()
        with gw.client() as client:
            fresh = [client.get(gw.path(), headers=headers) for _ in range(10)]
        assert {r.status_code for r in fresh} == {200}
        assert a.api_hits() == before, "a drained target got a new request"
        targets = gw.targets()
        assert (targets[a.address].weight, targets[a.address].health) == (
            0, TargetHealth.DRAINING)
        release.set()
        worker.join(timeout=15)
        assert outcome["r"].status_code == 200 and outcome["r"].json()["backend"] == a.port
        gw.gateway.remove_target(a.address)
        gw.gateway.remove_target(a.address)  # already gone: done
        assert set(gw.targets()) == {b.address}


def test_dead_target_is_marked_unhealthy_within_seconds_and_skipped(gw: Harness) -> None:
    with backends(2) as (a, b):
        gw.apply(targets=[a.address, b.address])
        headers = {"apikey": gw.reader_key}
        with gw.client() as probe:
            gw.eventually(lambda: probe.get(gw.path(), headers=headers).status_code == 200,
                          "the gateway serving")
        gw.eventually(lambda: {t.health for t in gw.targets().values()} == {
            TargetHealth.HEALTHY}, "both targets healthy", timeout=10)
        b.stop()  # the instance dies: refused connections, failing active probes
        took = gw.eventually(
            lambda: gw.targets()[b.address].health is TargetHealth.UNHEALTHY,
            "the dead target marked unhealthy", timeout=15)
        hc = gw.base.healthchecks
        # Active checks alone: `tcp_failures` probes `interval` s apart, plus the timeout.
        assert took <= hc.interval * (hc.tcp_failures + 1) + hc.probe_timeout + 2
        with gw.client() as client:
            answers = [client.get(gw.path(), headers=headers) for _ in range(10)]
        assert [r.status_code for r in answers] == [200] * 10
        assert {r.json()["backend"] for r in answers} == {a.port}
        b.start()  # back on the same port: the active checks find it healthy again
        gw.eventually(lambda: gw.targets()[b.address].health is TargetHealth.HEALTHY,
                      "the revived target healthy again", timeout=15)


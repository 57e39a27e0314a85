"""The nginx gateway with a real nginx and real loopback backends."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from kongstack.core.settings import REPO_ROOT
from tasks.gateway.desired import GatewayStackConfig, build_gateway_state
from tasks.gateway.nginx import NginxGateway
from tasks.gateway.protocol import Gateway, TargetHealth
from tests.gateway.nginx.backends import backends
from tests.gateway.nginx.conftest import KEY, OTHER_KEY, GatewayMaker
from tests.gateway.nginx.load import SteadyLoad

AUTH = {"apikey": KEY}


def _generation(gateway: NginxGateway) -> int | None:
    return gateway.server.served_generation()


def test_apply_starts_own_nginx_and_reapply_changes_nothing(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    assert isinstance(nginx, Gateway)
    with backends(1) as (backend,):
        first = nginx.apply(build_gateway_state(stack_config, [backend.address]))
        assert first.writes == 1 and first.changed
        pid = nginx.server.pid()
        assert pid is not None
        assert (nginx.prefix / "nginx.pid").read_text().strip() == str(pid)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"master process" in cmdline and str(nginx.prefix).encode() in cmdline
        generation = _generation(nginx)

        again = nginx.apply(build_gateway_state(stack_config, [backend.address]))
        assert (again.operations, again.writes) == ([], 0)
        assert _generation(nginx) == generation and nginx.server.pid() == pid

        dry = nginx.apply(build_gateway_state(stack_config.model_copy(
            update={"rate_limit_per_minute": 10}), [backend.address]), dry_run=True)
        assert [op.describe() for op in dry.operations] == ["update setting rate_per_minute"]
        assert _generation(nginx) == generation
        assert KEY not in repr(dry) + repr(nginx)


def test_traffic_reaches_every_target(nginx: NginxGateway,
                                      stack_config: GatewayStackConfig) -> None:
    with backends(3) as pool:
        nginx.apply(build_gateway_state(stack_config, [b.address for b in pool]))
        with httpx.Client(base_url=nginx.url) as client:
            answers = [client.get("/api/stocks/ACME", headers=AUTH) for _ in range(12)]
        assert {r.status_code for r in answers} == {200}
        assert sorted(b.api_hits() for b in pool) == [4, 4, 4]  # round robin, equal weights
        big = httpx.get(f"{nginx.url}/api/big", headers=AUTH)  # buffered via the temp dir
        assert big.status_code == 200 and len(big.json()["pad"]) == 512 * 1024
        assert {t.address: t.health for t in nginx.list_targets()} == {
            b.address: TargetHealth.HEALTHY for b in pool}


def test_key_auth_rate_limit_and_correlation_like_kong(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    with backends(1) as (backend,):
        nginx.apply(build_gateway_state(
            stack_config.model_copy(update={"rate_limit_per_minute": 5}), [backend.address]))
        with httpx.Client(base_url=nginx.url) as client:
            missing = client.get("/api/x")
            wrong = client.get("/api/x", headers={"apikey": "nope"})
            assert (missing.status_code, missing.json()) == (
                401, {"message": "No API key found in request"})
            assert (wrong.status_code, wrong.json()) == (401, {"message": "Unauthorized"})
            assert client.get("/other", headers=AUTH).status_code == 404

            statuses = [client.get("/api/x", headers=AUTH).status_code for _ in range(5)]
            limited = client.get("/api/x", headers=AUTH)
            assert statuses == [200] * 5
            assert (limited.status_code, limited.json()) == (
                429, {"message": "API rate limit exceeded"})
            # limit_by consumer: another consumer has its own budget; query-string key works.
            assert client.get("/api/x", params={"apikey": OTHER_KEY}).status_code == 200

            given = client.get("/api/y", headers={"apikey": OTHER_KEY,
                                                  "X-Correlation-ID": "cid-123"})
        assert given.headers["X-Correlation-ID"] == "cid-123"
        seen = backend.hits[-1]["headers"]
        assert seen["X-Correlation-ID"] == seen["Kong-Request-ID"] == "cid-123"
        assert seen["X-Consumer-Username"] == "other"
        assert "apikey" not in {k.lower() for k in seen}  # hide_credentials
        generated = backend.hits[-2]["headers"]["X-Correlation-ID"]
        assert len(generated) == 32

    lines = (nginx.prefix / "logs" / "access.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    last = records[-1]
    assert last["correlation_id"] == "cid-123" and last["status"] == 200
    assert last["upstream_addr"] == backend.address and last["route"] == "/api"
    assert {r["status"] for r in records} >= {200, 401, 404, 429}
    status = httpx.get(nginx.status_url).text
    assert status.startswith("Active connections:") and "server accepts handled requests" in status


def test_no_targets_answers_like_kong(nginx: NginxGateway,
                                      stack_config: GatewayStackConfig) -> None:
    nginx.remove_target("127.0.0.1:9")  # absent on a never-configured gateway: done
    nginx.drain_target("127.0.0.1:9")
    assert nginx.list_targets() == [] and nginx.server.pid() is None
    nginx.apply(build_gateway_state(stack_config, []))
    response = httpx.get(f"{nginx.url}/api/x", headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"message": "failure to get a peer from the ring-balancer"}


def test_target_state_is_shared_across_processes(
    make_nginx: GatewayMaker, stack_config: GatewayStackConfig
) -> None:
    gateway = make_nginx()
    with backends(2) as (a, b):
        gateway.apply(build_gateway_state(stack_config, [a.address]))
        script = (
            "import sys; from pathlib import Path; from tasks.gateway.nginx import NginxGateway\n"
            "g = NginxGateway(prefix=Path(sys.argv[1]), port=int(sys.argv[2]),"
            " status_port=int(sys.argv[3]))\n"
            "g.add_target(sys.argv[4]); g.add_target(sys.argv[4])\n"
            "print(len(g.list_targets()))\n")
        args = [str(gateway.prefix), str(gateway.listen.port), str(gateway.listen.status_port),
                b.address]
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=60, check=True)
            assert out.stdout.strip() == "2"
        other = NginxGateway(prefix=gateway.prefix, port=gateway.listen.port,
                             status_port=gateway.listen.status_port)
        assert [t.address for t in other.list_targets()] == sorted([a.address, b.address])
        with httpx.Client(base_url=gateway.url) as client:
            for _ in range(4):
                client.get("/api/x", headers=AUTH)
        assert a.api_hits() == b.api_hits() == 2


def test_drained_target_gets_no_new_requests_while_in_flight_one_completes(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    with backends(2) as (a, b):
        nginx.apply(build_gateway_state(stack_config, [a.address]))
        started, release = a.hold("inflight")
        outcome: dict[str, httpx.Response] = {}
        slow = threading.Thread(target=lambda: outcome.setdefault(
            "r", httpx.get(f"{nginx.url}/api/slow?hold=inflight", headers=AUTH, timeout=30)))
        slow.start()
        assert started.wait(10), "the slow request never reached backend a"

        nginx.add_target(b.address)
        nginx.drain_target(a.address)
        before = a.api_hits()
        with httpx.Client(base_url=nginx.url) as client:
            fresh = [client.get("/api/x", headers=AUTH) for _ in range(10)]
        assert {r.status_code for r in fresh} == {200}
        assert a.api_hits() == before, "a drained target got a new request"
        assert b.api_hits() == 10
        assert {t.address: t.health for t in nginx.list_targets()} == {
            a.address: TargetHealth.DRAINING, b.address: TargetHealth.HEALTHY}

        release.set()
        slow.join(timeout=15)
        assert outcome["r"].status_code == 200 and outcome["r"].json()["backend"] == a.port
        nginx.remove_target(a.address)
        nginx.remove_target(a.address)
        assert [t.address for t in nginx.list_targets()] == [b.address]


@pytest.mark.parametrize("keepalive", [False, True], ids=["new-connections", "keepalive"])
def test_drain_and_scale_under_steady_load_fail_zero_requests(
    nginx: NginxGateway, stack_config: GatewayStackConfig, keepalive: bool
) -> None:
    with backends(3) as (a, b, c):
        nginx.apply(build_gateway_state(stack_config, [a.address, b.address]))
        with SteadyLoad(f"{nginx.url}/api/load", headers=AUTH, threads=4, max_requests=3000,
                        max_seconds=40, keepalive=keepalive) as load:
            load.wait_for(50)
            nginx.add_target(c.address)
            load.wait_for(load.result.total + 50)
            nginx.drain_target(a.address)
            drained_at = a.api_hits()
            load.wait_for(load.result.total + 100)
            nginx.remove_target(a.address)
            load.wait_for(load.result.total + 50)
        assert load.result.failed == 0, (load.result.statuses, load.result.errors[:3])
        assert load.result.total >= 250
        assert a.api_hits() == drained_at
        assert c.api_hits() > 0

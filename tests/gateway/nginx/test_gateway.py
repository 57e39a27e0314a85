"""What is particular to the local gateway (nginx with Lua); the behaviour it shares with
Kong is tested once for both in tests/gateway/behaviour."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from kongstack.core.errors import ConfigError, GatewayError
from kongstack.core.procs import port_open, wait_until
from kongstack.core.settings import REPO_ROOT
from tasks.gateway.desired import (
    GatewayStackConfig,
    build_gateway_state,
    gateway_secret_plugin,
)
from tasks.gateway.kong.model import GatewayState, PluginSpec
from tasks.gateway.nginx import NginxGateway
from tasks.gateway.nginx.server import _children
from tasks.gateway.protocol import Gateway, TargetHealth
from tests.gateway.backends import backends
from tests.gateway.nginx.conftest import KEY, OTHER_KEY, GatewayMaker

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
        assert [op.describe() for op in dry.operations] == ["update setting limits"]
        assert _generation(nginx) == generation
        assert KEY not in repr(dry) + repr(nginx)
        for private in ("state.json", "targets.json", f"site-{generation}.json"):
            assert (nginx.prefix / private).stat().st_mode & 0o077 == 0, private


def test_traffic_reaches_every_target_by_weight(nginx: NginxGateway,
                                                stack_config: GatewayStackConfig) -> None:
    with backends(3) as pool:
        nginx.apply(build_gateway_state(stack_config, [b.address for b in pool]))
        with httpx.Client(base_url=nginx.url) as client:
            answers = [client.get("/api/stocks/ACME", headers=AUTH) for _ in range(12)]
            assert {r.status_code for r in answers} == {200}
            assert sorted(b.api_hits() for b in pool) == [4, 4, 4]  # round robin
            nginx.add_target(pool[0].address, weight=200)  # twice the others' weight
            for _ in range(16):
                client.get("/api/x", headers=AUTH)
        assert [b.api_hits() - 4 for b in pool] == [8, 4, 4]
        big = httpx.get(f"{nginx.url}/api/big", headers=AUTH)  # buffered via the temp dir
        assert big.status_code == 200 and len(big.json()["pad"]) == 512 * 1024
        assert {t.address: t.health for t in nginx.list_targets()} == {
            b.address: TargetHealth.HEALTHY for b in pool}


def test_target_changes_reload_nothing_and_keep_connections(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    with backends(2) as (a, b):
        nginx.apply(build_gateway_state(stack_config, [a.address]))
        master = nginx.server.pid()
        assert master is not None
        workers, generation = _children(master), _generation(nginx)
        # One kept-alive connection across every change: it must never be closed.
        with httpx.Client(base_url=nginx.url,
                          limits=httpx.Limits(max_connections=1)) as client:
            assert client.get("/api/x", headers=AUTH).json()["backend"] == a.port
            nginx.add_target(b.address)
            nginx.drain_target(a.address)
            assert client.get("/api/x", headers=AUTH).json()["backend"] == b.port
            nginx.remove_target(a.address)
            nginx.add_target(a.address)
            nginx.remove_target(b.address)
            assert client.get("/api/x", headers=AUTH).json()["backend"] == a.port
            assert nginx.server.pid() == master and _children(master) == workers
            assert _generation(nginx) == generation
            # Keys and limits are configuration: that is a (verified) reload.
            changed = stack_config.model_copy(update={"rate_limit_per_minute": 1234})
            result = nginx.apply(build_gateway_state(changed))
            assert result.writes == 1 and _generation(nginx) == (generation or 0) + 1
        assert client.is_closed
        limited = httpx.get(f"{nginx.url}/api/x", headers={"apikey": OTHER_KEY})
        assert limited.headers["X-RateLimit-Limit-Minute"] == "1234"
        assert [t.address for t in nginx.list_targets()] == [a.address]  # kept by the reload


def test_no_targets_answers_like_kong(nginx: NginxGateway,
                                      stack_config: GatewayStackConfig) -> None:
    nginx.remove_target("127.0.0.1:9")  # absent on a never-configured gateway: done
    nginx.drain_target("127.0.0.1:9")
    assert nginx.list_targets() == [] and nginx.server.pid() is None
    with pytest.raises(GatewayError, match="no configuration yet"):
        nginx.add_target("127.0.0.1:9")
    nginx.apply(build_gateway_state(stack_config, []))
    response = httpx.get(f"{nginx.url}/api/x", headers=AUTH)
    assert response.status_code == 503
    assert response.json()["message"] == "failure to get a peer from the ring-balancer"


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


def test_killed_nginx_comes_back_with_its_targets(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    with backends(2) as (a, b):
        nginx.apply(build_gateway_state(stack_config, [a.address]))
        nginx.add_target(b.address)
        pid = nginx.server.pid()
        assert pid is not None
        workers = _children(pid)
        for process in [pid, *workers]:  # the whole gateway dies (the master first: it
            os.kill(process, signal.SIGKILL)  # would replace a killed worker)
        wait_until(lambda: nginx.server.pid() is None and not port_open(
            nginx.listen.host, nginx.listen.port), timeout=10, what="nginx gone")
        assert {t.health for t in nginx.list_targets()} == {TargetHealth.UNKNOWN}
        nginx.drain_target(a.address)  # starts it again, from targets.json
        assert nginx.server.pid() not in (None, pid)
        assert {t.address: t.weight for t in nginx.list_targets()} == {a.address: 0,
                                                                       b.address: 100}
        assert httpx.get(f"{nginx.url}/api/x", headers=AUTH).json()["backend"] == b.port


def test_a_target_change_is_in_effect_before_it_is_persisted(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    """The balancer takes the change first; the fsync'd save follows (a slow disk does not
    delay the change). A failed save leaves the balancer ahead of the file until the retry,
    the same call, persists it."""
    with backends(2) as (a, b):
        nginx.apply(build_gateway_state(stack_config, [a.address]))
        real_save = nginx._save
        seen_by_save: list[set[str]] = []

        def failing_save(state: object) -> None:
            # What the running balancer holds (its target API; the state lock is ours now).
            seen_by_save.append({t["target"] for t in nginx._admin("GET")[1]["data"]})
            raise OSError(28, "No space left on device")

        nginx._save = failing_save  # type: ignore[method-assign]
        with pytest.raises(OSError, match="No space left"):
            nginx.add_target(b.address)
        assert seen_by_save == [{a.address, b.address}]  # in the balancer before the save
        persisted = json.loads((nginx.prefix / "targets.json").read_text())["targets"]
        assert b.address not in persisted
        nginx._save = real_save  # type: ignore[method-assign]
        nginx.add_target(b.address)  # the retry
        persisted = json.loads((nginx.prefix / "targets.json").read_text())["targets"]
        assert persisted == {a.address: 100, b.address: 100}


def test_target_api_is_loopback_only_and_validates(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    from tasks.gateway.nginx.render import Listen

    assert Listen(host="0.0.0.0", port=1, status_port=2).admin_host == "127.0.0.1"
    assert Listen(host="::1", port=1, status_port=2).admin_host == "::1"
    nginx.apply(build_gateway_state(stack_config, []))
    conf = nginx.server.conf.read_text()
    assert f"listen 127.0.0.1:{nginx.listen.status_port};" in conf
    for body, field in (({"targets": {"nohost": 1}}, "nohost is not host:port"),
                        ({"targets": {"127.0.0.1:1": 70000}}, "weight must be an integer"),
                        ({"targets": "all"}, "expected an object"),
                        ({}, "expected an object")):
        answer = httpx.put(nginx.admin_url, json=body)
        assert answer.status_code == 400 and field in answer.json()["message"], body
    assert httpx.put(nginx.admin_url, content=b"{nope").status_code == 400
    assert nginx.list_targets() == []
    with pytest.raises(GatewayError, match="weight must be 1..65535"):
        nginx.add_target("127.0.0.1:1", weight=0)
    with pytest.raises(GatewayError, match="expected host:port"):
        nginx.add_target("127.0.0.1")


def test_a_configuration_lua_rejects_keeps_the_previous_one_serving(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    with backends(1) as (backend,):
        nginx.apply(build_gateway_state(stack_config, [backend.address]))
        generation = _generation(nginx)
        (nginx.prefix / "targets.json").chmod(0o600)
        real_save = nginx._save

        def corrupt(state: object) -> None:  # a damaged targets file under the reload
            real_save(state)  # type: ignore[arg-type]
            (nginx.prefix / "targets.json").write_text('{"targets": {"nohost": 1}}')

        nginx._save = corrupt  # type: ignore[method-assign]
        changed = stack_config.model_copy(update={"rate_limit_per_minute": 77})
        with pytest.raises(GatewayError, match="kept the previous one.*nohost is not host"):
            nginx.apply(build_gateway_state(changed))
        assert _generation(nginx) == generation
        assert httpx.get(f"{nginx.url}/api/x", headers=AUTH).status_code == 200


def test_access_log_names_consumer_reason_and_correlation_id(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    with backends(1) as (backend,):
        nginx.apply(build_gateway_state(stack_config, [backend.address]))
        with httpx.Client(base_url=nginx.url) as client:
            query = client.get("/api/x", params={"apikey": KEY},
                               headers={"X-Correlation-ID": "cid-query"})
            ok = client.get("/api/y", headers={"apikey": OTHER_KEY,
                                               "X-Correlation-ID": "cid-123"})
        assert query.status_code == 401 and ok.headers["X-Correlation-ID"] == "cid-123"
        seen = backend.hits[-1]["headers"]
        assert seen["X-Correlation-ID"] == seen["Kong-Request-ID"] == "cid-123"
    records = [json.loads(line) for line in nginx.access_log.read_text().splitlines()]
    by_cid = {r["correlation_id"]: r for r in records}
    assert by_cid["cid-query"]["denied"] == "key_in_query_not_allowed"
    assert by_cid["cid-query"]["upstream_addr"] == ""
    last = by_cid["cid-123"]
    assert (last["status"], last["consumer"], last["route"], last["denied"]) == (
        200, "other", "stock-api", "")
    assert last["upstream_addr"] == backend.address
    status = httpx.get(nginx.status_url).text
    assert status.startswith("Active connections:") and "server accepts handled requests" in status


GATEWAY_SECRET = "gw-secret-7f3a9c0e5b2d4e61"


def _with_gateway_secret(state: GatewayState, secret: str) -> GatewayState:
    """Kong's request-transformer exactly as the deploy sets it (gateway_secret_plugin: drop
    the client's header, add ours)."""
    plugin = gateway_secret_plugin("stock-api", SecretStr(secret))
    return state.model_copy(update={"plugins": (*state.plugins, plugin)})


def test_gateway_secret_reaches_the_instance_and_a_client_cannot_set_it(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    with backends(1) as (backend,):
        base = build_gateway_state(stack_config, [backend.address])
        result = nginx.apply(_with_gateway_secret(base, GATEWAY_SECRET))
        with httpx.Client(base_url=nginx.url, headers=AUTH) as client:
            assert client.get("/api/x").status_code == 200
            assert backend.hits[-1]["headers"]["X-Gateway-Secret"] == GATEWAY_SECRET
            spoofed = client.get("/api/x", headers={"x-gateway-secret": "guessed"})
            assert spoofed.status_code == 200
            assert backend.hits[-1]["headers"]["X-Gateway-Secret"] == GATEWAY_SECRET
            before = backend.api_hits()
            refused = client.get("/api/x", headers={"apikey": "wrong"})
            assert refused.status_code == 401 and backend.api_hits() == before

        # a new secret alone is a change (a reload), and the plan never shows a value
        generation = _generation(nginx)
        rotated = nginx.apply(_with_gateway_secret(base, "gw-secret-rotated-0a1b2c3d"))
        assert [op.describe() for op in rotated.operations] == ["update setting add_headers"]
        assert _generation(nginx) != generation
        httpx.get(f"{nginx.url}/api/x", headers=AUTH)
        assert backend.hits[-1]["headers"]["X-Gateway-Secret"] == "gw-secret-rotated-0a1b2c3d"
    shown = repr(result) + repr(rotated) + (nginx.prefix / "nginx.conf").read_text() \
        + nginx.access_log.read_text()
    assert GATEWAY_SECRET not in shown and "rotated-0a1b2c3d" not in shown


def test_request_transformer_parts_the_local_gateway_lacks_are_refused(
    nginx: NginxGateway, stack_config: GatewayStackConfig
) -> None:
    state = build_gateway_state(stack_config)
    for config, named in (({"replace": {"headers": ["X-A:1"]}}, "'replace'"),
                          ({"add": {"querystring": ["a:1"]}}, "'add.querystring'"),
                          ({"add": {"headers": ["no-colon"]}}, "'no-colon'")):
        plugin = PluginSpec(name="request-transformer", service="stock-api", config=config)
        with pytest.raises(ConfigError, match=named):
            nginx.apply(state.model_copy(update={"plugins": (*state.plugins, plugin)}))
    assert nginx.server.pid() is None  # refused before anything was started

"""Rendered configs (and the Lua they load) for every mapping of the Kong plugins pass
``nginx -t``; the site mapping follows Kong's plugin scopes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from kongstack.core.errors import ConfigError, GatewayError
from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.gateway.kong.model import GatewayState, PluginSpec
from tasks.gateway.nginx import NginxGateway
from tasks.gateway.nginx.render import Listen, render
from tasks.gateway.nginx.server import NginxServer
from tasks.gateway.nginx.site import NginxSite, site_from_state
from tests.support.services import require_binary

LISTEN = Listen(host="127.0.0.1", port=1, status_port=2)


def _without_plugins(state: GatewayState, *names: str) -> GatewayState:
    return state.model_copy(update={"plugins": tuple(
        p for p in state.plugins if p.name not in names)})


BASE = build_gateway_state(GatewayStackConfig(
    consumers=(ConsumerConfig(username="demo", key=SecretStr("k1")),)))


@pytest.mark.parametrize(
    ("state", "targets"),
    [
        pytest.param(BASE, {"127.0.0.1:18101": 100, "127.0.0.1:18102": 50}, id="full"),
        pytest.param(BASE, {}, id="no-targets"),
        pytest.param(BASE, {"127.0.0.1:18101": 0}, id="only-drained"),
        pytest.param(_without_plugins(BASE, "key-auth"), {"127.0.0.1:1": 1}, id="no-key-auth"),
        pytest.param(_without_plugins(BASE, "key-auth", "rate-limiting", "acl"),
                     {"127.0.0.1:1": 1}, id="bare-proxy"),
        pytest.param(build_gateway_state(GatewayStackConfig(strip_path=True, route_path="/v1")),
                     {"127.0.0.1:1": 1}, id="strip-path"),
    ],
)
def test_rendered_config_and_lua_pass_nginx_t(tmp_path: Path, state: GatewayState,
                                              targets: dict[str, int]) -> None:
    """``nginx -t`` checks the directives, the modules load (it does not run init_by_lua:
    tests/gateway/nginx/test_gateway.py covers a site file Lua rejects)."""
    gateway = NginxGateway(prefix=tmp_path, port=1, status_port=2,
                           binary=require_binary("nginx"))
    gateway.server.prepare()
    gateway._install_lua()
    site = site_from_state(state, upstream="stock-api-upstream")
    (tmp_path / "site.json").write_text(site.lua_document())
    (tmp_path / "targets.json").write_text(json.dumps({"targets": targets}))
    conf = tmp_path / "candidate.conf"
    conf.write_text(render(site, prefix=tmp_path, listen=LISTEN, generation=1,
                           site_file=tmp_path / "site.json",
                           targets_file=tmp_path / "targets.json"))
    gateway.server.test(conf)


def test_rate_limit_windows_and_consumer_limits() -> None:
    state = BASE.model_copy(update={"plugins": (
        PluginSpec(name="rate-limiting", service="stock-api",
                   config={"second": 2, "hour": 500}),
        PluginSpec(name="rate-limiting", consumer="demo", config={"minute": 7}))})
    site = site_from_state(state, upstream="stock-api-upstream")
    assert site.limits == {"second": 2, "hour": 500}
    assert site.consumers["demo"].limits == {"minute": 7}
    yearly = BASE.model_copy(update={"plugins": (
        PluginSpec(name="rate-limiting", service="stock-api", config={"year": 2}),)})
    with pytest.raises(ConfigError, match="'year' windows are not supported"):
        site_from_state(yearly, upstream="stock-api-upstream")


def test_routes_acl_and_groups_come_from_the_state() -> None:
    writer = build_gateway_state(GatewayStackConfig(consumers=(
        ConsumerConfig(username="w", key=SecretStr("k2"), access="write"),)))
    site = site_from_state(writer, upstream="stock-api-upstream")
    routes = {r.name: r for r in site.routes}
    assert routes["stock-api"].methods == ("GET", "HEAD", "OPTIONS")
    assert routes["stock-api"].acl is not None and routes["stock-api"].acl.allow == ("readers",)
    assert routes["stock-api-write"].acl is not None
    assert routes["stock-api-write"].acl.allow == ("writers",)
    assert site.consumers["w"].groups == ("readers", "writers")
    assert site.key_auth is not None and site.key_auth.key_in_query is False
    assert set(site.healthchecks) == {"active", "passive"}
    assert site.healthchecks["active"]["unhealthy"]["http_statuses"][:2] == [429, 404]


def test_site_needs_a_service_for_the_upstream() -> None:
    with pytest.raises(ConfigError, match="services"):
        site_from_state(BASE, upstream="elsewhere")


def test_plan_view_never_holds_keys() -> None:
    site = site_from_state(BASE, upstream="stock-api-upstream")
    assert site.public_view()["consumers"] == {"demo": {"groups": ["readers"], "limits": None}}
    assert "k1" not in repr(site) + str(site.public_view())
    assert isinstance(site, NginxSite)


def test_rejected_config_names_nginx_error(tmp_path: Path) -> None:
    server = NginxServer(prefix=tmp_path, listen=LISTEN, binary=require_binary("nginx"))
    server.prepare()
    bad = tmp_path / "bad.conf"
    bad.write_text("events {}\nhttp { upstream u { } server { listen 127.0.0.1:1; } }\n")
    with pytest.raises(GatewayError, match="no servers are inside upstream"):
        server.test(bad)

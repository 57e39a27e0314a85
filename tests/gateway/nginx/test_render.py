"""Rendered configs for every mapping of the Kong plugins pass ``nginx -t``."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from kongstack.core.errors import ConfigError
from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.gateway.kong.model import GatewayState, PluginSpec
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
        pytest.param(_without_plugins(BASE, "key-auth", "rate-limiting"), {"127.0.0.1:1": 1},
                     id="bare-proxy"),
        pytest.param(build_gateway_state(GatewayStackConfig(strip_path=True, route_path="/v1")),
                     {"127.0.0.1:1": 1}, id="strip-path"),
    ],
)
def test_rendered_config_passes_nginx_t(tmp_path: Path, state: GatewayState,
                                        targets: dict[str, int]) -> None:
    server = NginxServer(prefix=tmp_path, listen=LISTEN, binary=require_binary("nginx"))
    server.prepare()
    conf = tmp_path / "candidate.conf"
    conf.write_text(render(site_from_state(state, upstream="stock-api-upstream"), targets,
                           prefix=tmp_path, listen=LISTEN, generation=1))
    server.test(conf)


def test_rate_limit_units_map_to_per_minute() -> None:
    state = BASE.model_copy(update={"plugins": (
        PluginSpec(name="rate-limiting", route="stock-api", config={"second": 2}),)})
    assert site_from_state(state, upstream="stock-api-upstream").rate_per_minute == 120


def test_site_needs_a_service_for_the_upstream() -> None:
    with pytest.raises(ConfigError, match="services"):
        site_from_state(BASE, upstream="elsewhere")


def test_plan_view_never_holds_keys() -> None:
    site = site_from_state(BASE, upstream="stock-api-upstream")
    assert site.public_view()["consumers"] == ["demo"]
    assert "k1" not in repr(site) + str(site.public_view())
    assert isinstance(site, NginxSite)


def test_rejected_config_names_nginx_error(tmp_path: Path) -> None:
    from kongstack.core.errors import GatewayError

    server = NginxServer(prefix=tmp_path, listen=LISTEN, binary=require_binary("nginx"))
    server.prepare()
    bad = tmp_path / "bad.conf"
    bad.write_text("events {}\nhttp { upstream u { } server { listen 127.0.0.1:1; } }\n")
    with pytest.raises(GatewayError, match="no servers are inside upstream"):
        server.test(bad)

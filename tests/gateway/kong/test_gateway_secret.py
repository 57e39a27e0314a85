"""The gateway secret and the log token in Kong's desired state: applied to the Admin API
double (DB and DB-less), converged, never shown in plans, logs or committed files."""

from __future__ import annotations

import logging

import pytest
from pydantic import AnyHttpUrl, SecretStr

from tasks.gateway.desired import (
    GATEWAY_SECRET_HEADER,
    GatewayStackConfig,
    build_gateway_state,
    upstream_secret_header,
)
from tasks.gateway.kong import declarative
from tests.doubles.kong_server import KongDouble
from tests.gateway.kong.conftest import GatewayFactory

SECRET = "gw-secret-0123456789abcdef"
TOKEN = "log-token-fedcba9876543210"


def _config() -> GatewayStackConfig:
    return GatewayStackConfig(upstream_secret=SecretStr(SECRET), log_token=SecretStr(TOKEN),
                              log_endpoint=AnyHttpUrl("http://10.20.1.5:8000/kong"))


def _plugin(kong: KongDouble, name: str) -> dict[str, object]:
    return next(p for p in kong.rows("plugins") if p["name"] == name)


@pytest.mark.parametrize("mode", ["db", "dbless"])
def test_kong_adds_the_secret_upstream_and_the_token_to_its_logs(
    mode: str, kong: KongDouble, kong_dbless: KongDouble, make_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    double = kong if mode == "db" else kong_dbless
    gateway = make_gateway(double)
    with caplog.at_level(logging.DEBUG):
        first = gateway.apply(build_gateway_state(_config()))
    assert first.operations
    transformer = _plugin(double, "request-transformer")
    config = transformer["config"]
    assert isinstance(config, dict)
    assert config["remove"]["headers"] == [GATEWAY_SECRET_HEADER]  # a client cannot choose it
    assert config["add"]["headers"] == [f"{GATEWAY_SECRET_HEADER}:{SECRET}"]
    assert transformer["service"] is not None  # on the stock API's service only
    http_log = _plugin(double, "http-log")["config"]
    assert isinstance(http_log, dict)
    assert http_log["headers"] == {"Authorization": f"Bearer {TOKEN}"}
    assert http_log["custom_fields_by_lua"] == {
        "request.headers.x-gateway-secret": "return nil"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    plans = "\n".join(op.describe() for op in first.operations)
    for secret in (SECRET, TOKEN):
        assert secret not in logged and secret not in plans and secret not in repr(first)
    # unchanged second run: compared through the secrets, nothing to do
    assert gateway.apply(build_gateway_state(_config())).operations == []
    rotated = _config().model_copy(update={"upstream_secret": SecretStr(SECRET[::-1])})
    changed = gateway.apply(build_gateway_state(rotated))
    assert [op.name for op in changed.operations] == ["request-transformer@service:stock-api"]
    assert _plugin(double, "request-transformer")["config"]["add"]["headers"] == [  # type: ignore[index]
        f"{GATEWAY_SECRET_HEADER}:{SECRET[::-1]}"]


def test_the_nginx_gateway_can_read_the_header_and_secret_from_the_state() -> None:
    found = upstream_secret_header(build_gateway_state(_config()))
    assert found is not None
    header, secret = found
    assert header == "X-Gateway-Secret" and secret.get_secret_value() == SECRET
    from stock_api.app import GATEWAY_SECRET_HEADER as CHECKED_BY_THE_API

    assert header == CHECKED_BY_THE_API
    assert upstream_secret_header(build_gateway_state(GatewayStackConfig())) is None


def test_committed_files_hold_placeholders_never_values() -> None:
    text = declarative.dump(declarative.export(build_gateway_state(_config())))
    assert SECRET not in text and TOKEN not in text
    assert 'X-Gateway-Secret:${{ env "DECK_GATEWAY_SECRET" }}' in text
    assert 'Bearer ${{ env "DECK_LOG_TOKEN" }}' in text
    pushed = declarative.dump(declarative.export(build_gateway_state(_config()),
                                                 reveal_secrets=True))
    assert f"X-Gateway-Secret:{SECRET}" in pushed  # what a DB-less push sends


def test_a_short_secret_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="upstream_secret"):
        GatewayStackConfig(upstream_secret=SecretStr("short"))

"""The Admin API client against the double over real HTTP: retries, pagination, secrecy."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from tasks.gateway.kong.auth import AdminAuth, load_admin_auth
from tasks.gateway.kong.client import KongAdminClient, KongAPIError, KongUnavailableError
from tests.doubles.kong_server import Faults, KongDouble, kong_double

TOKEN = "adm-token-9d1e44"


def _client(double: KongDouble, **kwargs: object) -> KongAdminClient:
    options: dict[str, object] = {"backoff_initial": 0.005, "backoff_max": 0.05, "timeout": 2.0}
    options.update(kwargs)
    return KongAdminClient(base_url=double.url, **options)  # type: ignore[arg-type]


def test_retries_5xx_and_dropped_connections_then_succeeds() -> None:
    faults = Faults(scripted=[(503, {}), (0, {}), (500, {})])
    with kong_double(faults=faults) as kong, _client(kong) as client:
        assert client.request("GET", "/services").json() == {"data": [], "next": None}
        assert kong.requests["GET"] == 4


def test_honours_retry_after_on_429() -> None:
    slept: list[float] = []
    faults = Faults(scripted=[(429, {"Retry-After": "2"})])
    with kong_double(faults=faults) as kong, _client(kong, sleep=slept.append) as client:
        client.request("GET", "/upstreams")
    assert slept and slept[0] >= 2.0


@pytest.mark.parametrize("status", [400, 401, 404, 409])
def test_no_retry_on_other_4xx(status: int) -> None:
    with kong_double(faults=Faults(scripted=[(status, {})])) as kong, _client(kong) as client:
        with pytest.raises(KongAPIError) as err:
            client.request("GET", "/services", expect=(200,))
        assert err.value.status == status
        assert kong.requests["GET"] == 1


def test_gives_up_after_attempts_on_persistent_failure() -> None:
    with kong_double(faults=Faults(failure_rate=1.0)) as kong, _client(kong, attempts=3) as c:
        with pytest.raises(KongUnavailableError, match="after 3 attempts"):
            c.request("GET", "/services")
        assert kong.requests["GET"] == 3


def test_unreachable_admin_api_is_a_gateway_error() -> None:
    from kongstack.core.errors import GatewayError
    from kongstack.core.procs import free_port

    client = KongAdminClient(base_url=f"http://127.0.0.1:{free_port()}", attempts=2,
                             backoff_initial=0.001, timeout=0.5)
    with pytest.raises(GatewayError):
        client.request("GET", "/")
    client.close()


def test_paginates_every_entity_following_offset(kong: KongDouble) -> None:
    with kong.admin.lock:
        for n in range(1500):
            kong.admin.store.insert("consumers", {"username": f"user-{n:04d}",
                                                  "tags": ["bulk"] if n % 2 else None})
    with _client(kong) as client:
        everyone = list(client.paginate("/consumers"))
        tagged = list(client.paginate("/consumers", tags="bulk"))
    assert len({c["username"] for c in everyone}) == 1500
    assert len(tagged) == 750 and all(c["tags"] == ["bulk"] for c in tagged)
    assert kong.requests["GET"] == 2 + 1  # 1000-entity pages


def test_token_sent_but_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = AdminAuth.from_value(TOKEN)
    with kong_double(auth=("Kong-Admin-Token", TOKEN),
                     faults=Faults(scripted=[(503, {})])) as kong:
        with _client(kong, auth=auth) as client:
            assert client.request("GET", "/").status_code == 200
            text = repr(client) + repr(auth) + caplog.text
        with _client(kong) as anonymous:
            with pytest.raises(KongAPIError) as err:
                anonymous.request("GET", "/")
    assert err.value.status == 401
    assert TOKEN not in text + str(err.value)


def test_secret_body_values_are_scrubbed_from_kong_errors(kong: KongDouble) -> None:
    with _client(kong) as client:
        client.request("PUT", "/consumers/a", body={"tags": None})
        client.request("POST", "/consumers/a/key-auth", body={"key": SecretStr("k-123-secret")})
        with pytest.raises(KongAPIError) as err:  # unique violation echoes the key
            client.request("POST", "/consumers/a/key-auth",
                           body={"key": SecretStr("k-123-secret")})
    assert err.value.status == 409 and err.value.name == "unique constraint violation"
    assert "k-123-secret" not in str(err.value)


def test_admin_auth_from_env_or_headers_json() -> None:
    assert load_admin_auth(env={}) is None
    auth = load_admin_auth(env={"KONG_ADMIN_TOKEN": TOKEN})
    assert auth is not None and auth.http_headers() == {"Kong-Admin-Token": TOKEN}
    headers = AdminAuth.from_value('{"Authorization": "Bearer abc"}')
    assert headers.http_headers() == {"Authorization": "Bearer abc"}
    assert "abc" not in repr(headers)

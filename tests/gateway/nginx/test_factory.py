"""``make_gateway`` picks the implementation from config."""

from __future__ import annotations

from pathlib import Path

import pytest

from kongstack.core.errors import ConfigError
from kongstack.core.procs import free_port
from kongstack.core.settings import LocalSettings
from tasks.gateway.factory import make_gateway
from tasks.gateway.kong.sync import KongGateway
from tasks.gateway.nginx import NginxGateway
from tasks.gateway.protocol import Gateway
from tests.doubles.kong_server import kong_double


def test_nginx_is_built_from_local_settings(tmp_path: Path) -> None:
    settings = LocalSettings(home=tmp_path, gateway_port=free_port(),
                             gateway_status_port=free_port())
    gateway = make_gateway("nginx", settings=settings)
    assert isinstance(gateway, NginxGateway) and isinstance(gateway, Gateway)
    assert gateway.prefix == tmp_path / "nginx"
    assert gateway.listen.port == settings.gateway_port


def test_kong_uses_admin_url_and_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONG_ADMIN_TOKEN", "tok-e2c1")
    with kong_double(auth=("Kong-Admin-Token", "tok-e2c1")) as kong:
        gateway = make_gateway("kong", admin_url=kong.url)
        assert isinstance(gateway, KongGateway)
        assert gateway.list_targets() == []
        assert "tok-e2c1" not in repr(gateway)
        gateway.close()


def test_kong_without_url_or_unknown_kind_fails_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KONG_ADMIN_URL", raising=False)
    with pytest.raises(ConfigError, match="admin_url"):
        make_gateway("kong")
    with pytest.raises(ConfigError, match="gateway.kind"):
        make_gateway("traefik")  # type: ignore[arg-type]

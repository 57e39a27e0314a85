"""The admin token from a real Prefect Secret block (session Prefect server)."""

from __future__ import annotations

from typing import Any

import pytest

from kongstack.core.errors import ConfigError
from tasks.gateway.kong.auth import load_admin_auth

TOKEN = "blk-token-51c0aa"


def test_token_from_prefect_secret_block(prefect_harness: None) -> None:
    from prefect.blocks.system import Secret

    Secret.model_validate({"value": TOKEN}).save("kongstack-test-kong-admin", overwrite=True)
    auth = load_admin_auth(secret_block="kongstack-test-kong-admin",
                           env={"KONG_ADMIN_TOKEN": "from-env"})
    assert auth is not None and auth.http_headers() == {"Kong-Admin-Token": TOKEN}
    assert TOKEN not in repr(auth)

    value = {"value": {"Authorization": "Bearer x1"}}
    headers_block: Any = Secret.model_validate(value)
    headers_block.save("kongstack-test-kong-hdrs", overwrite=True)
    headers = load_admin_auth(secret_block="kongstack-test-kong-hdrs")
    assert headers is not None and headers.http_headers() == {"Authorization": "Bearer x1"}

    with pytest.raises(ConfigError, match="could not be loaded"):
        load_admin_auth(secret_block="kongstack-test-no-such-block")

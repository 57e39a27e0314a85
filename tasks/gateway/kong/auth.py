"""Admin API credentials from a Prefect Secret block or the environment, never from code.

A secret holds either a token (sent as ``Kong-Admin-Token``) or a JSON object of headers
(for example ``{"Authorization": "Bearer …"}`` behind an API gateway). Values stay wrapped
in ``SecretStr`` so no ``repr``, log line or error message can show them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from kongstack.core.errors import ConfigError

TOKEN_ENV = "KONG_ADMIN_TOKEN"
TOKEN_HEADER = "Kong-Admin-Token"


@dataclass(frozen=True)
class AdminAuth:
    headers: Mapping[str, SecretStr] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"AdminAuth(headers={sorted(self.headers)} values=***)"

    def http_headers(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.headers.items()}

    @classmethod
    def from_value(cls, value: Any) -> AdminAuth:
        """A token string, a JSON object string, or a mapping of header name → value."""
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ConfigError("kong admin secret: not a token and not valid JSON") from exc
        if isinstance(value, Mapping):
            return cls({str(k): SecretStr(str(v)) for k, v in value.items()})
        if isinstance(value, str) and value:
            return cls({TOKEN_HEADER: SecretStr(value)})
        raise ConfigError("kong admin secret: empty or of an unsupported type")


def _load_block(name: str) -> Any:
    from prefect.blocks.system import Secret  # imported late: prefect import costs ~0.7 s

    try:
        block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    except Exception as exc:  # Prefect raises ValueError/ObjectNotFound/HTTP errors here
        raise ConfigError(f"kong admin secret: Prefect Secret block {name!r} could not be "
                          f"loaded ({type(exc).__name__})") from None
    return block.get()


def load_admin_auth(*, secret_block: str | None = None,
                    env: Mapping[str, str] | None = None) -> AdminAuth | None:
    """The Secret block ``secret_block`` if named, else ``$KONG_ADMIN_TOKEN``, else none."""
    if secret_block:
        return AdminAuth.from_value(_load_block(secret_block))
    value = (os.environ if env is None else env).get(TOKEN_ENV)
    return AdminAuth.from_value(value) if value else None

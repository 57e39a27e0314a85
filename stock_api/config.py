"""Runtime configuration of one stock API instance, read once from the environment.

Environment names are the cross-team contract (PORT, HOST, REDIS_URL, MONGODB_URI,
STOCK_API_DATA_DIR, API_KEY, GATEWAY_SECRET, INSTANCE_ID, LOG_FILE, GRACEFUL_TIMEOUT) plus a
few ``STOCK_API_*`` knobs that only this service reads.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def check_redis_url(value: str) -> str:
    """A REDIS_URL redis-py can open; the one check for it (the instance drivers use it too)."""
    if not value.startswith(REDIS_SCHEMES):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return value


RedisUrl = Annotated[str, AfterValidator(check_redis_url)]


def _env(name: str, *more: str) -> AliasChoices:
    return AliasChoices(name, name.lower(), *more)


class StockApiConfig(BaseSettings):
    """Validated settings; unknown keyword arguments are rejected, errors name the field."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="forbid", populate_by_name=True, frozen=True
    )

    host: str = Field(default="127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(default=8000, ge=1, le=65535, validation_alias=_env("PORT"))
    threads: int = Field(default=8, ge=1, le=64, validation_alias=_env("STOCK_API_THREADS"))
    graceful_timeout: int = Field(
        default=30, ge=1, le=600, validation_alias=_env("GRACEFUL_TIMEOUT")
    )
    instance_id: str = Field(default="", max_length=128, validation_alias=_env("INSTANCE_ID"))

    redis_url: RedisUrl = Field(
        default="redis://127.0.0.1:16379/0", validation_alias=_env("REDIS_URL")
    )
    cache_enabled: bool = Field(default=True, validation_alias=_env("STOCK_API_CACHE_ENABLED"))
    cache_ttl_seconds: int = Field(
        default=60, ge=1, le=86_400, validation_alias=_env("STOCK_API_CACHE_TTL")
    )
    cache_prefix: str = Field(
        default="stock_api", pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        validation_alias=_env("STOCK_API_CACHE_PREFIX"),
    )
    # Short on purpose: a slow or dead Redis must cost a request milliseconds, not seconds.
    redis_timeout_seconds: float = Field(
        default=0.25, gt=0, le=5, validation_alias=_env("STOCK_API_REDIS_TIMEOUT")
    )
    # After a Redis failure, skip the cache this long instead of paying a timeout per request.
    cache_retry_after_seconds: float = Field(
        default=1.0, ge=0, le=60, validation_alias=_env("STOCK_API_CACHE_RETRY_AFTER")
    )

    # How old the last look at Redis and the store may be when /metrics is scraped: older
    # and the scrape checks them again, so stock_api_dependency_up is never stale for long.
    dependency_check_seconds: float = Field(
        default=5.0, ge=0, le=300, validation_alias=_env("STOCK_API_DEPENDENCY_CHECK")
    )

    mongodb_uri: SecretStr | None = Field(default=None, validation_alias=_env("MONGODB_URI"))
    mongodb_db: str = Field(
        default="kongstack", pattern=r"^[A-Za-z0-9_-]{1,63}$",
        validation_alias=_env("STOCK_API_MONGODB_DB"),
    )
    store_timeout_seconds: float = Field(
        default=2.0, gt=0, le=60, validation_alias=_env("STOCK_API_STORE_TIMEOUT")
    )
    data_dir: Path = Field(
        default=Path("var/data/stock_api"), validation_alias=_env("STOCK_API_DATA_DIR")
    )

    api_key: SecretStr | None = Field(default=None, validation_alias=_env("API_KEY"))
    # Set on instances behind a gateway: every request except the probes (/live, /health,
    # /ready, /metrics) must carry it in X-Gateway-Secret, which only the gateway adds, so a
    # host that reaches an instance directly cannot bypass the gateway's key-auth.
    gateway_secret: SecretStr | None = Field(
        default=None, min_length=16, validation_alias=_env("GATEWAY_SECRET")
    )
    log_file: Path | None = Field(default=None, validation_alias=_env("LOG_FILE"))
    max_body_bytes: int = Field(
        default=16_384, ge=256, le=1_048_576, validation_alias=_env("STOCK_API_MAX_BODY_BYTES")
    )
    # A stock is a flat object: nesting deeper than this is refused (400) before parsing,
    # so a body of 10,000 brackets never reaches the JSON parser's recursion limit.
    max_body_depth: int = Field(
        default=32, ge=1, le=256, validation_alias=_env("STOCK_API_MAX_BODY_DEPTH")
    )
    # Registers GET /debug/slow (a request that takes as long as asked); tests and drain demos only.
    debug_endpoints: bool = Field(
        default=False, validation_alias=_env("STOCK_API_DEBUG_ENDPOINTS")
    )

    @field_validator("mongodb_uri", "api_key", "gateway_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_file", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def effective_instance_id(self) -> str:
        """INSTANCE_ID, or ``<hostname>:<port>`` so that every instance is told apart."""
        return self.instance_id or f"{socket.gethostname()}:{self.port}"

    @property
    def store_kind(self) -> str:
        return "mongodb" if self.mongodb_uri is not None else "embedded"

"""Local runtime settings: where things live and which loopback ports they answer on.

Every value can be overridden with an environment variable ``KONGSTACK_<NAME>`` so that
tests and a second stack on the same machine never collide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kongstack.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


class LocalSettings(BaseSettings):
    """Ports and paths of the local (embedded) stack."""

    model_config = SettingsConfigDict(env_prefix="KONGSTACK_", extra="ignore")

    home: Path = Field(default=REPO_ROOT / "var", description="runtime state: data, logs, pids")
    host: str = "127.0.0.1"
    redis_port: int = 16379
    prometheus_port: int = 19090
    alertmanager_port: int = 19093
    gateway_port: int = 18000
    gateway_status_port: int = 18081
    api_base_port: int = 18101
    prefect_port: int = 4200
    webhook_port: int = 18090
    image: str = "localhost/kongstack-stock-api:latest"
    docker_host: str = "unix:///run/kongstack/podman.sock"
    # The Prefect server's database (kongstack/core/prefectdb.py; README "Prefect database").
    prefect_db: Literal["sqlite", "postgresql"] = Field(
        default="sqlite",
        description="sqlite: embedded, <home>/prefect/prefect.db; postgresql: a local cluster "
        "under <home>/postgres on postgres_port, or the server of prefect_database_url",
    )
    prefect_database_url: SecretStr | None = Field(
        default=None,
        description="an existing PostgreSQL server, e.g. postgresql+asyncpg://prefect:"
        "${PREFECT_SERVER_DATABASE_PASSWORD}@db.internal:5432/prefect (implies postgresql)",
    )
    prefect_db_password: SecretStr | None = Field(
        default=None, description="the Prefect database role's password (environment only)"
    )
    prefect_db_password_file: Path | None = Field(
        default=None, description="file holding that password (e.g. a mounted secret)"
    )
    postgres_port: int = Field(default=15432, ge=1024, le=65535)
    postgres_bindir: Path | None = Field(
        default=None, description="PostgreSQL binaries (default: newest /usr/lib/postgresql/*)"
    )

    @field_validator("prefect_database_url")
    @classmethod
    def _asyncpg_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
                "postgresql+asyncpg://"):
            raise ValueError("must start with postgresql+asyncpg:// (Prefect's async driver)")
        return value

    @property
    def uses_postgresql(self) -> bool:
        return self.prefect_db == "postgresql" or self.prefect_database_url is not None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.log_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)


def load_settings() -> LocalSettings:
    """The settings from the environment; a bad value is a ConfigError naming its variable
    (never echoing a secret's value)."""
    try:
        settings = LocalSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"KONGSTACK_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(problems) from None
    settings.ensure_dirs()
    return settings

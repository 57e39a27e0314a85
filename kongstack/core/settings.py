"""Local runtime settings: where things live and which loopback ports they answer on.

Every value can be overridden with an environment variable ``KONGSTACK_<NAME>`` so that
tests and a second stack on the same machine never collide.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    settings = LocalSettings()
    settings.ensure_dirs()
    return settings

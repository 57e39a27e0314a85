from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stock_api import lifecycle
from stock_api.app import create_app
from stock_api.config import StockApiConfig
from stock_api.context import EXTENSION, Services
from stock_api.seed import SeedParams, seed
from stock_api.store import open_embedded

SMALL = SeedParams(symbols=40, days=60, seed=7, end="2025-12-31")
CONTRACT_ENV = (
    "PORT", "HOST", "REDIS_URL", "MONGODB_URI", "STOCK_API_DATA_DIR", "API_KEY", "INSTANCE_ID",
    "GATEWAY_SECRET", "STOCK_API_MAX_BODY_DEPTH", "STOCK_API_DEPENDENCY_CHECK",
    "LOG_FILE", "GRACEFUL_TIMEOUT", "STOCK_API_CACHE_ENABLED", "STOCK_API_CACHE_PREFIX",
    "STOCK_API_DEBUG_ENDPOINTS", "STOCK_API_THREADS", "STOCK_API_CACHE_TTL",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests configure the API explicitly; a developer's environment must not leak in."""
    for name in CONTRACT_ENV:
        monkeypatch.delenv(name, raising=False)
    lifecycle.reset()
    yield
    lifecycle.reset()


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small seeded embedded store, built once and copied per test."""
    path = tmp_path_factory.mktemp("seeded") / "data"
    repo = open_embedded(path, "kongstack")
    seed(repo, SMALL)
    repo.close()
    return path


@pytest.fixture
def data_dir(seeded_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(seeded_template, target)
    return target


def make_config(data_dir: Path, redis_url: str, **overrides: Any) -> StockApiConfig:
    values: dict[str, Any] = {
        "data_dir": data_dir, "redis_url": redis_url, "port": 18999,
        "cache_prefix": f"t{uuid.uuid4().hex[:12]}", "instance_id": "test-instance",
    }
    values.update(overrides)
    return StockApiConfig(**values)


@pytest.fixture
def app(data_dir: Path, redis_url: str, tmp_path: Path) -> Flask:
    return create_app(make_config(data_dir, redis_url, log_file=tmp_path / "api.log"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def services_of(app: Flask) -> Services:
    found: Services = app.extensions[EXTENSION]
    return found


def cache_count(app: Flask, result: str) -> float:
    value = services_of(app).metrics.registry.get_sample_value(
        "stock_api_cache_requests_total", {"result": result}
    )
    return float(value or 0.0)


def dependency_up(client: FlaskClient, dependency: str) -> float | None:
    """``stock_api_dependency_up{dependency=...}`` as a scrape of /metrics sees it."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "stock_api_dependency_up"
                    and sample.labels.get("dependency") == dependency):
                return float(sample.value)
    return None


def valid_stock(symbol: str = "NEWCO", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": symbol, "name": "New Company Inc.", "exchange": "NASDAQ",
        "sector": "Information Technology", "currency": "USD", "price": 12.5,
        "volume": 1000, "market_cap": 1_250_000.0,
    }
    body.update(overrides)
    return body

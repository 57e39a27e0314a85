"""Configuration comes from the contract's environment names and fails naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stock_api.config import StockApiConfig


def test_reads_the_contract_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "18123")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/2")
    monkeypatch.setenv("STOCK_API_DATA_DIR", "/tmp/somewhere")
    monkeypatch.setenv("API_KEY", "k-123")
    monkeypatch.setenv("GRACEFUL_TIMEOUT", "12")
    monkeypatch.setenv("LOG_FILE", "")
    config = StockApiConfig()
    assert config.port == 18123 and config.graceful_timeout == 12
    assert config.redis_url.endswith(":6390/2")
    assert config.data_dir == Path("/tmp/somewhere")
    assert config.api_key is not None and config.api_key.get_secret_value() == "k-123"
    assert "k-123" not in repr(config)
    assert config.log_file is None and config.store_kind == "embedded"
    assert config.effective_instance_id.endswith(":18123")


@pytest.mark.parametrize(
    ("env", "value"),
    [("PORT", "http"), ("PORT", "70000"), ("REDIS_URL", "localhost:6379"),
     ("GRACEFUL_TIMEOUT", "-1"), ("STOCK_API_THREADS", "0")],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError) as excinfo:
        StockApiConfig()
    assert env in str(excinfo.value)


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="redis_ulr"):
        StockApiConfig(redis_ulr="redis://x")  # type: ignore[call-arg]

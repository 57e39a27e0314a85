"""The file_sd writer the autoscaler calls every tick that changes the pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kongstack.core.errors import ConfigError
from tasks.monitoring import read_stock_api_targets, write_stock_api_targets


def test_writes_standard_file_sd_json_with_the_job_label(tmp_path: Path) -> None:
    path = tmp_path / "targets" / "stock_api.json"
    assert write_stock_api_targets(path, ["127.0.0.1:18102", "127.0.0.1:18101"],
                                   {"stack": "kongstack"})
    assert json.loads(path.read_text()) == [{
        "targets": ["127.0.0.1:18101", "127.0.0.1:18102"],
        "labels": {"job": "stock_api", "stack": "kongstack"},
    }]
    assert read_stock_api_targets(path) == ["127.0.0.1:18101", "127.0.0.1:18102"]


def test_unchanged_pool_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "stock_api.json"
    write_stock_api_targets(path, ["127.0.0.1:18101", "127.0.0.1:18101"])
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert not write_stock_api_targets(path, ["127.0.0.1:18101"])
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_replaces_the_file_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "stock_api.json"
    write_stock_api_targets(path, ["127.0.0.1:18101"])
    inode = path.stat().st_ino
    write_stock_api_targets(path, ["127.0.0.1:18101", "127.0.0.1:18102"])
    assert path.stat().st_ino != inode  # a rename, never an in-place rewrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stock_api.json"]


def test_empty_pool_is_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "stock_api.json"
    write_stock_api_targets(path, [])
    assert json.loads(path.read_text()) == []
    assert read_stock_api_targets(tmp_path / "missing.json") == []


@pytest.mark.parametrize("address", ["127.0.0.1", "http://127.0.0.1:1", "host:port", ""])
def test_rejects_addresses_that_are_not_host_port(tmp_path: Path, address: str) -> None:
    with pytest.raises(ConfigError, match="host:port"):
        write_stock_api_targets(tmp_path / "t.json", [address])
    assert not (tmp_path / "t.json").exists()


def test_rejects_reserved_label_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="__address__"):
        write_stock_api_targets(tmp_path / "t.json", ["127.0.0.1:1"], {"__address__": "x"})


def test_prefect_tasks_render_config_and_update_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.monitoring.prefect_tasks import (
        install_log_store,
        render_monitoring_config,
        update_stock_api_targets,
    )

    files = render_monitoring_config.fn({"scrape": {"scrape_interval": "5s"}}, str(tmp_path))
    assert Path(files["prometheus"]).read_text().count("scrape_interval: 5s") == 1
    assert update_stock_api_targets.fn(files["stock_api_targets"], ["127.0.0.1:18101"])
    assert not update_stock_api_targets.fn(files["stock_api_targets"], ["127.0.0.1:18101"])
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    assert install_log_store.fn().startswith("skipped")

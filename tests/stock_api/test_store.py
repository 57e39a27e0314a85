"""The store layer: the embedded store shared by processes, and the MongoDB path."""

from __future__ import annotations

import multiprocessing
import os
import queue
from pathlib import Path
from typing import Any

import mongomock
import pytest

from stock_api.errors import DuplicateSymbolError, StoreError
from stock_api.models import ListQuery
from stock_api.store import DocumentRepository, open_embedded, open_mongo
from tests.stock_api.conftest import valid_stock

CONTESTED = [f"C{i:03d}" for i in range(25)]


def _writer(data_dir: str, tag: str, start: Any, results: Any) -> None:
    """One API-like process: its own writes plus a race on the contested symbols."""
    repo = open_embedded(Path(data_dir), "kongstack")  # all three open a fresh dir at once
    start.wait(timeout=60)
    won = 0
    for i, contested in enumerate(CONTESTED):
        repo.create(valid_stock(f"{tag}{i:03d}"))
        repo.replace_history(f"{tag}{i:03d}", [{"date": f"2025-01-{d:02d}", "close": float(d)}
                                               for d in range(1, 11)])
        try:
            repo.create(valid_stock(contested, name=f"won by {tag}"))
            won += 1
        except DuplicateSymbolError:
            pass
    results.put((tag, won))


def test_two_processes_share_the_embedded_store(tmp_path: Path) -> None:
    """Two writer processes and a long-lived reader on one fresh directory.

    montydb creates a collection on first write, and two processes doing that at once
    fail ("no such table") most of the time; the flatfile engine would lose one
    process's writes. Both are what this test would catch."""
    data_dir = tmp_path / "shared"
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(data_dir), tag, start, results))
             for tag in ("WA", "WB")]
    for proc in procs:
        proc.start()
    reader = open_embedded(data_dir, "kongstack")  # opened before any write, kept open
    assert reader.symbols() == set()
    start.wait(timeout=60)
    outcomes = {}
    for _ in procs:
        try:
            tag, won = results.get(timeout=120)
        except queue.Empty:
            pytest.fail("a writer process died; see its traceback above")
        outcomes[tag] = won
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    symbols = reader.symbols()
    own = {f"{tag}{i:03d}" for tag in ("WA", "WB") for i in range(len(CONTESTED))}
    assert symbols == own | set(CONTESTED)
    # Each contested symbol was created exactly once, by one of the two processes.
    assert outcomes["WA"] + outcomes["WB"] == len(CONTESTED)
    winners = {reader.get(c)["name"] for c in CONTESTED}  # type: ignore[index]
    assert winners <= {"won by WA", "won by WB"}
    assert len(reader.history("WB007")) == 10
    _, total = reader.list_stocks(ListQuery(per_page=10))
    assert total == len(own) + len(CONTESTED)


def test_embedded_store_refuses_the_flatfile_engine(tmp_path: Path) -> None:
    (tmp_path / ".monty.storage").write_text("flatfile")
    with pytest.raises(StoreError, match="sqlite"):
        open_embedded(tmp_path, "kongstack")


def _mongomock_repo() -> tuple[DocumentRepository, Any]:
    client: Any = mongomock.MongoClient()
    return DocumentRepository(client, client["kongstack"], kind="mongodb", embedded=False), client


def test_mongo_path_creates_indexes_and_keeps_history_in_one_collection() -> None:
    repo, client = _mongomock_repo()
    repo.ensure_indexes()
    indexes = client["kongstack"]["stocks"].index_information()
    assert indexes["symbol_unique"]["unique"] is True
    history_indexes = client["kongstack"]["history"].index_information()
    assert history_indexes["symbol_date_unique"]["key"] == [("symbol", 1), ("date", 1)]

    repo.create(valid_stock("AAA"))
    repo.create(valid_stock("BBB", price=50.0, name="Beta Industries"))
    with pytest.raises(DuplicateSymbolError):
        repo.create(valid_stock("AAA"))
    repo.replace_history("AAA", [{"date": "2025-01-02", "close": 1.0},
                                 {"date": "2025-01-01", "close": 2.0}])
    repo.replace_history("BBB", [{"date": "2025-01-01", "close": 3.0}])
    assert [b["date"] for b in repo.history("AAA")] == ["2025-01-01", "2025-01-02"]
    assert client["kongstack"].list_collection_names().count("history") == 1

    items, total = repo.list_stocks(ListQuery(q="beta", per_page=1))
    assert total == 1 and items[0]["symbol"] == "BBB"
    items, total = repo.list_stocks(ListQuery(sort="-price", per_page=1, page=2))
    assert (total, items[0]["symbol"]) == (2, "AAA")

    assert repo.delete("AAA") is True
    assert repo.history("AAA") == [] and len(repo.history("BBB")) == 1
    assert repo.delete("AAA") is False
    assert repo.replace("AAA", valid_stock("AAA")) is False


def test_unreachable_mongodb_is_a_store_error_quickly() -> None:
    repo = open_mongo("mongodb://127.0.0.1:1/?directConnection=true", "kongstack", timeout=0.3)
    with pytest.raises(StoreError, match="ping"):
        repo.ping()
    repo.close()


@pytest.mark.real_service
def test_real_mongodb_when_configured() -> None:
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        pytest.skip("MONGODB_URI is not set: no MongoDB server on this machine")
    repo = open_mongo(uri, f"kongstack_test_{os.getpid()}", timeout=5)
    try:
        repo.ping()
        repo.ensure_indexes()
        repo.create(valid_stock("REAL"))
        with pytest.raises(DuplicateSymbolError):
            repo.create(valid_stock("REAL"))
        assert repo.get("REAL")["symbol"] == "REAL"  # type: ignore[index]
    finally:
        repo._client.drop_database(f"kongstack_test_{os.getpid()}")
        repo.close()

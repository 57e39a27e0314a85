"""The stock store: a small repository over the pymongo collection API.

Two back ends share one implementation:

* **MongoDB** (``MONGODB_URI`` set): pymongo with short timeouts; indexes ``symbol``
  (unique), ``(exchange, sector)``, ``price`` and ``history (symbol, date)`` (unique)
  are created at start.
* **Embedded** (no URI): montydb on disk in ``STOCK_API_DATA_DIR`` with its **sqlite**
  engine. Several instance processes share that directory: every montydb operation is
  one short SQLite transaction (WAL journal), so writes from one process are seen by
  the next read of another, and the primary key (``_id`` = symbol) enforces uniqueness
  across processes. montydb's default *flatfile* engine keeps a per-process in-memory
  copy that it flushes wholesale, so two processes would overwrite each other: it is
  never used. montydb has no secondary indexes (``create_index`` is a no-op) and every
  find is a scan, so price history is partitioned into one collection per symbol to
  keep a history read proportional to that symbol's bars, not to the whole data set.
  montydb's SQLite engine shares one connection slot per client across threads, so
  calls are serialised with a lock inside each process; creating and dropping
  collections (files) is serialised across processes with a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from stock_api.config import StockApiConfig
from stock_api.errors import DuplicateSymbolError, StoreError
from stock_api.models import SORT_FIELDS, ListQuery

Doc = dict[str, Any]
STOCKS = "stocks"
HISTORY = "history"
META = "meta"


class StockRepository(Protocol):
    """What the API and the seed command need from a store."""

    kind: str

    def ping(self) -> None: ...
    def ensure_indexes(self) -> None: ...
    def get(self, symbol: str) -> Doc | None: ...
    def list_stocks(self, query: ListQuery) -> tuple[list[Doc], int]: ...
    def create(self, stock: Doc) -> None: ...
    def replace(self, symbol: str, stock: Doc) -> bool: ...
    def delete(self, symbol: str) -> bool: ...
    def history(self, symbol: str) -> list[Doc]: ...
    def replace_history(self, symbol: str, bars: Sequence[Doc]) -> None: ...
    def symbols(self) -> set[str]: ...
    def get_meta(self, key: str) -> Doc | None: ...
    def set_meta(self, key: str, value: Doc) -> None: ...
    def close(self) -> None: ...


def _store_errors() -> tuple[type[BaseException], ...]:
    import montydb.errors
    import pymongo.errors

    return (pymongo.errors.PyMongoError, montydb.errors.MontyError, sqlite3.Error, OSError)


def _duplicate_errors() -> tuple[type[BaseException], ...]:
    import montydb.errors
    import pymongo.errors

    return (pymongo.errors.DuplicateKeyError, montydb.errors.DuplicateKeyError)


def _public(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k != "_id"}


def build_filter(query: ListQuery) -> Doc:
    """The document filter for a list query (shared by both back ends)."""
    flt: Doc = {}
    if query.exchange is not None:
        flt["exchange"] = query.exchange
    if query.sector is not None:
        flt["sector"] = query.sector
    price: Doc = {}
    if query.min_price is not None:
        price["$gte"] = query.min_price
    if query.max_price is not None:
        price["$lte"] = query.max_price
    if price:
        flt["price"] = price
    if query.q is not None:
        pattern = re.escape(query.q)
        flt["$or"] = [
            {"symbol": {"$regex": pattern, "$options": "i"}},
            {"name": {"$regex": pattern, "$options": "i"}},
        ]
    return flt


class DocumentRepository:
    """StockRepository over a pymongo-compatible database handle."""

    def __init__(
        self, client: Any, db: Any, *, kind: str, embedded: bool, lock_file: Path | None = None
    ) -> None:
        self.kind = kind
        self._client = client
        self._db = db
        self._embedded = embedded
        self._lock: threading.RLock | None = threading.RLock() if embedded else None
        self._lock_file = lock_file
        self._errors = _store_errors()
        self._duplicates = _duplicate_errors()

    @contextlib.contextmanager
    def _op(self, what: str) -> Iterator[None]:
        """Serialise (embedded only) and translate driver errors into StoreError."""
        lock = self._lock if self._lock is not None else contextlib.nullcontext()
        with lock:
            try:
                yield
            except DuplicateSymbolError:
                raise
            except self._duplicates as exc:
                raise DuplicateSymbolError(what) from exc
            except self._errors as exc:
                raise StoreError(f"{what} failed: {type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def _schema_change(self) -> Iterator[None]:
        """Embedded: creating or dropping a collection (a file) is not atomic in montydb,
        so processes take turns through a lock file. Row writes need no such lock."""
        if self._lock_file is None:
            yield
            return
        with open(self._lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _history(self, symbol: str) -> Any:
        return self._db[f"{HISTORY}.{symbol}"] if self._embedded else self._db[HISTORY]

    def ping(self) -> None:
        with self._op("ping"):
            if self._embedded:
                list(self._db[STOCKS].find({}, max_scan=1))
            else:
                self._client.admin.command("ping")

    def ensure_indexes(self) -> None:
        if self._embedded:
            # The primary key is montydb's only index; _id = symbol makes it the unique one.
            return
        with self._op("create indexes"):
            stocks = self._db[STOCKS]
            stocks.create_index("symbol", unique=True, name="symbol_unique")
            stocks.create_index([("exchange", 1), ("sector", 1)], name="exchange_sector")
            stocks.create_index("price", name="price")
            self._db[HISTORY].create_index(
                [("symbol", 1), ("date", 1)], unique=True, name="symbol_date_unique"
            )

    def get(self, symbol: str) -> Doc | None:
        with self._op(f"get {symbol}"):
            doc = self._db[STOCKS].find_one({"_id": symbol})
        return _public(doc) if doc else None

    def list_stocks(self, query: ListQuery) -> tuple[list[Doc], int]:
        field, direction = SORT_FIELDS[query.sort]
        order = [(field, direction)] + ([("symbol", 1)] if field != "symbol" else [])
        flt = build_filter(query)
        skip = (query.page - 1) * query.per_page
        with self._op("list stocks"):
            coll = self._db[STOCKS]
            if self._embedded:
                # Every montydb find is a full scan: scan once, count and slice here.
                docs = list(coll.find(flt).sort(order))
                return [_public(d) for d in docs[skip : skip + query.per_page]], len(docs)
            total = coll.count_documents(flt)
            docs = list(coll.find(flt).sort(order).skip(skip).limit(query.per_page))
        return [_public(d) for d in docs], int(total)

    def create(self, stock: Doc) -> None:
        with self._op(f"create {stock['symbol']}"):
            self._db[STOCKS].insert_one({"_id": stock["symbol"], **stock})

    def replace(self, symbol: str, stock: Doc) -> bool:
        with self._op(f"replace {symbol}"):
            result = self._db[STOCKS].replace_one({"_id": symbol}, {"_id": symbol, **stock})
        return bool(result.matched_count)

    def delete(self, symbol: str) -> bool:
        with self._op(f"delete {symbol}"):
            deleted = self._db[STOCKS].delete_one({"_id": symbol}).deleted_count
            if self._embedded:
                with self._schema_change():
                    self._history(symbol).drop()
            else:
                self._history(symbol).delete_many({"symbol": symbol})
        return bool(deleted)

    def history(self, symbol: str) -> list[Doc]:
        with self._op(f"history {symbol}"):
            docs = self._history(symbol).find({"symbol": symbol}).sort("date", 1)
            return [{k: v for k, v in d.items() if k not in ("_id", "symbol")} for d in docs]

    def replace_history(self, symbol: str, bars: Sequence[Doc]) -> None:
        docs = [{"_id": f"{symbol}:{b['date']}", "symbol": symbol, **b} for b in bars]
        with self._op(f"write history {symbol}"), self._schema_change():
            coll = self._history(symbol)
            if self._embedded:
                coll.drop()
            else:
                coll.delete_many({"symbol": symbol})
            if docs:
                coll.insert_many(docs)

    def symbols(self) -> set[str]:
        with self._op("list symbols"):
            return {str(d["_id"]) for d in self._db[STOCKS].find({}, {"_id": 1})}

    def get_meta(self, key: str) -> Doc | None:
        with self._op(f"get meta {key}"):
            doc = self._db[META].find_one({"_id": key})
        return _public(doc) if doc else None

    def set_meta(self, key: str, value: Doc) -> None:
        with self._op(f"set meta {key}"):
            self._db[META].replace_one({"_id": key}, {"_id": key, **value}, upsert=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


_INIT_LOCK = threading.Lock()


def open_embedded(data_dir: Path, db_name: str) -> DocumentRepository:
    """montydb (sqlite engine) in ``data_dir``; safe to call from several processes at once."""
    from montydb import MontyClient, set_storage

    data_dir = data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # set_storage rewrites its config files; a file lock keeps a second process from
        # reading them half-written while the first one initialises the directory.
        with _INIT_LOCK, open(data_dir / ".init.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            marker = data_dir / ".monty.storage"
            if not marker.exists():
                set_storage(str(data_dir), storage="sqlite", use_bson=False)
            elif marker.read_text().strip() != "sqlite":
                raise StoreError(
                    f"{data_dir} holds a montydb '{marker.read_text().strip()}' store; "
                    "only the sqlite engine is safe for several processes"
                )
            client = MontyClient(str(data_dir))
            db = client[db_name]
            # Create the shared collections here, under the lock: montydb creates a
            # collection lazily on first write, and two processes doing that at once race
            # (one sees the new file before its table exists).
            existing = set(db.list_collection_names())
            for name in (STOCKS, META):
                if name not in existing:
                    db.create_collection(name)
    except StoreError:
        raise
    except Exception as exc:  # montydb raises plain exceptions on a bad directory
        raise StoreError(f"cannot open embedded store at {data_dir}: {exc}") from exc
    return DocumentRepository(
        client, db, kind="embedded", embedded=True, lock_file=data_dir / ".schema.lock"
    )


def open_mongo(uri: str, db_name: str, timeout: float) -> DocumentRepository:
    from pymongo import MongoClient

    ms = int(timeout * 1000)
    client: Any = MongoClient(
        uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms,
        appname="kongstack-stock-api",
    )
    return DocumentRepository(client, client[db_name], kind="mongodb", embedded=False)


def open_repository(config: StockApiConfig) -> DocumentRepository:
    """The repository the configuration asks for (MongoDB if MONGODB_URI is set)."""
    if config.mongodb_uri is not None:
        return open_mongo(
            config.mongodb_uri.get_secret_value(), config.mongodb_db,
            config.store_timeout_seconds,
        )
    return open_embedded(config.data_dir, config.mongodb_db)

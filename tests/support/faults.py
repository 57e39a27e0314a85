"""Faults a test injects into a real dependency, undone on exit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def store_unreachable(data_dir: Path) -> Iterator[None]:
    """The embedded store's stocks file (found under ``data_dir``) replaced by one SQLite
    cannot open: a real ``DatabaseError`` on every access, as a lost disk or a corrupt file
    gives. The original is put back on exit."""
    found = list(data_dir.rglob("stocks.collection"))
    if len(found) != 1:
        raise AssertionError(f"expected one stocks.collection under {data_dir}, found {found}")
    [stocks] = found
    aside = stocks.with_name("stocks.collection.aside")
    os.rename(stocks, aside)
    stocks.write_bytes(b"this is not a database\n" * 64)
    try:
        yield
    finally:
        stocks.unlink()
        os.rename(aside, stocks)

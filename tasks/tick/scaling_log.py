"""The scaling log: the product's record of every decision and action (DESIGN.md), written
by autoscale and the CLI, read by maintenance, ``kongstack status`` and ``monitor --history``.

Not to be confused with the decision core's ``ScalingHistory`` (what ``decide`` remembers,
carried between ticks in the memory block, tasks/tick/memory.py). A durable SQLite file
(``<data>/history.sqlite``; one writer per tick; WAL so readers never block it). Each row is one
decision or action with its reason, the metrics snapshot it was based on, and its outcome.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EVENT_KINDS = ("decision", "scale_up", "scale_down", "repair", "manual", "error",
               "add_host", "remove_host")
OUTCOMES = ("ok", "failed", "partial", "dry_run", "noop", "pending")
"""``pending``: a host add/removal started and carried on by later ticks (tasks/tick/grow.py)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scaling_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          REAL    NOT NULL,          -- unix seconds, UTC
    kind        TEXT    NOT NULL,          -- one of EVENT_KINDS
    from_count  INTEGER NOT NULL,
    to_count    INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    metric      TEXT,                      -- the driving metric, if any
    metrics     TEXT    NOT NULL DEFAULT '{}',  -- JSON snapshot the decision used
    duration_s  REAL    NOT NULL DEFAULT 0,
    outcome     TEXT    NOT NULL,          -- one of OUTCOMES
    source      TEXT    NOT NULL DEFAULT 'autoscale'  -- autoscale | cli | maintenance
);
CREATE INDEX IF NOT EXISTS scaling_events_ts ON scaling_events (ts);
-- Write-ahead scaling records: an intent is written (committed) before the tick acts and
-- closed in the same transaction as the history rows that record the act. One still open
-- at the next tick means the last one died in between (tasks/tick/intent.py).
CREATE TABLE IF NOT EXISTS scaling_intents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          REAL    NOT NULL,
    kind        TEXT    NOT NULL,          -- scale_up | scale_down
    from_count  INTEGER NOT NULL,
    to_count    INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    instances   TEXT    NOT NULL DEFAULT '[]',  -- JSON: the victims of a scale-down
    closed_ts   REAL                       -- NULL while open
);
"""


@dataclass(frozen=True)
class ScalingLogEntry:
    ts: datetime
    kind: str
    from_count: int
    to_count: int
    reason: str
    outcome: str
    metric: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    source: str = "autoscale"
    id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"kind: {self.kind!r} is not one of {EVENT_KINDS}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: {self.outcome!r} is not one of {OUTCOMES}")
        if self.ts.tzinfo is None:
            raise ValueError("ts: must be timezone-aware (UTC)")


@dataclass(frozen=True)
class Intent:
    """What a tick was about to do, written before it acted."""

    id: int
    ts: datetime
    kind: str
    from_count: int
    to_count: int
    reason: str
    instances: tuple[str, ...] = ()


class ScalingLog:
    """Append-only scaling log in SQLite at ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=10.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            yield conn
            conn.commit()
        finally:
            conn.close()

    def append(self, event: ScalingLogEntry) -> int:
        return self.append_many([event])[0]

    def open_intent(self, *, kind: str, from_count: int, to_count: int, reason: str,
                    instances: Iterable[str] = (), now: datetime | None = None) -> int:
        """Write (and commit) an intent before acting; returns its id."""
        at = now or datetime.now(UTC)
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO scaling_intents (ts, kind, from_count, to_count, reason, instances)"
                " VALUES (?,?,?,?,?,?)",
                (at.timestamp(), kind, from_count, to_count, reason, json.dumps(list(instances))))
            return int(cur.lastrowid or 0)

    def open_intents(self) -> list[Intent]:
        """Intents never closed, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, ts, kind, from_count, to_count, reason, instances FROM "
                "scaling_intents WHERE closed_ts IS NULL ORDER BY id").fetchall()
        return [Intent(id=r[0], ts=datetime.fromtimestamp(r[1], tz=UTC), kind=r[2],
                       from_count=r[3], to_count=r[4], reason=r[5],
                       instances=tuple(json.loads(r[6] or "[]"))) for r in rows]

    def append_many(self, events: Iterable[ScalingLogEntry],
                    close_intents: Iterable[int] = ()) -> list[int]:
        """Append ``events`` and close ``close_intents`` in one transaction: an intent is
        closed exactly when the rows recording its outcome are written."""
        ids: list[int] = []
        with self._connect() as conn:
            conn.executemany("UPDATE scaling_intents SET closed_ts = ? WHERE id = ?",
                             [(datetime.now(UTC).timestamp(), i) for i in close_intents])
            for e in events:
                cur = conn.execute(
                    "INSERT INTO scaling_events (ts, kind, from_count, to_count, reason, metric,"
                    " metrics, duration_s, outcome, source) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        e.ts.timestamp(),
                        e.kind,
                        e.from_count,
                        e.to_count,
                        e.reason,
                        e.metric,
                        json.dumps(e.metrics, default=str),
                        e.duration_s,
                        e.outcome,
                        e.source,
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def recent(self, limit: int = 20, since: datetime | None = None) -> list[ScalingLogEntry]:
        """The newest ``limit`` events (newest first), optionally only those after ``since``."""
        query = "SELECT id, ts, kind, from_count, to_count, reason, metric, metrics, duration_s,"
        query += " outcome, source FROM scaling_events"
        args: list[Any] = []
        if since is not None:
            query += " WHERE ts >= ?"
            args.append(since.timestamp())
        query += " ORDER BY ts DESC, id DESC LIMIT ?"
        args.append(limit)
        with self._connect() as conn:
            rows = conn.execute(query, args).fetchall()
        return [_row_to_event(r) for r in rows]

    def prune(self, older_than: datetime) -> int:
        """Delete events strictly older than ``older_than``; return how many."""
        with self._connect() as conn:
            cur = conn.execute("DELETE FROM scaling_events WHERE ts < ?", (older_than.timestamp(),))
            return int(cur.rowcount)

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM scaling_events").fetchone()[0])


def _row_to_event(row: tuple[Any, ...]) -> ScalingLogEntry:
    return ScalingLogEntry(
        id=row[0],
        ts=datetime.fromtimestamp(row[1], tz=UTC),
        kind=row[2],
        from_count=row[3],
        to_count=row[4],
        reason=row[5],
        metric=row[6],
        metrics=json.loads(row[7] or "{}"),
        duration_s=row[8],
        outcome=row[9],
        source=row[10],
    )


def default_scaling_log_path() -> Path:
    from kongstack.core.settings import LocalSettings

    return LocalSettings().data_dir / "history.sqlite"

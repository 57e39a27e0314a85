"""Write-ahead scaling records (issue 16, item 7): the intent is committed before acting and
closed with the rows that record the act, in one transaction; an open one is recorded by the
next tick with the size the pool really reached; repair rows carry the counts they changed."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autoscaler import ScalingHistory
from tasks.tick.intent import recovered_action, remember_recovered
from tasks.tick.repair import Repair, size_change
from tasks.tick.scaling_log import Intent, ScalingLog, ScalingLogEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_an_intent_stays_open_until_its_rows_are_written(tmp_path: Path) -> None:
    log = ScalingLog(tmp_path / "h.sqlite")
    first = log.open_intent(kind="scale_down", from_count=4, to_count=2, reason="load fell",
                            instances=["a", "b"], now=T0)
    second = log.open_intent(kind="scale_up", from_count=2, to_count=3, reason="load rose")
    reopened = ScalingLog(tmp_path / "h.sqlite")  # a new process after a crash sees them
    assert [(i.id, i.kind, i.instances) for i in reopened.open_intents()] == [
        (first, "scale_down", ("a", "b")), (second, "scale_up", ())]
    row = ScalingLogEntry(ts=T0, kind="scale_down", from_count=4, to_count=2, reason="x",
                          outcome="ok")
    reopened.append_many([row], close_intents=[first])
    assert [i.id for i in log.open_intents()] == [second] and log.count() == 1


def test_closing_is_atomic_with_the_rows(tmp_path: Path) -> None:
    """A row that cannot be written leaves its intent open (the same transaction)."""
    log = ScalingLog(tmp_path / "h.sqlite")
    intent = log.open_intent(kind="scale_up", from_count=2, to_count=3, reason="r")
    unbindable = ScalingLogEntry(ts=T0, kind="scale_up", from_count=2,
                                 to_count=object(),  # type: ignore[arg-type]
                                 reason="r", outcome="ok")
    with pytest.raises(sqlite3.ProgrammingError):
        log.append_many([unbindable], close_intents=[intent])
    assert [i.id for i in log.open_intents()] == [intent] and log.count() == 0


def intent(kind: str, frm: int, to: int) -> Intent:
    return Intent(id=7, ts=T0, kind=kind, from_count=frm, to_count=to, reason="because")


@pytest.mark.parametrize(("it", "active", "outcome"), [
    pytest.param(intent("scale_up", 2, 4), 4, "ok", id="up, done"),
    pytest.param(intent("scale_up", 2, 4), 3, "partial", id="up, one of two"),
    pytest.param(intent("scale_up", 2, 4), 2, "failed", id="up, nothing"),
    pytest.param(intent("scale_down", 4, 2), 2, "ok", id="down, done"),
    pytest.param(intent("scale_down", 4, 2), 3, "partial", id="down, one of two"),
    pytest.param(intent("scale_down", 4, 2), 4, "failed", id="down, nothing"),
])
def test_a_recovered_intent_is_recorded_as_what_really_happened(
        it: Intent, active: int, outcome: str) -> None:
    action = recovered_action(it, active)
    assert (action.kind, action.from_count, action.to_count, action.outcome) == (
        it.kind, it.from_count, active, outcome)
    assert action.intent_id == 7 and "written ahead" in action.reason


def test_a_recovered_scaling_starts_its_cooldown_at_the_intent() -> None:
    history = ScalingHistory(last_scale_up_at=T0 - timedelta(hours=1))
    up = intent("scale_up", 2, 4)
    remembered = remember_recovered(history, [(up, recovered_action(up, 4))])
    assert remembered.last_scale_up_at == T0
    assert [(e.from_count, e.to_count) for e in remembered.events] == [(2, 4)]
    nothing = intent("scale_down", 4, 2)
    assert remember_recovered(history, [(nothing, recovered_action(nothing, 4))]) == history


@pytest.mark.parametrize(("repair", "change"), [
    pytest.param(Repair("replace", "a:1", "dead", "i", "exited"), 1, id="replace: +1"),
    pytest.param(Repair("finish_drain", "a:1", "drain", "i", "ready"), -1,
                 id="finish a drain of a ready instance: -1"),
    pytest.param(Repair("finish_drain", "a:1", "drain", "i", "draining"), 0,
                 id="finish a drain of a draining instance: 0"),
    pytest.param(Repair("register", "a:1", "reg", "i", "ready"), 0, id="register: 0"),
    pytest.param(Repair("orphan_target", "a:1", "orphan"), 0, id="orphan target: 0"),
])
def test_repair_rows_carry_the_counts_they_change(repair: Repair, change: int) -> None:
    assert size_change(repair) == change

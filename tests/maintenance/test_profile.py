"""Maintenance precomputes the seasonal profile into the tick memory (tasks/maintenance/profile)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from autoscaler.model import Recommendation, ScalingHistory
from tasks.maintenance.profile import rate_samples, store_profile
from tasks.tick.lock import tick_lock
from tasks.tick.memory import read_memory, save_memory
from tasks.tick.scaling_log import ScalingLogEntry
from tests.maintenance.histories import DAY0, ev, write_history

pytestmark = pytest.mark.usefixtures("prefect_harness")


def days_of_ticks(days: int) -> list[ScalingLogEntry]:
    """A decision row every 5 minutes: 100/s, except 400/s from 18:00 to 19:00 each day;
    plus rows the profile must ignore (an action row, an error without a rate)."""
    rows = []
    for t in range(0, days * 86_400, 300):
        load = 400.0 if 18 * 3600 <= t % 86_400 < 19 * 3600 else 100.0
        rows.append(ev(t, "decision", 3, 3, "noop", load))
    rows += [ev(3600, "scale_up", 3, 5, "ok", 9999.0), ev(7200, "error", 3, 3, "failed", None)]
    return rows


def memory_with_window(block: str) -> None:
    history = ScalingHistory(recommendations=(Recommendation(at=DAY0, desired=3),))
    save_memory.fn(block, history, generation=4, pool_size=3)


def test_rate_samples_are_the_decision_rows_in_the_window(tmp_path: Path) -> None:
    log = tmp_path / "h.sqlite"
    write_history(log, days_of_ticks(2))
    samples = rate_samples(log, DAY0, DAY0 + timedelta(days=1))
    assert len(samples) == 289 and samples[0] == (DAY0, 100.0)
    assert all(rate in (100.0, 400.0) for _, rate in samples)  # not the action's 9999
    assert [t for t, _ in samples] == sorted(t for t, _ in samples)


def test_the_profile_lands_in_the_tick_memory_and_the_tick_keeps_the_rest(
    tmp_path: Path,
) -> None:
    log, block, lock = tmp_path / "h.sqlite", f"p-{uuid.uuid4().hex[:8]}", tmp_path / "t.lock"
    write_history(log, days_of_ticks(3))
    until = DAY0 + timedelta(days=3)
    result = store_profile(log, DAY0, until, block, lock)
    assert not result.stored and "not stored" in result.note  # no tick memory yet: safe
    memory_with_window(block)
    result = store_profile(log, DAY0, until, block, lock)
    assert result.stored and "3 days" in result.note
    memory = read_memory(block)
    profile = memory.history.profile
    assert profile is not None and profile.days == 3
    # The daily rise is there (what the tick forecasts a start-up ahead of 18:00)...
    assert profile.expected(until + timedelta(hours=18, minutes=5)) == 400.0
    assert profile.expected(until + timedelta(hours=12)) == 100.0
    # ...and the tick's own memory is untouched.
    assert memory.history.recommendations == (Recommendation(at=DAY0, desired=3),)
    assert (memory.generation, memory.last_pool_size) == (6, 3)  # saved as 5, then +1
    again = store_profile(log, DAY0, until, block, lock)
    assert not again.stored and "unchanged" in again.note  # idempotent


def test_one_day_is_no_profile_and_clears_a_stale_one(tmp_path: Path) -> None:
    log, block, lock = tmp_path / "h.sqlite", f"p-{uuid.uuid4().hex[:8]}", tmp_path / "t.lock"
    write_history(log, days_of_ticks(3))
    memory_with_window(block)
    store_profile(log, DAY0, DAY0 + timedelta(days=3), block, lock)
    later = DAY0 + timedelta(days=2, hours=1)
    result = store_profile(log, later, later + timedelta(hours=20), block, lock)
    assert result.profile is None and result.stored
    assert read_memory(block).history.profile is None


def test_a_running_tick_holds_the_profile_back_until_it_is_done(tmp_path: Path) -> None:
    log, block, lock = tmp_path / "h.sqlite", f"p-{uuid.uuid4().hex[:8]}", tmp_path / "t.lock"
    write_history(log, days_of_ticks(2))
    memory_with_window(block)
    holding, release = threading.Event(), threading.Event()

    def tick() -> None:
        with tick_lock(lock) as held:
            assert held
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=tick)
    thread.start()
    assert holding.wait(30)
    blocked = store_profile(log, DAY0, DAY0 + timedelta(days=2), block, lock, lock_timeout=0)
    assert not blocked.stored and "held the lock" in blocked.note
    release.set()
    thread.join(30)
    done = store_profile(log, DAY0, DAY0 + timedelta(days=2), block, lock, lock_timeout=0)
    assert done.stored

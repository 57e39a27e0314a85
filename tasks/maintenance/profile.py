"""Maintenance precomputes the seasonal load profile the tick forecasts with.

The tick's decision rows in the scaling log carry the pool's request rate; the profile
(``autoscaler.forecast.build_profile``: the load by 15-minute slot of the day, and of the week
once two weeks exist, each slot the low quantile across days) is built from them and stored
in the tick memory block, where every tick reads it for free. Written under the tick lock so
a tick running at the same time cannot overwrite it with the memory it read before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from autoscaler.forecast import LoadProfile, build_profile
from tasks.tick.lock import tick_lock
from tasks.tick.memory import read_memory, save_memory
from tasks.tick.scaling_log import ScalingLog

MAX_SAMPLES = 200_000
"""Decision rows read at most (a week of 30 s ticks is 20,160)."""


@dataclass(frozen=True)
class ProfileResult:
    profile: LoadProfile | None
    samples: int
    stored: bool
    note: str

    def describe(self) -> str:
        return self.note


def rate_samples(
    scaling_log: Path, since: datetime, until: datetime
) -> list[tuple[datetime, float]]:
    """(time, pool request rate) of every tick's decision row in ``[since, until]``."""
    rows = ScalingLog(scaling_log).recent(MAX_SAMPLES, since=since)
    samples = []
    for row in rows:
        rps = row.metrics.get("rps")
        if row.kind == "decision" and row.ts <= until and isinstance(rps, int | float):
            samples.append((row.ts, float(rps)))
    samples.reverse()  # oldest first
    return samples


def store_profile(
    scaling_log: Path,
    since: datetime,
    until: datetime,
    memory_block: str,
    lock_file: Path,
    *,
    lock_timeout: float = 30.0,
) -> ProfileResult:
    """Build the profile from the scaling log and store it in the tick memory (idempotent: the
    same log gives the same profile). Without enough history the stored profile is cleared
    (no seasonal forecast rather than a stale one)."""
    samples = rate_samples(scaling_log, since, until)
    profile = build_profile(samples, at=until)
    what = (
        f"profile of {profile.days} days from {len(samples):,} ticks"
        if profile is not None
        else f"no profile: {len(samples):,} ticks on fewer than 2 days"
    )
    deadline = time.monotonic() + lock_timeout
    while True:
        with tick_lock(lock_file) as held:
            if held:
                memory = read_memory(memory_block)
                if memory.is_default:
                    # Writing now would turn the tick's safe default into a real memory.
                    return ProfileResult(profile, len(samples), False,
                                         f"{what}; not stored ({memory.default_reason})")
                if memory.history.profile == profile:
                    return ProfileResult(profile, len(samples), False, f"{what}; unchanged")
                save_memory.fn(memory_block, memory.history.with_profile(profile),
                               generation=memory.generation, pool_size=memory.last_pool_size,
                               document_id=memory.document_id)
                return ProfileResult(profile, len(samples), True, f"{what}; stored")
        if time.monotonic() >= deadline:
            return ProfileResult(profile, len(samples), False,
                                 f"{what}; not stored: a tick held the lock for {lock_timeout:g}s")
        time.sleep(0.2)  # a tick takes about a second; poll the lock until the deadline

"""Scaling histories whose analysis can be computed by hand (the numbers are in the tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.tick.scaling_log import ScalingLog, ScalingLogEntry

DAY0 = datetime(2026, 1, 5, tzinfo=UTC)


def ev(offset_s: float, kind: str, frm: int, to: int, outcome: str,
       load: float | None, base: datetime = DAY0) -> ScalingLogEntry:
    metrics = {} if load is None else {"rps": load, "cpu": 40.0}
    return ScalingLogEntry(ts=base + timedelta(seconds=offset_s), kind=kind, from_count=frm,
                        to_count=to, reason=f"{kind} test", outcome=outcome, metrics=metrics)


# Two hours of ticks on DAY0. The step function of the instance count is:
#   0-660 s at 3, 660-1800 at 4, 1800-2100 at 3, 2100-3000 at 4 (the 2400 scale-down failed),
#   3000-7200 at 6  -> 960 s at 3, 2040 s at 4, 4200 s at 6; 36,240 instance-seconds.
HAND_EVENTS = [
    ev(0, "decision", 3, 3, "noop", 100),
    ev(600, "decision", 3, 4, "ok", 150),      # load +50%: an increase
    ev(660, "scale_up", 3, 4, "ok", 150),      # answers it after 60 s
    ev(1200, "decision", 4, 4, "noop", 160),   # +6.7%: not an increase
    ev(1800, "scale_down", 4, 3, "ok", 100),   # 1140 s after the scale-up: no flap
    ev(2100, "scale_up", 3, 4, "ok", 130),     # +30% and a scale-up at once (0 s); a flap (300 s)
    ev(2400, "scale_down", 4, 3, "failed", 90),  # failed: not applied, not a flap
    ev(3000, "manual", 4, 6, "ok", 90),        # up after up: no flap
    ev(3600, "error", 6, 6, "failed", None),   # no load in the snapshot
    ev(5400, "decision", 6, 6, "noop", 300),   # +233%: never answered
]
HAND_UNTIL = DAY0 + timedelta(seconds=7200)


def write_history(path: Path, events: list[ScalingLogEntry]) -> ScalingLog:
    store = ScalingLog(path)
    store.append_many(events)
    return store

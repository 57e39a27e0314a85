"""The manual-change rule: the pool size moved between two ticks without the autoscaler.

An operator scaled by hand (``kongstack scale``, the engine's own tools). The autoscaler keeps
the new size: the change is remembered as a recommendation of that size, so the scale-down
stabilisation window forbids removing what the operator added for one window (scale-up stays
possible). A difference that the tick's own repairs explain (finishing an interrupted action)
is not a manual change. Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from autoscaler.model import Recommendation, ScalingHistory


class ManualChange(BaseModel):
    """The pool went from ``from_count`` to ``to_count`` outside the autoscaler."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_count: int
    to_count: int

    @property
    def reason(self) -> str:
        return (f"pool changed outside the autoscaler ({self.from_count} -> {self.to_count}); "
                "kept: no scale-in below it for one stabilisation window")


def detect_manual_change(
    last_pool_size: int | None, active: int, *, repaired: bool
) -> ManualChange | None:
    """The manual change, if any: the size the last tick left (None: unknown, e.g. a fresh
    memory) differs from the ``active`` count now, and no repair of this tick explains it."""
    if last_pool_size is None or last_pool_size == active or repaired:
        return None
    return ManualChange(from_count=last_pool_size, to_count=active)


def respect_manual_change(
    history: ScalingHistory, change: ManualChange, now: datetime
) -> ScalingHistory:
    """The history with the operator's size remembered as a recommendation made ``now``."""
    recommendation = Recommendation(at=now, desired=change.to_count)
    return history.model_copy(
        update={"recommendations": history.recommendations + (recommendation,)})

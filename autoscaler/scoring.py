"""Scores of replays against the two oracles, per trace and summed (pure).

* ``x oracle``: instance-seconds over the foresight oracle's (each second exactly the
  instances it needs, ready in advance): the floor no real autoscaler reaches.
* ``x oracle/tick``: over the oracle that may change the pool only once per tick (30 s),
  each tick the fewest instances that meet the SLO in every second of it: the limit for a
  policy that decides every 30 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autoscaler.replay import ReplayResult

SUMMED = ("slo_violation_seconds", "offered_requests", "dropped_requests", "instance_seconds",
          "scale_actions", "reversals")


def score(
    results: Sequence[ReplayResult], best: ReplayResult, per_tick: ReplayResult
) -> list[dict[str, Any]]:
    """Each result's summary with its cost ratios to the two oracles (the oracles included,
    last)."""
    rows = []
    for result in (*results, per_tick, best):
        row = result.summary()
        row["x_oracle"] = _ratio(result.instance_seconds, best.instance_seconds)
        row["x_oracle_tick"] = _ratio(result.instance_seconds, per_tick.instance_seconds)
        rows.append(row)
    return rows


def total(per_trace: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Sums per configuration over traces (rows as from :func:`score`, same names in the
    same order), with the ratios recomputed on the sums."""
    if not per_trace:
        return []
    names = [str(row["name"]) for row in per_trace[0]]
    sums: dict[str, dict[str, Any]] = {n: {"name": n, **dict.fromkeys(SUMMED, 0.0)} for n in names}
    for rows in per_trace:
        for row in rows:
            for key in SUMMED:
                sums[row["name"]][key] += row[key]
    best = _oracle_cost(sums, "oracle")
    tick = next((s["instance_seconds"] for n, s in sums.items() if n.startswith("oracle/")), None)
    out = []
    for row in sums.values():
        offered = row["offered_requests"]
        row["dropped_percent"] = 100.0 * row["dropped_requests"] / offered if offered else 0.0
        row["x_oracle"] = _ratio(row["instance_seconds"], best)
        row["x_oracle_tick"] = _ratio(row["instance_seconds"], tick)
        out.append(row)
    return out


def _oracle_cost(sums: dict[str, dict[str, Any]], name: str) -> float | None:
    row = sums.get(name)
    return None if row is None else float(row["instance_seconds"])


def _ratio(value: float, reference: float | None) -> float | None:
    return None if not reference else value / reference

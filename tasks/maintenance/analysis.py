"""Scaling-log analysis for the maintenance flow (pandas, vectorised).

Input: the ``scaling_events`` table of ``tasks.tick.scaling_log`` (read straight from SQLite:
only the columns used, the load pulled out of the JSON snapshot by SQLite's ``json_extract``
so Python never parses a million JSON strings). Output: an :class:`Analysis` of plain frames
and numbers, rendered by ``tasks.maintenance.report`` into artifacts, a PNG chart and a CSV.

Definitions (each is what a test computes by hand):

- *instance count after an event*: ``to_count`` for an applied action (scale_up, scale_down,
  manual, repair with outcome ok/partial), else ``from_count`` (what the tick observed). The
  count holds until the next event; the last one holds until ``until``.
- *time at each count* / *instance-hours*: the integral of that step function.
- *load sample*: the snapshot's load, once per tick (action rows written with the same
  timestamp as their decision row repeat it and are not counted again).
- *load increase*: a sample whose load is >= ``load_increase_ratio`` x the previous sample's.
  Its *reaction time* is the delay to the next applied scale-up within
  ``reaction_window_minutes``; several increases answered by the same scale-up count once
  (the earliest). Increases with no scale-up in the window are *unanswered*.
- *flap*: an applied action whose direction (up/down) is the opposite of the previous applied
  action's, less than ``flap_window_minutes`` after it.
- *suggested min instances*: ceil(p95 of the hourly mean load / target load per instance).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kongstack.core.extras import requires_extra

with requires_extra("analysis", "the scaling-history analysis"):
    import numpy as np
    import pandas as pd

ACTION_KINDS = ("scale_up", "scale_down", "manual", "repair")
APPLIED_OUTCOMES = ("ok", "partial")
LOAD_KEYS = ("request_rate", "rps")
"""Keys of the metrics snapshot read as the load (requests/s), first present wins."""

_COLUMNS = ["ts", "kind", "from_count", "to_count", "outcome", "load"]


class AnalysisConfig(BaseModel):
    """Knobs of the analysis; unknown keys are rejected, errors name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flap_window_minutes: float = Field(default=10.0, gt=0)
    load_increase_ratio: float = Field(default=1.2, gt=1.0)
    reaction_window_minutes: float = Field(default=15.0, gt=0)
    target_load_per_instance: float | None = Field(default=None, gt=0)
    min_instances: int | None = Field(default=None, ge=0)
    max_instances: int | None = Field(default=None, ge=1)
    scale_down_stabilization_s: float | None = Field(default=None, ge=0)
    cost_per_instance_hour: float | None = Field(default=None, ge=0)


@dataclass(frozen=True)
class Suggestion:
    setting: str
    current: float | int | None
    suggested: float | int
    reason: str


@dataclass
class Analysis:
    start: datetime | None
    end: datetime | None
    events: int
    actions_per_day: pd.DataFrame
    time_at_count: pd.DataFrame
    daily: pd.DataFrame
    instance_hours: float
    reactions: pd.DataFrame
    unanswered_increases: int
    flaps: pd.DataFrame
    hourly_profile: pd.DataFrame
    p95_hourly_load: float | None
    suggestions: list[Suggestion] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def reaction_summary(self) -> dict[str, float | int | None]:
        secs = self.reactions["reaction_s"] if len(self.reactions) else pd.Series(dtype=float)
        return {
            "answered": len(secs),
            "unanswered": self.unanswered_increases,
            "median_s": float(secs.median()) if len(secs) else None,
            "p95_s": float(secs.quantile(0.95)) if len(secs) else None,
            "max_s": float(secs.max()) if len(secs) else None,
        }


def load_scaling_log_frame(
    path: Path | str, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The events in ``[since, until)`` ordered by time, as a compact frame (empty when
    there is no history file yet)."""
    if not Path(path).exists():
        return empty_history_frame()
    load_expr = "COALESCE(" + ", ".join(f"json_extract(metrics, '$.{k}')" for k in LOAD_KEYS)
    query = f"SELECT ts, kind, from_count, to_count, outcome, {load_expr}) FROM scaling_events"
    where, args = [], []
    if since is not None:
        where.append("ts >= ?")
        args.append(since.timestamp())
    if until is not None:
        where.append("ts < ?")
        args.append(until.timestamp())
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY ts, id"
    # Read-only URI: analysis never takes the writer's lock.
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=10.0)
    try:
        rows = conn.execute(query, args).fetchall()
    finally:
        conn.close()
    frame = pd.DataFrame.from_records(rows, columns=_COLUMNS, coerce_float=True)
    return _typed(frame)


def empty_history_frame() -> pd.DataFrame:
    return _typed(pd.DataFrame(columns=_COLUMNS))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame["ts"] = frame["ts"].astype("float64")
    frame["kind"] = frame["kind"].astype("category")
    frame["outcome"] = frame["outcome"].astype("category")
    frame["from_count"] = frame["from_count"].astype("int64")
    frame["to_count"] = frame["to_count"].astype("int64")
    frame["load"] = pd.to_numeric(frame["load"], errors="coerce").astype("float64")
    return frame


def analyse(
    frame: pd.DataFrame, config: AnalysisConfig | None = None, until: datetime | None = None
) -> Analysis:
    """Every statistic of the module docstring, from a frame of :func:`load_scaling_log_frame`."""
    config = config or AnalysisConfig()
    if until is not None:
        frame = frame[frame["ts"] <= until.timestamp()]
    ts = frame["ts"].to_numpy(dtype="float64")
    if len(ts) == 0:
        return _empty()
    end_ts = until.timestamp() if until is not None else float(ts[-1])
    kind = frame["kind"].astype(str).to_numpy()
    from_c = frame["from_count"].to_numpy(dtype="int64")
    to_c = frame["to_count"].to_numpy(dtype="int64")
    applied = np.isin(kind, ACTION_KINDS) & np.isin(
        frame["outcome"].astype(str).to_numpy(), APPLIED_OUTCOMES
    )
    count = np.where(applied, to_c, from_c)
    dt = np.diff(ts, append=end_ts).clip(min=0.0)
    # A tick's action rows repeat its decision row's snapshot: one load sample per tick.
    load = frame["load"].to_numpy(dtype="float64").copy()
    load[1:][ts[1:] == ts[:-1]] = np.nan
    frame = frame.assign(load=load)

    time_at = np.bincount(count.clip(min=0), weights=dt)
    present = np.flatnonzero(time_at > 0)
    total_s = float(dt.sum())
    time_at_count = pd.DataFrame(
        {
            "instances": present,
            "seconds": time_at[present],
            "hours": time_at[present] / 3600.0,
            "share": time_at[present] / total_s if total_s > 0 else 0.0,
        }
    )
    instance_hours = float((count * dt).sum() / 3600.0)

    day = (ts // 86400).astype("int64")
    direction = np.sign(to_c - from_c) * applied
    actions = _actions_per_day(day, kind, applied, frame["outcome"].astype(str).to_numpy())
    flaps = _flaps(ts, direction, config.flap_window_minutes * 60.0, from_c, to_c)
    reactions, unanswered = _reactions(frame, ts, direction, config)
    hourly, p95_hourly = _hourly(frame, ts, count)
    daily = _daily(ts, count, dt, end_ts, actions, flaps, frame)

    result = Analysis(
        start=datetime.fromtimestamp(ts[0], tz=UTC),
        end=datetime.fromtimestamp(end_ts, tz=UTC),
        events=len(ts),
        actions_per_day=actions,
        time_at_count=time_at_count,
        daily=daily,
        instance_hours=instance_hours,
        reactions=reactions,
        unanswered_increases=unanswered,
        flaps=flaps,
        hourly_profile=hourly,
        p95_hourly_load=p95_hourly,
        frame=pd.DataFrame({"ts": ts, "count": count, "load": frame["load"].to_numpy()}),
    )
    result.suggestions = suggest(result, config)
    return result


def _empty() -> Analysis:
    empty = pd.DataFrame()
    return Analysis(
        start=None, end=None, events=0, actions_per_day=empty, time_at_count=empty,
        daily=empty, instance_hours=0.0, reactions=pd.DataFrame(columns=["increase_ts",
        "scale_up_ts", "reaction_s"]), unanswered_increases=0,
        flaps=pd.DataFrame(columns=["ts", "gap_s", "from_count", "to_count"]),
        hourly_profile=empty, p95_hourly_load=None,
    )


def _actions_per_day(
    day: np.ndarray, kind: np.ndarray, applied: np.ndarray, outcome: np.ndarray
) -> pd.DataFrame:
    is_action = np.isin(kind, ACTION_KINDS)
    frame = pd.DataFrame({"day": day[applied], "kind": kind[applied]})
    table = pd.crosstab(frame["day"], frame["kind"]) if len(frame) else pd.DataFrame()
    table = table.reindex(columns=list(ACTION_KINDS), fill_value=0)
    failed = pd.Series(day[is_action & (outcome == "failed")]).value_counts()
    errors = pd.Series(day[kind == "error"]).value_counts()
    days = np.unique(day)
    table = table.reindex(days, fill_value=0)
    table["failed"] = failed.reindex(days, fill_value=0).to_numpy()
    table["errors"] = errors.reindex(days, fill_value=0).to_numpy()
    table["total"] = table[list(ACTION_KINDS)].sum(axis=1)
    table.index = pd.to_datetime(days * 86400, unit="s", utc=True).date
    table.index.name = "date"
    table.columns.name = None
    return table.astype("int64")


def _flaps(
    ts: np.ndarray, direction: np.ndarray, window_s: float, from_c: np.ndarray, to_c: np.ndarray
) -> pd.DataFrame:
    idx = np.flatnonzero(direction != 0)
    d, t = direction[idx], ts[idx]
    gaps = np.diff(t)
    mask = (d[1:] != d[:-1]) & (gaps < window_s)
    hit = idx[1:][mask]
    return pd.DataFrame(
        {"ts": ts[hit], "gap_s": gaps[mask], "from_count": from_c[hit], "to_count": to_c[hit]}
    )


def _reactions(
    frame: pd.DataFrame, ts: np.ndarray, direction: np.ndarray, config: AnalysisConfig
) -> tuple[pd.DataFrame, int]:
    load = frame["load"].to_numpy(dtype="float64")
    has = ~np.isnan(load)
    lts, lv = ts[has], load[has]
    prev = np.concatenate(([np.nan], lv[:-1]))
    inc = (prev > 0) & (lv >= prev * config.load_increase_ratio)
    inc_ts = lts[inc]
    up_ts = ts[direction > 0]
    pos = np.searchsorted(up_ts, inc_ts, side="left")
    found = pos < len(up_ts)
    delay = np.full(len(inc_ts), np.inf)
    delay[found] = up_ts[pos[found]] - inc_ts[found]
    answered = delay <= config.reaction_window_minutes * 60.0
    unanswered = int((~answered).sum())
    pairs = pd.DataFrame({"increase_ts": inc_ts[answered], "pos": pos[answered]})
    first = pairs.groupby("pos", sort=True)["increase_ts"].min()
    up = up_ts[first.index.to_numpy()]
    reactions = pd.DataFrame(
        {"increase_ts": first.to_numpy(), "scale_up_ts": up, "reaction_s": up - first.to_numpy()}
    )
    return reactions, unanswered


def _hourly(
    frame: pd.DataFrame, ts: np.ndarray, count: np.ndarray
) -> tuple[pd.DataFrame, float | None]:
    load = frame["load"].to_numpy(dtype="float64")
    samples = pd.DataFrame({"hour": ((ts % 86400) // 3600).astype("int64"), "load": load,
                            "instances": count, "abs_hour": (ts // 3600).astype("int64")})
    by_hour = samples.groupby("hour")
    profile = pd.DataFrame(
        {
            "mean_load": by_hour["load"].mean(),
            "p95_load": by_hour["load"].quantile(0.95),
            "max_load": by_hour["load"].max(),
            "mean_instances": by_hour["instances"].mean(),
        }
    ).reindex(range(24))
    profile.index.name = "hour"
    hourly_means = samples.groupby("abs_hour")["load"].mean().dropna()
    p95 = float(hourly_means.quantile(0.95)) if len(hourly_means) else None
    return profile, p95


def _daily(
    ts: np.ndarray, count: np.ndarray, dt: np.ndarray, end_ts: float,
    actions: pd.DataFrame, flaps: pd.DataFrame, frame: pd.DataFrame,
) -> pd.DataFrame:
    """Per UTC day: instance-hours (intervals split exactly at midnight), actions, flaps, load."""
    cum = np.concatenate(([0.0], np.cumsum(count * dt)))
    first_day, last_day = int(ts[0] // 86400), int(end_ts // 86400)
    bounds = np.arange(first_day, last_day + 2, dtype="float64") * 86400.0
    bounds = np.clip(bounds, ts[0], end_ts)
    i = np.searchsorted(ts, bounds, side="right") - 1
    area = cum[i] + count[i] * (bounds - ts[i])
    days = pd.to_datetime(np.arange(first_day, last_day + 1) * 86400, unit="s", utc=True).date
    daily = pd.DataFrame({"instance_hours": np.diff(area) / 3600.0}, index=days)
    daily.index.name = "date"
    daily["actions"] = actions["total"].reindex(daily.index, fill_value=0)
    flap_days = pd.to_datetime(flaps["ts"].to_numpy() // 86400 * 86400, unit="s", utc=True).date
    daily["flaps"] = pd.Series(flap_days).value_counts().reindex(daily.index, fill_value=0)
    load_day = pd.DataFrame({"day": (ts // 86400).astype("int64"),
                             "load": frame["load"].to_numpy()})
    grouped = load_day.groupby("day")["load"]
    mean, peak = grouped.mean(), grouped.max()
    day_keys = np.arange(first_day, last_day + 1)
    daily["mean_load"] = mean.reindex(day_keys).to_numpy()
    daily["peak_load"] = peak.reindex(day_keys).to_numpy()
    return daily


def suggest(analysis: Analysis, config: AnalysisConfig) -> list[Suggestion]:
    """Threshold suggestions, each with the numbers that justify it."""
    out: list[Suggestion] = []
    target = config.target_load_per_instance
    if target is not None and analysis.p95_hourly_load is not None:
        minimum = max(1, math.ceil(analysis.p95_hourly_load / target))
        if minimum != config.min_instances:
            out.append(Suggestion(
                "min_instances", config.min_instances, minimum,
                f"p95 of hourly mean load is {analysis.p95_hourly_load:.1f} req/s; at "
                f"{target:g} req/s per instance that needs {minimum} instance(s)",
            ))
        peak = analysis.hourly_profile["max_load"].max()
        if pd.notna(peak) and config.max_instances is not None:
            needed = math.ceil(float(peak) / target)
            if needed > config.max_instances:
                out.append(Suggestion(
                    "max_instances", config.max_instances, needed,
                    f"peak load {float(peak):.1f} req/s needs {needed} instances at "
                    f"{target:g} req/s each",
                ))
    days = max(1, len(analysis.daily))
    if len(analysis.flaps) / days > 2:
        gap = float(analysis.flaps["gap_s"].median())
        # Hold scale-down recommendations at least as long as the flaps' window.
        hold = math.ceil(max(2 * gap, config.flap_window_minutes * 60))
        current = config.scale_down_stabilization_s
        if current is None or hold > current:
            out.append(Suggestion(
                "scale_down_stabilization_seconds", current, hold,
                f"{len(analysis.flaps)} direction changes within "
                f"{config.flap_window_minutes:g} min over {days} day(s); median gap {gap:.0f}s",
            ))
    if config.max_instances is not None and len(analysis.time_at_count):
        at_max = analysis.time_at_count.loc[
            analysis.time_at_count["instances"] >= config.max_instances, "share"
        ].sum()
        if at_max > 0.2:
            out.append(Suggestion(
                "max_instances", config.max_instances, config.max_instances + 1,
                f"the pool sat at max for {at_max:.0%} of the time",
            ))
    return out

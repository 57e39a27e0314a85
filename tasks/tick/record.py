"""Record: what a tick decided and did, in every place someone will look for it.

* the scaling log (``tasks.tick.scaling_log.ScalingLog``, SQLite): one ``decision`` row per tick
  (the load samples the maintenance analysis reads) plus one row per action;
* a Prefect markdown artifact per action (not for a no-op tick: 2,880 a day would bury them);
* a Prefect event per action (``kongstack.autoscale.scaled-up`` ...) for automations;
* the node_exporter textfile ``autoscaler.prom`` (written atomically every tick).

This module holds the records and the local writers, without Prefect (``kongstack status``
reads the config through it); the ``record`` task that also publishes the artifact and the
event is ``tasks.tick.record_task.record_tick``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from kongstack.core.settings import LocalSettings
from tasks.tick.scaling_log import ScalingLog, ScalingLogEntry, default_scaling_log_path

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

EVENT_PREFIX = "kongstack.autoscale"
EVENT_FOR_KIND = {
    "scale_up": f"{EVENT_PREFIX}.scaled-up",
    "scale_down": f"{EVENT_PREFIX}.scaled-down",
    "repair": f"{EVENT_PREFIX}.repaired",
    "error": f"{EVENT_PREFIX}.tick-failed",
    "add_host": f"{EVENT_PREFIX}.host-added",
    "remove_host": f"{EVENT_PREFIX}.host-removed",
}


class RecordConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str = "kongstack"
    scaling_log_path: Path = Field(default_factory=lambda: default_scaling_log_path())
    textfile_path: Path = Field(
        default_factory=lambda: LocalSettings().home / "metrics" / "autoscaler.prom"
    )
    artifacts: bool = True
    events: bool = True


@dataclass(frozen=True)
class ActionRecord:
    """One thing a tick did (or, for a dry run, would have done)."""

    kind: str  # scale_up | scale_down | repair | manual | error | add_host | remove_host
    from_count: int
    to_count: int
    reason: str
    outcome: str  # ok | failed | partial | dry_run
    duration_s: float = 0.0
    details: list[str] = field(default_factory=list)
    intent_id: int | None = None
    """The write-ahead intent this action carries out; recording the action closes it."""


@dataclass(frozen=True)
class TickRecord:
    """Everything recorded for one tick."""

    started_at: datetime
    current: int
    desired: int
    after: int
    """Active instances the tick left behind."""
    min_instances: int
    max_instances: int
    reason: str
    metrics: dict[str, Any]
    driving_metric: str | None = None
    actions: list[ActionRecord] = field(default_factory=list)
    success: bool = True
    duration_s: float = 0.0
    dry_run: bool = False
    capacity: str | None = None
    """What the autoscaler has learned of one instance's capacity (None: it does not learn)."""


def history_events(tick: TickRecord) -> list[ScalingLogEntry]:
    if any(a.kind == "error" for a in tick.actions):  # no decision was reached
        return [_action_event(tick, a) for a in tick.actions]
    decision_outcome = "dry_run" if tick.dry_run and tick.desired != tick.current else "noop"
    if tick.desired != tick.current and not tick.dry_run:
        decision_outcome = "ok" if tick.success else "failed"
    events = [
        ScalingLogEntry(
            ts=tick.started_at,
            kind="decision",
            from_count=tick.current,
            to_count=tick.desired,
            reason=tick.reason,
            outcome=decision_outcome,
            metric=tick.driving_metric,
            metrics=tick.metrics,
            duration_s=tick.duration_s,
        )
    ]
    events.extend(_action_event(tick, a) for a in tick.actions)
    return events


def _action_event(tick: TickRecord, action: ActionRecord) -> ScalingLogEntry:
    return ScalingLogEntry(
        ts=tick.started_at,
        kind=action.kind,
        from_count=action.from_count,
        to_count=action.to_count,
        reason=action.reason,
        outcome=action.outcome,
        metric=tick.driving_metric,
        metrics=tick.metrics,
        duration_s=action.duration_s,
    )


def artifact_markdown(tick: TickRecord, action: ActionRecord) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(tick.metrics.items()))
    details = "\n".join(f"- {d}" for d in action.details) or "- (none)"
    return (
        f"## {action.kind}: {action.from_count} → {action.to_count} ({action.outcome})\n\n"
        f"**Reason:** {action.reason}\n\n"
        f"**Decision:** {tick.reason}\n\n"
        + (f"**Capacity:** {tick.capacity}\n\n" if tick.capacity else "")
        + f"Duration {action.duration_s:.2f} s, tick started {tick.started_at.isoformat()}"
        f"{' (dry run)' if tick.dry_run else ''}.\n\n"
        f"### Steps\n{details}\n\n"
        f"### Metrics\n| metric | value |\n|---|---|\n{rows}\n"
    )


def write_textfile(path: Path, tick: TickRecord) -> None:
    """The node_exporter textfile, replaced atomically (prometheus_client's
    ``write_to_textfile``: node_exporter never sees half a file); the failure counter
    survives ticks."""
    # Imported here: readers of the records (``kongstack status``) never write the textfile.
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    failures = read_counter(path, "kongstack_autoscaler_tick_failures_total")
    if not tick.success:
        failures += 1
    now = tick.started_at.timestamp() + tick.duration_s
    gauges = [
        ("current_instances", "Active backend instances after the tick.", tick.after),
        ("desired_instances", "Instances the last decision asked for.", tick.desired),
        ("min_instances", "Policy minimum.", tick.min_instances),
        ("max_instances", "Policy maximum.", tick.max_instances),
        ("last_tick_timestamp_seconds", "When the last tick finished (unix s).", round(now, 3)),
        ("last_tick_success", "1 if the last tick completed without error.", int(tick.success)),
    ]
    families: list[Metric] = [GaugeMetricFamily(f"kongstack_autoscaler_{name}", help_text,
                                                value=value)
                              for name, help_text, value in gauges]
    families.append(CounterMetricFamily("kongstack_autoscaler_tick_failures",
                                        "Ticks that failed.", value=failures))
    registry = CollectorRegistry()
    registry.register(_snapshot(families))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)


def _snapshot(families: list[Metric]) -> Collector:
    """A collector of fixed metric families (one tick's values) for a one-off registry."""
    from prometheus_client.registry import Collector

    class Snapshot(Collector):
        def collect(self) -> Iterable[Metric]:
            return families

    return Snapshot()


def read_counter(path: Path, name: str) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    match = re.search(rf"^{re.escape(name)} ([0-9.eE+]+)", text, flags=re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def record_manual(config: RecordConfig, action: ActionRecord, *, at: datetime, reason: str,
                  source: str, duration_s: float) -> None:
    """A change made by hand (``kongstack scale``, a rolling restart): one scaling-log row of
    kind "manual" with its source. Not a tick: the textfile's tick gauges stay the tick's."""
    ScalingLog(config.scaling_log_path).append(ScalingLogEntry(
        ts=at, kind="manual", from_count=action.from_count, to_count=action.to_count,
        outcome=action.outcome, source=source, reason=f"{reason}: {action.reason}",
        duration_s=duration_s))

"""The ``record`` task: a tick's records written everywhere (tasks/tick/record.py), plus the
Prefect artifact and event of each action. Apart from the records so that readers of the
config and the history (``kongstack status``) never import Prefect."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tasks.tick.record import (
    EVENT_FOR_KIND,
    RecordConfig,
    TickRecord,
    artifact_markdown,
    history_events,
    write_textfile,
)
from tasks.tick.scaling_log import ScalingLog


@task(name="record", cache_policy=NO_CACHE, timeout_seconds=30)
def record_tick(config: RecordConfig, tick: TickRecord) -> list[str]:
    """Write the tick everywhere; returns the Prefect event names emitted.

    No task retries: the history append is not idempotent (a failure leaves the actions'
    intents open; the next tick records them, tasks/tick/intent.py). The history and the
    textfile are local and must succeed; an artifact or event the API refuses is logged,
    not fatal."""
    ScalingLog(config.scaling_log_path).append_many(
        history_events(tick),
        close_intents=[a.intent_id for a in tick.actions if a.intent_id is not None])
    write_textfile(config.textfile_path, tick)
    emitted: list[str] = []
    resource = {
        "prefect.resource.id": f"kongstack.autoscale.{config.stack}",
        "prefect.resource.name": config.stack,
    }
    for action in tick.actions:
        if config.artifacts:
            _best_effort("artifact", partial(
                create_markdown_artifact,
                markdown=artifact_markdown(tick, action),
                key=f"autoscale-{action.kind.replace('_', '-')}",
                description=f"{action.kind} {action.from_count}→{action.to_count}",
            ))
        event = EVENT_FOR_KIND.get(action.kind)
        if config.events and event is not None:
            payload = {
                "from": action.from_count,
                "to": action.to_count,
                "reason": action.reason,
                "outcome": action.outcome,
                "duration_s": round(action.duration_s, 3),
                "metrics": tick.metrics,
                "dry_run": tick.dry_run,
            }
            if _best_effort("event", partial(
                    emit_event, event=event, resource=resource, payload=payload)):
                emitted.append(event)
    return emitted


def _best_effort(what: str, call: Callable[[], object]) -> bool:
    try:
        call()
    except Exception as exc:
        logging.getLogger("kongstack.autoscale").warning("could not record %s: %s", what, exc)
        return False
    return True

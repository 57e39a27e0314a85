"""Flow ``maintenance`` (daily): prune → analyse → report → precompute the forecast profile.

Prune keeps the stack's stores bounded (scaling log, exported files, Prometheus series,
the autoscale deployment's flow runs); analyse reads the scaling log the autoscale flow
writes; report publishes the analysis as Prefect artifacts plus a PNG chart and a CSV.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from kongstack.core.settings import LocalSettings
from tasks.maintenance.steps import (
    POLICY_SHOWN,
    analyse_task,
    analysis_config,
    profile_task,
    prune_files_task,
    prune_flow_runs_task,
    prune_prometheus_task,
    prune_scaling_log_task,
    report_task,
)
from tasks.runlog import forward_project_logs
from tasks.tick.config import load_autoscale_config


def maintenance_run_name() -> str:
    return f"maintenance-{datetime.now(UTC):%Y-%m-%d}"


@flow(name="maintenance", description="Daily: prune old data, analyse the scaling log, "
      "publish the report.", flow_run_name=maintenance_run_name)
def maintenance(
    retention_days: float = 14.0,
    flow_run_retention_days: float = 7.0,
    analysis_days: float = 7.0,
    prune_prometheus: bool = True,
    prometheus_url: str | None = None,
    prune_prefect_runs: bool = True,
    autoscale_flow: str = "autoscale",
    autoscale_deployment: str = "autoscale",
    max_flow_runs_pruned: int | None = 50_000,
    flap_window_minutes: float = 10.0,
    cost_per_instance_hour: float | None = None,
    autoscale_config: str | None = None,
    scaling_log_path: str | None = None,
    home: str | None = None,
) -> dict[str, Any]:
    """Returns what was pruned and the analysis headline numbers (also in the artifacts)."""
    forward_project_logs()
    log = get_run_logger()
    settings = LocalSettings(home=Path(home)) if home else LocalSettings()
    history = Path(scaling_log_path) if scaling_log_path else settings.data_dir / "history.sqlite"
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    # The policy the autoscale flow runs with: the same loader, the same file.
    policy = load_autoscale_config(file=autoscale_config)
    config = analysis_config(policy.policy, flap_window_minutes, cost_per_instance_hour)

    pruned = [
        prune_scaling_log_task(history, cutoff),
        prune_files_task([settings.home / "exports", settings.home / "reports",
                          settings.home / "metrics"], cutoff),
        prune_prometheus_task(prometheus_url or f"http://{settings.host}:"
                              f"{settings.prometheus_port}", cutoff, prune_prometheus),
    ]
    if prune_prefect_runs:
        # Bounded per run: a day adds 2,880 runs; a large backlog drains over several days
        # instead of holding the SQLite server for an hour (benchmarks/prune.py).
        pruned.append(prune_flow_runs_task(now - timedelta(days=flow_run_retention_days),
                                           autoscale_flow, autoscale_deployment,
                                           max_flow_runs_pruned, settings.uses_postgresql))
    for result in pruned:
        log.info("prune: %s", result.describe())

    analysis = analyse_task(history, now - timedelta(days=analysis_days), now, config)
    report = report_task(analysis, settings.home / "reports", config, pruned)
    # The seasonal profile the tick forecasts with, precomputed here so the tick pays nothing.
    profile = profile_task(history, now - timedelta(days=analysis_days), now,
                           policy.config.memory_block, policy.config.lock_file())
    log.info("forecast: %s", profile.describe())
    log.info("analysis: %d events, %.1f instance-hours, %d flaps, %d suggestion(s)",
             analysis.events, analysis.instance_hours, len(analysis.flaps),
             len(analysis.suggestions))
    return {
        "pruned": {p.what: (p.skipped and f"skipped: {p.skipped}") or p.removed for p in pruned},
        "events": analysis.events,
        "instance_hours": round(analysis.instance_hours, 3),
        "flaps": len(analysis.flaps),
        "reactions": analysis.reaction_summary,
        "suggestions": [asdict(s) for s in analysis.suggestions],
        "files": report["files"],
        "profile": profile.describe(),
        "policy": {"file": str(policy.file) if policy.file else None,
                   **{k: getattr(policy.policy, k) for k in POLICY_SHOWN}},
    }

"""Flow ``maintenance`` (daily): prune → analyse → report.

Prune keeps the stack's stores bounded (scaling history, exported files, Prometheus series,
the autoscale deployment's flow runs); analyse reads the scaling history the autoscale flow
writes; report publishes the analysis as Prefect artifacts plus a PNG chart and a CSV.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.asyncutils import run_coro_as_sync

from autoscaler import AutoscalePolicy
from kongstack.core.settings import LocalSettings
from tasks.maintenance.analysis import Analysis, AnalysisConfig, analyse, load_history_frame
from tasks.maintenance.prune import (
    PruneResult,
    prune_files,
    prune_flow_runs,
    prune_history,
    prune_prometheus_series,
)
from tasks.maintenance.report import publish_report, render_report
from tasks.tick.config import load_autoscale_config

POLICY_SHOWN = ("min_instances", "max_instances", "target_rps_per_instance",
                "scale_down_stabilization_seconds")
"""The policy fields the analysis judges the history against (returned with the result)."""


@task(name="prune-history", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def prune_history_task(history_path: Path, older_than: datetime) -> PruneResult:
    return prune_history(history_path, older_than)


@task(name="prune-exported-files", cache_policy=NO_CACHE)
def prune_files_task(directories: list[Path], older_than: datetime) -> PruneResult:
    return prune_files(directories, older_than)


@task(name="prune-prometheus-series", cache_policy=NO_CACHE, timeout_seconds=120)
def prune_prometheus_task(url: str, older_than: datetime, enabled: bool) -> PruneResult:
    return prune_prometheus_series(url, older_than, enabled=enabled)


@task(name="prune-flow-runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
      timeout_seconds=3600)
def prune_flow_runs_task(older_than: datetime, flow_name: str, deployment_name: str,
                         max_runs: int | None) -> PruneResult:
    return run_coro_as_sync(
        prune_flow_runs(older_than, flow_name=flow_name, deployment_name=deployment_name or None,
                        max_runs=max_runs)
    )


@task(name="analyse-history", cache_policy=NO_CACHE)
def analyse_task(history_path: Path, since: datetime, until: datetime,
                 config: AnalysisConfig) -> Analysis:
    return analyse(load_history_frame(history_path, since=since, until=until), config, until)


@task(name="publish-report", cache_policy=NO_CACHE)
def report_task(analysis: Analysis, out_dir: Path, config: AnalysisConfig,
                pruned: list[PruneResult]) -> dict[str, Any]:
    report = render_report(analysis, out_dir, config)
    publish_report(report)
    create_table_artifact(
        [{"what": p.what, "removed": p.removed, "skipped": p.skipped or ""} for p in pruned],
        key="maintenance-pruned", description="What the maintenance run removed",
    )
    return {"markdown": report.markdown, "files": [str(p) for p in report.files]}


def _analysis_config(policy: AutoscalePolicy, flap_window_minutes: float,
                     cost_per_instance_hour: float | None) -> AnalysisConfig:
    return AnalysisConfig(
        flap_window_minutes=flap_window_minutes,
        target_load_per_instance=policy.target_rps_per_instance,
        min_instances=policy.min_instances,
        max_instances=policy.max_instances,
        scale_down_stabilization_s=policy.scale_down_stabilization_seconds,
        cost_per_instance_hour=cost_per_instance_hour,
    )


@flow(name="maintenance", description="Daily: prune old data, analyse the scaling history, "
      "publish the report.")
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
    history_path: str | None = None,
    home: str | None = None,
) -> dict[str, Any]:
    """Returns what was pruned and the analysis headline numbers (also in the artifacts)."""
    log = get_run_logger()
    settings = LocalSettings(home=Path(home)) if home else LocalSettings()
    history = Path(history_path) if history_path else settings.data_dir / "history.sqlite"
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    # The policy the autoscale flow runs with: the same loader, the same file.
    policy = load_autoscale_config(file=autoscale_config)
    config = _analysis_config(policy.policy, flap_window_minutes, cost_per_instance_hour)

    pruned = [
        prune_history_task(history, cutoff),
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
                                           max_flow_runs_pruned))
    for result in pruned:
        log.info("prune: %s", result.describe())

    analysis = analyse_task(history, now - timedelta(days=analysis_days), now, config)
    report = report_task(analysis, settings.home / "reports", config, pruned)
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
        "policy": {"file": str(policy.file) if policy.file else None,
                   **{k: getattr(policy.policy, k) for k in POLICY_SHOWN}},
    }

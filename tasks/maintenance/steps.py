"""The maintenance flow's Prefect tasks: one per I/O step (prune each store, analyse, report),
and the analysis settings taken from the autoscale policy in force."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.asyncutils import run_coro_as_sync

from autoscaler import AutoscalePolicy
from tasks.maintenance.analysis import Analysis, AnalysisConfig, analyse, load_scaling_log_frame
from tasks.maintenance.profile import ProfileResult, store_profile
from tasks.maintenance.prune import (
    PruneResult,
    bulk_concurrency_for,
    prune_files,
    prune_flow_runs,
    prune_prometheus_series,
    prune_scaling_log,
)
from tasks.maintenance.report import publish_report, render_report

POLICY_SHOWN = ("min_instances", "max_instances", "target_rps_per_instance",
                "scale_down_stabilization_seconds")
"""The policy fields the analysis judges the history against (returned with the result)."""


def analysis_config(policy: AutoscalePolicy, flap_window_minutes: float,
                    cost_per_instance_hour: float | None) -> AnalysisConfig:
    return AnalysisConfig(
        flap_window_minutes=flap_window_minutes,
        target_load_per_instance=policy.target_rps_per_instance,
        min_instances=policy.min_instances,
        max_instances=policy.max_instances,
        scale_down_stabilization_s=policy.scale_down_stabilization_seconds,
        cost_per_instance_hour=cost_per_instance_hour,
    )


@task(name="prune-history", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def prune_scaling_log_task(scaling_log_path: Path, older_than: datetime) -> PruneResult:
    return prune_scaling_log(scaling_log_path, older_than)


@task(name="prune-exported-files", cache_policy=NO_CACHE)
def prune_files_task(directories: list[Path], older_than: datetime) -> PruneResult:
    return prune_files(directories, older_than)


@task(name="prune-prometheus-series", cache_policy=NO_CACHE, timeout_seconds=120)
def prune_prometheus_task(url: str, older_than: datetime, enabled: bool) -> PruneResult:
    return prune_prometheus_series(url, older_than, enabled=enabled)


@task(name="prune-flow-runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
      timeout_seconds=3600)
def prune_flow_runs_task(older_than: datetime, flow_name: str, deployment_name: str,
                         max_runs: int | None, uses_postgresql: bool = False) -> PruneResult:
    return run_coro_as_sync(
        prune_flow_runs(older_than, flow_name=flow_name, deployment_name=deployment_name or None,
                        max_runs=max_runs,
                        bulk_concurrency=bulk_concurrency_for(uses_postgresql))
    )


@task(name="analyse-history", cache_policy=NO_CACHE)
def analyse_task(scaling_log_path: Path, since: datetime, until: datetime,
                 config: AnalysisConfig) -> Analysis:
    frame = load_scaling_log_frame(scaling_log_path, since=since, until=until)
    return analyse(frame, config, until)


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


@task(name="precompute-profile", cache_policy=NO_CACHE, timeout_seconds=120)
def profile_task(scaling_log_path: Path, since: datetime, until: datetime, memory_block: str,
                 lock_file: Path) -> ProfileResult:
    return store_profile(scaling_log_path, since, until, memory_block, lock_file)

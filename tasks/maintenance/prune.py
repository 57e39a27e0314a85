"""Retention for what the stack accumulates: scaling log, exported metric files,
Prometheus series and the autoscale deployment's flow runs (2,880 a day at a 30 s schedule).

Each pruner removes only what is older than its cutoff, is safe to re-run (a second run finds
nothing), and returns what it removed so the maintenance flow can report it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from kongstack.core.errors import MetricsError
from tasks.tick.scaling_log import ScalingLog

TERMINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
DEFAULT_SERIES_MATCHERS = ('{job="stock_api"}', '{__name__=~"kongstack_.*"}')
EXPORT_PATTERNS = ("*.json", "*.csv", "*.png", "*.prom")


@dataclass
class PruneResult:
    """What one pruner removed (or why it skipped)."""

    what: str
    removed: int = 0
    skipped: str | None = None
    details: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.skipped:
            return f"{self.what}: skipped ({self.skipped})"
        return f"{self.what}: removed {self.removed}"


def prune_scaling_log(path: Path | str, older_than: datetime) -> PruneResult:
    """Delete scaling events strictly older than ``older_than``."""
    path = Path(path)
    if not path.exists():
        return PruneResult("scaling log", skipped=f"no scaling log at {path}")
    return PruneResult("scaling log", removed=ScalingLog(path).prune(older_than))


def prune_files(
    directories: Iterable[Path], older_than: datetime, patterns: Sequence[str] = EXPORT_PATTERNS
) -> PruneResult:
    """Delete exported files (monitor exports, reports, stale textfiles) last written before
    ``older_than``. Only regular files matching ``patterns``, never directories or symlinks."""
    result = PruneResult("exported files")
    cutoff = older_than.timestamp()
    for directory in directories:
        if not directory.is_dir():
            continue
        for pattern in patterns:
            for path in sorted(directory.glob(pattern)):
                if path.is_symlink() or not path.is_file():
                    continue
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    result.removed += 1
                    result.details.append(str(path))
    return result


class _Transient(Exception):
    pass


@retry(retry=retry_if_exception_type(_Transient), stop=stop_after_attempt(3),
       wait=wait_exponential_jitter(initial=0.5, max=5), reraise=True)
def _admin_post(client: httpx.Client, path: str, params: list[tuple[str, Any]]) -> httpx.Response:
    try:
        response = client.post(path, params=params)
    except (httpx.ConnectError, httpx.TimeoutException) as exc:
        raise _Transient(str(exc)) from exc
    # Prometheus answers a disabled admin API with 500 "admin APIs disabled": not transient.
    if response.status_code >= 500 and "admin APIs disabled" not in response.text:
        raise _Transient(f"HTTP {response.status_code}")
    return response


def prune_prometheus_series(
    base_url: str,
    older_than: datetime,
    matchers: Sequence[str] = DEFAULT_SERIES_MATCHERS,
    *,
    enabled: bool = True,
    timeout: float = 30.0,
) -> PruneResult:
    """Delete samples older than ``older_than`` through Prometheus's TSDB admin API, then clean
    the tombstones so the space is freed. Skipped (not failed) when disabled here, when
    Prometheus was started without ``--web.enable-admin-api`` or is not running."""
    result = PruneResult("prometheus series")
    if not enabled:
        result.skipped = "disabled by configuration"
        return result
    params: list[tuple[str, Any]] = [("match[]", m) for m in matchers]
    params.append(("end", f"{older_than.timestamp():.3f}"))
    try:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            response = _admin_post(client, "/api/v1/admin/tsdb/delete_series", params)
            if response.status_code == 404 or "admin APIs disabled" in response.text:
                result.skipped = "admin API not enabled (start with --web.enable-admin-api)"
                return result
            if response.status_code != 204:
                raise MetricsError(
                    f"prometheus delete_series answered {response.status_code}: "
                    f"{response.text[:200]}"
                )
            _admin_post(client, "/api/v1/admin/tsdb/clean_tombstones", [])
    except _Transient as exc:
        result.skipped = f"prometheus at {base_url} unreachable ({exc})"
        return result
    result.removed = len(matchers)
    result.details = [f"{m} before {older_than.isoformat()}" for m in matchers]
    return result


async def prune_flow_runs(
    older_than: datetime,
    *,
    flow_name: str = "autoscale",
    deployment_name: str | None = "autoscale",
    batch_size: int = 200,
    concurrency: int = 4,
    bulk: bool = True,
    bulk_concurrency: int = 1,
    max_runs: int | None = None,
) -> PruneResult:
    """Delete terminal flow runs of ``flow_name`` (optionally only of ``deployment_name``) that
    ended before ``older_than``, in batches.

    ``bulk`` uses the server's ``POST /flow_runs/bulk_delete`` (up to 50 runs per request, one
    transaction each: ~30x faster on SQLite, measured in benchmarks/prune.py); otherwise runs
    are read with ``read_flow_runs`` and deleted one by one with bounded concurrency.
    ``bulk_concurrency`` > 1 keeps that many bulk requests in flight, each on its own slice of
    end times, so no two delete the same runs: for a server on PostgreSQL (no single-writer
    lock; :func:`bulk_concurrency_for`). ``max_runs`` bounds one call (the rest waits for the
    next run)."""
    if bulk_concurrency < 1:
        raise ValueError(f"bulk_concurrency must be at least 1, got {bulk_concurrency}")
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    result = PruneResult(f"prefect flow runs of {flow_name}"
                         + (f"/{deployment_name}" if deployment_name else ""))
    async with get_client() as client:
        flow_filter = FlowFilter(name=FlowFilterName(any_=[flow_name]))
        deployment_filter = (
            DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name]))
            if deployment_name else None
        )
        deployments = await client.read_deployments(
            flow_filter=flow_filter, deployment_filter=deployment_filter
        )
        if deployment_name and not deployments:
            result.skipped = f"no deployment {flow_name}/{deployment_name} on this server"
            return result
        run_filter = FlowRunFilter(
            end_time=FlowRunFilterEndTime(before_=older_than),  # type: ignore[arg-type]
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType(s) for s in TERMINAL_STATES])
            ),
            deployment_id=FlowRunFilterDeploymentId(any_=[d.id for d in deployments])
            if deployment_name else None,
        )
        if bulk and deployment_name:
            removed = await _bulk_delete(client, run_filter, older_than, bulk_concurrency,
                                         max_runs)
            if removed is not None:
                result.removed = removed
                return result
        result.removed = await _delete_each(client, run_filter, flow_filter, batch_size,
                                            concurrency, max_runs)
    return result


def bulk_concurrency_for(uses_postgresql: bool) -> int:
    """Bulk delete requests to keep in flight: one on SQLite, whose single writer serialises
    them anyway (concurrent writers only wait on its lock), four on PostgreSQL, where the
    server's Python and the database work on different cores (benchmarks/prune.py)."""
    return 4 if uses_postgresql else 1


class _Budget:
    """What is left of ``max_runs``, shared by the concurrent deleters (one event loop)."""

    def __init__(self, max_runs: int | None) -> None:
        self.left = max_runs

    def take(self, want: int) -> int:
        if self.left is None:
            return want
        granted = min(want, self.left)
        self.left -= granted
        return granted

    def give_back(self, unused: int) -> None:
        if self.left is not None:
            self.left += unused


_TICK = timedelta(microseconds=1)  # the resolution of Prefect's timestamps


async def _end_time_slices(
    client: Any, run_filter: Any, older_than: datetime, count: int
) -> list[tuple[datetime | None, datetime]]:
    """``count`` disjoint (after, before) end-time slices, both bounds inclusive, that
    together cover every run ``run_filter`` matches: the first is open below, the last ends at
    ``older_than``. The bounds come from the earliest scheduled start among the matching runs
    (there is no sort by end time); a run that ended before it falls in the first slice."""
    from prefect.client.schemas.sorting import FlowRunSort

    if count == 1:
        return [(None, older_than)]
    oldest = await client.read_flow_runs(flow_run_filter=run_filter,
                                         sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1)
    begin = (oldest[0].expected_start_time or oldest[0].end_time) if oldest else None
    if begin is None or begin >= older_than:
        return [(None, older_than)]
    step = (older_than - begin) / count
    ends = [begin + step * k for k in range(1, count)] + [older_than]
    return [(None if k == 0 else ends[k - 1] + _TICK, ends[k]) for k in range(count)]


async def _bulk_delete(
    client: Any, run_filter: Any, older_than: datetime, concurrency: int,
    max_runs: int | None,
) -> int | None:
    """Server-side batches of 50, ``concurrency`` requests in flight, each on its own slice
    of end times; None when the server has no bulk endpoint (older server)."""
    from prefect.client.schemas.filters import FlowRunFilterEndTime

    # More slices than deleters: a slice that empties early frees its deleter for the next.
    slices = await _end_time_slices(client, run_filter, older_than,
                                    1 if concurrency == 1 else concurrency * 4)
    pending = list(reversed(slices))  # oldest last: popped first
    budget = _Budget(max_runs)
    removed = 0
    unsupported = False

    async def drain(after: datetime | None, before: datetime) -> bool:
        """Delete this slice's runs until it is empty (True) or the budget is spent (False;
        another deleter may still hand some back)."""
        nonlocal removed, unsupported
        window = run_filter.model_copy(update={"end_time": FlowRunFilterEndTime(
            before_=before, after_=after)})  # type: ignore[arg-type]
        flow_runs = window.model_dump(mode="json", exclude_none=True)
        while not unsupported:
            limit = budget.take(50)
            if not limit:
                return False
            # No public client method wraps this endpoint in 3.9; the request goes through
            # the client's own (authenticated, retrying) HTTP session.
            response = await client._client.post(
                "/flow_runs/bulk_delete", json={"flow_runs": flow_runs, "limit": limit},
                timeout=60)
            if response.status_code in (404, 405):
                unsupported = True
                budget.give_back(limit)
                return True
            response.raise_for_status()
            deleted = len(response.json().get("deleted", []))
            budget.give_back(limit - deleted)
            removed += deleted
            if not deleted:
                return True
        return True

    async def deleter() -> None:
        while pending and not unsupported:
            after, before = pending.pop()
            if not await drain(after, before):
                # Budget spent for now: the slice stays for a deleter that holds some.
                pending.append((after, before))
                return

    deleters = [asyncio.ensure_future(deleter()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*deleters)
    except BaseException:
        for other in deleters:  # one failed: stop the rest before the client closes
            other.cancel()
        raise
    return None if unsupported and removed == 0 else removed


async def _delete_each(
    client: Any, run_filter: Any, flow_filter: Any, batch_size: int, concurrency: int,
    max_runs: int | None,
) -> int:
    from prefect.exceptions import ObjectNotFound

    gate = asyncio.Semaphore(concurrency)

    async def delete(run_id: UUID) -> int:
        async with gate:
            try:
                await client.delete_flow_run(run_id)
            except ObjectNotFound:  # deleted meanwhile: already done
                return 0
            return 1

    removed = 0
    while max_runs is None or removed < max_runs:
        limit = batch_size if max_runs is None else min(batch_size, max_runs - removed)
        runs = await client.read_flow_runs(
            flow_filter=flow_filter, flow_run_filter=run_filter, limit=limit
        )
        if not runs:
            return removed
        removed += sum(await asyncio.gather(*(delete(r.id) for r in runs)))
    return removed

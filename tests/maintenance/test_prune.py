from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kongstack.core.procs import free_port, wait_until
from tasks.maintenance.prune import (
    bulk_concurrency_for,
    prune_files,
    prune_flow_runs,
    prune_prometheus_series,
    prune_scaling_log,
)
from tests.maintenance.conftest import sample_time, series_count
from tests.maintenance.histories import DAY0, ev, write_history


def test_history_prune_removes_exactly_what_is_older(tmp_path: Path) -> None:
    events = [ev(s, "decision", 3, 3, "noop", 10) for s in (0, 100, 200, 300, 400)]
    store = write_history(tmp_path / "h.sqlite", events)
    result = prune_scaling_log(tmp_path / "h.sqlite", DAY0 + timedelta(seconds=200))
    assert result.removed == 2  # 0 and 100; the event exactly at the cutoff stays
    assert [e.ts for e in reversed(store.recent())] == [
        DAY0 + timedelta(seconds=s) for s in (200, 300, 400)]
    assert prune_scaling_log(tmp_path / "h.sqlite", DAY0 + timedelta(seconds=200)).removed == 0
    assert prune_scaling_log(tmp_path / "none.sqlite", DAY0).skipped


def test_file_prune_by_age_and_pattern(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    now = time.time()
    old_json, new_json, old_txt = exports / "m-old.json", exports / "m-new.json", exports / "x.txt"
    for path in (old_json, new_json, old_txt):
        path.write_text("{}")
    os.utime(old_json, (now - 20 * 86400, now - 20 * 86400))
    os.utime(old_txt, (now - 20 * 86400, now - 20 * 86400))
    result = prune_files([exports, tmp_path / "absent"], datetime.now(UTC) - timedelta(days=14))
    assert result.removed == 1 and result.details == [str(old_json)]
    assert not old_json.exists() and new_json.exists() and old_txt.exists()


def test_prometheus_series_deleted_through_admin_api(prometheus_admin: str) -> None:
    wait_until(lambda: series_count(prometheus_admin, 'up{job="self"}') == 1, timeout=20,
               what="first scrape")
    first = sample_time(prometheus_admin)
    cutoff = datetime.fromtimestamp(first + 0.5, tz=UTC)
    wait_until(lambda: sample_time(prometheus_admin) > first + 0.5, timeout=10,
               what="a scrape after the cutoff")
    assert series_count(prometheus_admin, 'up{job="self"}', at=first + 0.1) == 1
    result = prune_prometheus_series(prometheus_admin, cutoff, ['{job="self"}'])
    assert result.skipped is None and result.removed == 1
    assert series_count(prometheus_admin, 'up{job="self"}', at=first + 0.1) == 0
    # Samples after the cutoff are kept.
    assert series_count(prometheus_admin, 'up{job="self"}') == 1


def test_prometheus_without_admin_api_is_reported_as_skipped(prometheus_plain: str) -> None:
    result = prune_prometheus_series(prometheus_plain, datetime.now(UTC), ['{job="self"}'])
    assert result.removed == 0 and "admin API not enabled" in (result.skipped or "")


def test_prometheus_down_or_disabled_is_skipped() -> None:
    down = prune_prometheus_series(f"http://127.0.0.1:{free_port()}", datetime.now(UTC),
                                   timeout=1)
    assert "unreachable" in (down.skipped or "")
    assert prune_prometheus_series("http://unused", datetime.now(UTC), enabled=False).skipped


async def _make_runs(flow_name: str, deployment: str, n: int) -> list[uuid.UUID]:
    from prefect import get_client
    from prefect.states import Completed

    async with get_client() as client:
        flow_id = await client.create_flow_from_name(flow_name)
        dep_id = await client.create_deployment(flow_id=flow_id, name=deployment)
        return [(await client.create_flow_run_from_deployment(dep_id, state=Completed())).id
                for _ in range(n)]


async def _existing(ids: list[uuid.UUID]) -> set[uuid.UUID]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        return {r.id for r in runs}


async def _end_time(run_id: uuid.UUID) -> datetime:
    from prefect import get_client

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        assert run.end_time is not None
        return run.end_time


@pytest.mark.parametrize(("bulk", "in_flight"), [(True, 1), (True, 4), (False, 1)],
                         ids=["bulk-delete", "bulk-delete-4-in-flight", "read-and-delete"])
def test_flow_runs_older_than_retention_are_deleted(prefect_backend: str, bulk: bool,
                                                    in_flight: int) -> None:
    flow_name = f"autoscale-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        old = await _make_runs(flow_name, "autoscale", 7)
        other = await _make_runs(flow_name, "other", 2)  # same flow, another deployment
        cutoff = await _end_time(old[-1])
        new = await _make_runs(flow_name, "autoscale", 3)
        first = await prune_flow_runs(cutoff, flow_name=flow_name, deployment_name="autoscale",
                                      batch_size=3, bulk=bulk, bulk_concurrency=in_flight,
                                      max_runs=4)
        assert first.removed == 4  # bounded: the rest waits for the next maintenance run
        assert len(await _existing(old)) == 3
        result = await prune_flow_runs(cutoff, flow_name=flow_name, deployment_name="autoscale",
                                       batch_size=3, concurrency=2, bulk=bulk,
                                       bulk_concurrency=in_flight)
        assert result.removed == 3
        assert await _existing(old + other + new) == set(other + new)
        again = await prune_flow_runs(cutoff, flow_name=flow_name, deployment_name="autoscale",
                                      bulk=bulk, bulk_concurrency=in_flight)
        assert again.removed == 0

    asyncio.run(scenario())


def test_end_time_slices_are_disjoint_and_cover_to_the_cutoff() -> None:
    from tasks.maintenance.prune import _end_time_slices

    class OldestRun:  # what read_flow_runs answers: the earliest scheduled matching run
        expected_start_time = datetime(2026, 1, 1, tzinfo=UTC)
        end_time = None

    class Client:
        async def read_flow_runs(self, **_: object) -> list[OldestRun]:
            return [OldestRun()]

    cutoff = datetime(2026, 1, 2, tzinfo=UTC)
    slices = asyncio.run(_end_time_slices(Client(), None, cutoff, 16))
    assert len(slices) == 16 and slices[0][0] is None and slices[-1][1] == cutoff
    for (_, end), (start, _) in zip(slices, slices[1:], strict=False):
        assert start is not None and start - end == timedelta(microseconds=1)
    nothing_older = asyncio.run(_end_time_slices(Client(), None, OldestRun.expected_start_time, 16))
    assert nothing_older == [(None, OldestRun.expected_start_time)]  # one open slice


def test_bulk_concurrency_is_one_on_sqlite_and_more_on_postgresql() -> None:
    assert bulk_concurrency_for(False) == 1 and bulk_concurrency_for(True) > 1


def test_bulk_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="bulk_concurrency must be at least 1, got 0"):
        asyncio.run(prune_flow_runs(datetime.now(UTC), bulk_concurrency=0))


def test_flow_run_prune_without_the_deployment_is_skipped(prefect_backend: str) -> None:
    result = asyncio.run(prune_flow_runs(datetime.now(UTC), flow_name="no-such-flow"))
    assert result.skipped and "no deployment" in result.skipped


class _FakeBulkServer:
    """The bulk endpoint's contract on a dict of run id -> end time: the runs matching the
    filter's end-time bounds (inclusive), at most ``limit``, deleted and answered. Each request
    yields to the loop first, so concurrent deleters interleave as they do against a server."""

    def __init__(self, ends: dict[int, datetime], fail_after: int | None = None) -> None:
        self.runs = dict(ends)
        self.requests = 0
        self.fail_after = fail_after
        self._client = self  # prune_flow_runs posts through the client's own session

    async def read_flow_runs(self, **_: object) -> list[object]:
        oldest = min(self.runs.values(), default=None)
        return [type("Run", (), {"expected_start_time": oldest, "end_time": oldest})()] \
            if oldest else []

    async def post(self, path: str, json: dict[str, Any], timeout: float) -> Any:
        import httpx

        await asyncio.sleep(0)
        self.requests += 1
        if self.fail_after is not None and self.requests > self.fail_after:
            return httpx.Response(500, request=httpx.Request("POST", path))
        bounds = json["flow_runs"]["end_time"]
        after = datetime.fromisoformat(bounds["after_"]) if "after_" in bounds else None
        before = datetime.fromisoformat(bounds["before_"])
        matching = sorted(i for i, end in self.runs.items()
                          if end <= before and (after is None or end >= after))
        deleted = matching[:json["limit"]]
        for run_id in deleted:
            del self.runs[run_id]
        return httpx.Response(200, json={"deleted": deleted},
                              request=httpx.Request("POST", path))


def _ends(n: int, start: datetime) -> dict[int, datetime]:
    return {i: start + timedelta(seconds=30 * i) for i in range(n)}


@pytest.mark.parametrize("in_flight", [1, 4])
def test_bulk_delete_in_flight_takes_exactly_the_old_runs_within_the_budget(in_flight: int) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterEndTime

    from tasks.maintenance.prune import _bulk_delete

    start = datetime(2026, 1, 1, tzinfo=UTC)
    cutoff = start + timedelta(seconds=30 * 299)  # runs 0..299 are old, 300..399 are not
    run_filter = FlowRunFilter(end_time=FlowRunFilterEndTime(before_=cutoff))  # type: ignore[arg-type]
    server = _FakeBulkServer(_ends(400, start))
    assert asyncio.run(_bulk_delete(server, run_filter, cutoff, in_flight, 123)) == 123
    assert len(server.runs) == 400 - 123
    # A budget close to what is there: deleters that find it spent while others still hold
    # some must leave their slice for them, or the call falls short.
    assert asyncio.run(_bulk_delete(server, run_filter, cutoff, in_flight, 170)) == 170
    assert asyncio.run(_bulk_delete(server, run_filter, cutoff, in_flight, None)) == 7
    assert sorted(server.runs) == list(range(300, 400))
    assert asyncio.run(_bulk_delete(server, run_filter, cutoff, in_flight, None)) == 0


def test_a_failed_bulk_request_stops_every_deleter() -> None:
    import httpx
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterEndTime

    from tasks.maintenance.prune import _bulk_delete

    start = datetime(2026, 1, 1, tzinfo=UTC)
    cutoff = start + timedelta(days=1)
    run_filter = FlowRunFilter(end_time=FlowRunFilterEndTime(before_=cutoff))  # type: ignore[arg-type]
    server = _FakeBulkServer(_ends(2000, start), fail_after=5)
    with pytest.raises(httpx.HTTPStatusError, match="500"):
        asyncio.run(_bulk_delete(server, run_filter, cutoff, 4, None))
    assert server.requests <= 5 + 4  # the one that failed, and at most one more per deleter

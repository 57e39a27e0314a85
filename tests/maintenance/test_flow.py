from __future__ import annotations

import asyncio
import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.maintenance import maintenance
from tasks.tick.scaling_log import ScalingLog
from tests.maintenance.histories import HAND_EVENTS, ev, write_history
from tests.maintenance.test_prune import _existing, _make_runs


def test_maintenance_prunes_then_reports_the_known_numbers(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONGSTACK_AUTOSCALE_TARGET_RPS_PER_INSTANCE", "100")
    monkeypatch.setenv("KONGSTACK_AUTOSCALE_MIN_INSTANCES", "2")
    home = tmp_path / "var"
    history = home / "data" / "history.sqlite"
    # The hand-computed history shifted into the last 3 hours, plus 4 events past retention.
    # Aligned to the hour so the hourly means (and the p95 over them) match the hand numbers.
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    shift = start - HAND_EVENTS[0].ts
    recent = [ev((e.ts - HAND_EVENTS[0].ts).total_seconds(), e.kind, e.from_count, e.to_count,
                 e.outcome, e.metrics.get("rps"), base=HAND_EVENTS[0].ts + shift)
              for e in HAND_EVENTS]
    ancient = [ev(s, "scale_up", 1, 2, "ok", 10, base=datetime.now(UTC) - timedelta(days=30))
               for s in (0, 60, 120, 180)]
    write_history(history, ancient + recent)

    flow_name = f"autoscale-{uuid.uuid4().hex[:8]}"
    old_runs = asyncio.run(_make_runs(flow_name, "autoscale", 3))

    before = datetime.now(UTC)
    result = maintenance(retention_days=14, analysis_days=1, prune_prometheus=False,
                         flow_run_retention_days=0, autoscale_flow=flow_name,
                         autoscale_deployment="autoscale", home=str(home))
    after = datetime.now(UTC)

    assert result["pruned"][f"prefect flow runs of {flow_name}/autoscale"] == 3
    assert asyncio.run(_existing(old_runs)) == set()
    assert result["pruned"]["scaling log"] == 4
    assert result["pruned"]["prometheus series"] == "skipped: disabled by configuration"
    assert ScalingLog(history).count() == len(HAND_EVENTS)
    assert result["events"] == len(HAND_EVENTS)
    # Until the flow's "now" (some time between before and after), the last count (6) holds
    # for the extra time since the last event.
    last = recent[-1].ts
    hand_hours = (3 * 960 + 4 * 2040 + 6 * 2400) / 3600  # up to the last event
    lowest = hand_hours + 6 * (before - last).total_seconds() / 3600
    highest = hand_hours + 6 * (after - last).total_seconds() / 3600
    assert lowest - 0.001 <= result["instance_hours"] <= highest + 0.001  # rounded to 0.001
    assert result["flaps"] == 1
    assert result["reactions"]["answered"] == 2 and result["reactions"]["unanswered"] == 1
    assert any(s["setting"] == "min_instances" for s in result["suggestions"])
    files = [Path(f) for f in result["files"]]
    assert {f.suffix for f in files} == {".csv", ".png"} and all(f.exists() for f in files)

    async def artifacts() -> dict[str, Any]:
        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(like_="scaling-")))
            return {a.key: a.data for a in found if a.key}

    published = asyncio.run(artifacts())
    assert {"scaling-analysis", "scaling-actions-per-day", "scaling-time-at-instance-count",
            "scaling-chart", "scaling-csv"} <= set(published)
    # The chart is in the artifact itself (the UI renders it), the same bytes as the PNG.
    match = re.search(r"\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)",
                      str(published["scaling-chart"]))
    assert match is not None
    png = next(f for f in files if f.suffix == ".png")
    assert base64.b64decode(match.group(1)) == png.read_bytes()

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from tasks.maintenance.analysis import AnalysisConfig, analyse, load_scaling_log_frame
from tasks.maintenance.report import render_report
from tests.maintenance.histories import DAY0, HAND_EVENTS, HAND_UNTIL, ev, write_history


@pytest.fixture()
def hand(tmp_path: Path):  # type: ignore[no-untyped-def]
    write_history(tmp_path / "history.sqlite", HAND_EVENTS)
    frame = load_scaling_log_frame(tmp_path / "history.sqlite")
    config = AnalysisConfig(flap_window_minutes=10, target_load_per_instance=100,
                            min_instances=2, max_instances=6)
    return analyse(frame, config, until=HAND_UNTIL), config


def test_time_at_each_count_and_instance_hours(hand) -> None:  # type: ignore[no-untyped-def]
    result, _ = hand
    table = result.time_at_count.set_index("instances")
    assert table["seconds"].to_dict() == {3: 960.0, 4: 2040.0, 6: 4200.0}
    assert table["share"].sum() == pytest.approx(1.0)
    assert result.instance_hours == pytest.approx(36240 / 3600)
    assert result.daily["instance_hours"].tolist() == pytest.approx([36240 / 3600])


def test_actions_per_day_count_applied_failed_and_errors(hand) -> None:  # type: ignore[no-untyped-def]
    result, _ = hand
    row = result.actions_per_day.iloc[0].to_dict()
    assert row == {"scale_up": 2, "scale_down": 1, "manual": 1, "repair": 0,
                   "failed": 1, "errors": 1, "total": 4}
    assert str(result.actions_per_day.index[0]) == "2026-01-05"


def test_reaction_times_to_load_increases(hand) -> None:  # type: ignore[no-untyped-def]
    result, _ = hand
    assert result.reactions["reaction_s"].tolist() == [60.0, 0.0]
    assert result.reaction_summary["unanswered"] == 1
    assert result.reaction_summary["median_s"] == 30.0
    assert result.reaction_summary["max_s"] == 60.0


def test_flapping_is_a_direction_change_inside_the_window(hand) -> None:  # type: ignore[no-untyped-def]
    result, config = hand
    assert result.flaps["gap_s"].tolist() == [300.0]
    assert result.flaps["to_count"].tolist() == [4]
    wider = analyse(result_frame(hand), config.model_copy(update={"flap_window_minutes": 20}),
                    until=HAND_UNTIL)
    assert len(wider.flaps) == 2  # the 1140 s gap now counts too


def result_frame(hand) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    result, _ = hand
    # Rebuild the input frame from the same events (analyse must not mutate its input).
    from tasks.maintenance.analysis import _typed

    return _typed(pd.DataFrame({
        "ts": [e.ts.timestamp() for e in HAND_EVENTS],
        "kind": [e.kind for e in HAND_EVENTS],
        "from_count": [e.from_count for e in HAND_EVENTS],
        "to_count": [e.to_count for e in HAND_EVENTS],
        "outcome": [e.outcome for e in HAND_EVENTS],
        "load": [e.metrics.get("rps") for e in HAND_EVENTS],
    }))


def test_hourly_profile_and_min_instance_suggestion(hand) -> None:  # type: ignore[no-untyped-def]
    result, _ = hand
    profile = result.hourly_profile
    assert profile.loc[0, "mean_load"] == pytest.approx(970 / 8)
    assert profile.loc[1, "mean_load"] == pytest.approx(300.0)
    assert profile.loc[5].isna().all()  # no data at 05:00
    # p95 over the two hourly means (121.25, 300) by linear interpolation.
    assert result.p95_hourly_load == pytest.approx(121.25 + 0.95 * (300 - 121.25))
    minimum = [s for s in result.suggestions if s.setting == "min_instances"]
    assert [(s.current, s.suggested) for s in minimum] == [(2, 3)]
    assert math.ceil(result.p95_hourly_load / 100) == 3


def test_instance_hours_are_split_exactly_at_midnight(tmp_path: Path) -> None:
    late = DAY0 + timedelta(hours=23)
    events = [ev(0, "decision", 2, 2, "noop", 50, base=late),
              ev(7200, "scale_up", 2, 4, "ok", 80, base=late)]  # 01:00 next day
    write_history(tmp_path / "h.sqlite", events)
    result = analyse(load_scaling_log_frame(tmp_path / "h.sqlite"), AnalysisConfig(),
                     until=late + timedelta(hours=3))
    assert result.daily["instance_hours"].tolist() == pytest.approx([2.0, 2.0 + 4.0])
    assert result.instance_hours == pytest.approx(8.0)


def test_window_filters_and_empty_history(tmp_path: Path) -> None:
    write_history(tmp_path / "h.sqlite", HAND_EVENTS)
    since = DAY0 + timedelta(seconds=1800)
    frame = load_scaling_log_frame(tmp_path / "h.sqlite", since=since,
                               until=DAY0 + timedelta(seconds=3600))
    assert frame["ts"].tolist() == [(DAY0 + timedelta(seconds=s)).timestamp()
                                    for s in (1800, 2100, 2400, 3000)]
    empty = analyse(load_scaling_log_frame(tmp_path / "missing.sqlite"), AnalysisConfig())
    assert empty.events == 0
    report = render_report(empty, tmp_path / "out", AnalysisConfig())
    assert "No scaling events" in report.markdown and report.files == []


def test_report_writes_chart_csv_and_tables(hand, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result, config = hand
    report = render_report(result, tmp_path / "reports", config)
    assert report.chart is not None and report.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.csv is not None
    csv = pd.read_csv(report.csv)
    assert csv["instance_hours"].tolist() == pytest.approx([36240 / 3600], abs=1e-3)
    assert "| 6 | 1.17 | 58.3% |" in report.markdown
    assert "**min_instances**: 2 → 3" in report.markdown
    assert report.tables["actions-per-day"][0]["total"] == 4
    priced = render_report(result, tmp_path / "priced",
                           config.model_copy(update={"cost_per_instance_hour": 0.5}))
    assert "| instance-hours | 10.1 (cost 5.03 at 0.5/h) |" in priced.markdown


def test_config_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="flap_window_minutes"):
        AnalysisConfig(flap_window_minutes=0)
    with pytest.raises(ValidationError, match="unknown_knob"):
        AnalysisConfig(unknown_knob=1)  # type: ignore[call-arg]


def test_frequent_flapping_suggests_a_longer_scale_down_hold(tmp_path: Path) -> None:
    # Up/down every 2 minutes for an hour: 29 flaps with a 120 s gap in one day.
    events = [ev(120 * i, "scale_up" if i % 2 == 0 else "scale_down",
                 3 if i % 2 == 0 else 4, 4 if i % 2 == 0 else 3, "ok", 100) for i in range(30)]
    write_history(tmp_path / "f.sqlite", events)
    frame = load_scaling_log_frame(tmp_path / "f.sqlite")
    config = AnalysisConfig(flap_window_minutes=5, scale_down_stabilization_s=60)
    result = analyse(frame, config)
    assert len(result.flaps) == 29
    (hold,) = [s for s in result.suggestions if s.setting == "scale_down_stabilization_seconds"]
    assert (hold.current, hold.suggested) == (60, 300)  # max(2 x 120 s, the 5 min window)
    settled = analyse(frame, config.model_copy(update={"scale_down_stabilization_s": 600}))
    assert not [s for s in settled.suggestions if s.setting.startswith("scale_down")]


def test_a_ticks_action_rows_do_not_repeat_its_load_sample(tmp_path: Path) -> None:
    # The autoscale recorder writes a decision row and an action row with one timestamp.
    events = [ev(0, "decision", 2, 2, "noop", 100), ev(30, "decision", 2, 3, "ok", 400),
              ev(30, "scale_up", 2, 3, "ok", 400)]
    write_history(tmp_path / "t.sqlite", events)
    result = analyse(load_scaling_log_frame(tmp_path / "t.sqlite"), AnalysisConfig(),
                     until=DAY0 + timedelta(seconds=60))
    assert result.hourly_profile.loc[0, "mean_load"] == pytest.approx(250.0)
    assert result.reactions["reaction_s"].tolist() == [0.0]
    assert result.time_at_count.set_index("instances")["seconds"].to_dict() == {2: 30.0,
                                                                                3: 30.0}

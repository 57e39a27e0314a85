"""Render an :class:`tasks.maintenance.analysis.Analysis`: markdown, tables, a PNG chart, a
CSV export.

Rendering is separate from computing so the numbers can be tested without matplotlib, and
separate from publishing (``publish_report``) so the files exist even without a Prefect API.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kongstack.core.extras import requires_extra
from tasks.maintenance.analysis import Analysis, AnalysisConfig

with requires_extra("analysis", "the maintenance report"):
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

_CHART_POINTS = 1500  # a chart of a million points shows nothing more than 1,500 bins do


@dataclass
class Report:
    markdown: str
    tables: dict[str, list[dict[str, Any]]]
    files: list[Path] = field(default_factory=list)

    @property
    def chart(self) -> Path | None:
        return next((p for p in self.files if p.suffix == ".png"), None)

    @property
    def csv(self) -> Path | None:
        return next((p for p in self.files if p.suffix == ".csv"), None)


def render_report(analysis: Analysis, out_dir: Path, config: AnalysisConfig) -> Report:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    files: list[Path] = []
    if analysis.events:
        csv_path = out_dir / f"scaling-daily-{stamp}.csv"
        analysis.daily.to_csv(csv_path, float_format="%.3f")
        files.append(csv_path)
        png_path = out_dir / f"scaling-{stamp}.png"
        _chart(analysis, png_path)
        files.append(png_path)
    tables = {
        "actions-per-day": _records(analysis.actions_per_day.reset_index()),
        "time-at-instance-count": _records(analysis.time_at_count),
        "daily-summary": _records(analysis.daily.reset_index()),
        "hourly-load-profile": _records(analysis.hourly_profile.reset_index()),
    }
    return Report(markdown=_markdown(analysis, config, files), tables=tables, files=files)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    clean = frame.astype(object).where(pd.notna(frame), None)
    return [
        {str(k): (round(v, 3) if isinstance(v, float) else str(v) if not
                  isinstance(v, int | float | str | type(None)) else v) for k, v in row.items()}
        for row in clean.to_dict(orient="records")
    ]


def _markdown(analysis: Analysis, config: AnalysisConfig, files: list[Path]) -> str:
    if not analysis.events:
        return "# Scaling log analysis\n\nNo scaling events in the analysed window.\n"
    r = analysis.reaction_summary

    def secs(v: float | int | None) -> str:
        return "-" if v is None else f"{v:.0f}s"

    lines = [
        "# Scaling log analysis",
        "",
        f"Window: {analysis.start:%Y-%m-%d %H:%M} to {analysis.end:%Y-%m-%d %H:%M} UTC, "
        f"{analysis.events:,} events.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| instance-hours | {analysis.instance_hours:,.1f}"
        + (f" (cost {analysis.instance_hours * config.cost_per_instance_hour:,.2f} at "
           f"{config.cost_per_instance_hour:g}/h)" if config.cost_per_instance_hour else "")
        + " |",
        f"| actions (applied) | {int(analysis.actions_per_day['total'].sum()):,} |",
        f"| failed actions | {int(analysis.actions_per_day['failed'].sum()):,} |",
        f"| flaps (direction change < {config.flap_window_minutes:g} min) | "
        f"{len(analysis.flaps):,} |",
        f"| load increases answered / unanswered | {r['answered']} / {r['unanswered']} |",
        f"| reaction time median / p95 / max | {secs(r['median_s'])} / {secs(r['p95_s'])} / "
        f"{secs(r['max_s'])} |",
        f"| p95 hourly mean load | "
        f"{'-' if analysis.p95_hourly_load is None else f'{analysis.p95_hourly_load:.1f} req/s'} |",
        "",
        "## Time at each instance count",
        "",
        "| instances | hours | share |",
        "|---|---|---|",
    ]
    for row in analysis.time_at_count.itertuples():
        lines.append(f"| {row.instances} | {row.hours:.2f} | {row.share:.1%} |")
    lines += ["", "## Suggestions", ""]
    if analysis.suggestions:
        for s in analysis.suggestions:
            current = "unset" if s.current is None else s.current
            lines.append(f"- **{s.setting}**: {current} → {s.suggested} — {s.reason}")
    else:
        lines.append("- none: the history gives no reason to change the thresholds")
    if files:
        lines += ["", "## Files", ""] + [f"- `{p}`" for p in files]
    return "\n".join(lines) + "\n"


def _chart(analysis: Analysis, path: Path) -> None:
    frame = analysis.frame
    ts = frame["ts"].to_numpy()
    span = max(float(ts[-1] - ts[0]), 1.0)
    bins = np.minimum(((ts - ts[0]) / span * _CHART_POINTS).astype("int64"), _CHART_POINTS - 1)
    binned = pd.DataFrame({"bin": bins, "ts": ts, "count": frame["count"].to_numpy(),
                           "load": frame["load"].to_numpy()}).groupby("bin")
    when = pd.to_datetime(binned["ts"].min(), unit="s", utc=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), constrained_layout=True)
    top.step(when, binned["count"].max(), where="post", label="instances (max per bin)")
    top.set_ylabel("instances")
    twin = top.twinx()
    twin.plot(when, binned["load"].mean(), color="tab:orange", alpha=0.6, label="load")
    twin.set_ylabel("req/s")
    top.set_title("Instance count and load")
    profile = analysis.hourly_profile
    bottom.bar(profile.index, profile["mean_load"].fillna(0), label="mean load")
    bottom.plot(profile.index, profile["p95_load"], color="tab:red", marker="o", label="p95 load")
    bottom.set_xlabel("hour of day (UTC)")
    bottom.set_ylabel("req/s")
    bottom.set_title("Hourly load profile")
    bottom.legend(loc="upper left")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def chart_markdown(path: Path, title: str) -> str:
    """The PNG embedded in markdown as a data URI: the Prefect UI renders it in the artifact
    itself (a ``file://`` link would point at a file the browser cannot open)."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"# {title}\n\n![{title}](data:image/png;base64,{encoded})\n\n`{path}`\n"


def publish_report(report: Report, key_prefix: str = "scaling") -> None:
    """Publish as Prefect artifacts: the analysis (markdown), one table per frame, the chart
    (markdown with the image embedded) and a link to the CSV on the host."""
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    create_markdown_artifact(report.markdown, key=f"{key_prefix}-analysis",
                             description="Scaling log analysis")
    for name, rows in report.tables.items():
        if rows:
            create_table_artifact(rows, key=f"{key_prefix}-{name}", description=name)
    if report.chart is not None:
        create_markdown_artifact(chart_markdown(report.chart, "Instance count and load"),
                                 key=f"{key_prefix}-chart",
                                 description="Instance count, load and hourly profile")
    if report.csv is not None:
        create_link_artifact(report.csv.resolve().as_uri(), link_text=report.csv.name,
                             key=f"{key_prefix}-csv")

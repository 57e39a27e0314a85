"""The replay's edge: read trace CSVs, write JSON, a side-by-side table and a PNG plot.

Kept out of the pure core on purpose (``autoscaler/`` does no file I/O). Trace CSV format:
a header ``t_seconds,rps`` then one row per bin; ``t_seconds`` is the bin's start (any unit of
seconds, increasing; any bin width, also irregular), ``rps`` its mean request rate. Replay
holds each value for its bin; the last bin keeps the previous bin's width.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoscaler.replay import ReplayResult
from autoscaler.service_model import Trace
from kongstack.core.errors import ConfigError
from kongstack.core.extras import requires_extra
from kongstack.core.files import write_atomic


def read_trace(path: str | Path, *, name: str | None = None) -> Trace:
    file = Path(path)
    starts: list[float] = []
    rates: list[float] = []
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            if header[:2] != ["t_seconds", "rps"]:
                raise ConfigError(f"{file}: header must be 't_seconds,rps', got {header}")
            for line, row in enumerate(reader, start=2):
                try:
                    starts.append(float(row["t_seconds"]))
                    rates.append(float(row["rps"]))
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{file}:{line}: not a number ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read trace ({exc.strerror})") from exc
    try:
        return Trace(name or file.stem, tuple(starts), tuple(rates))
    except ValueError as exc:
        raise ConfigError(f"{file}: {exc}") from exc


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


_COLUMNS = (
    ("slo_violation_seconds", "SLO-violation s", "{:,.0f}"),
    ("dropped_percent", "dropped %", "{:.3f}"),
    ("instance_seconds", "instance-s", "{:,.0f}"),
    ("x_oracle", "x oracle", "{:.3f}"),
    ("x_oracle_tick", "x oracle/tick", "{:.3f}"),
    ("scale_actions", "actions", "{:,.0f}"),
    ("reversals", "reversals", "{:,.0f}"),
    ("load_steps", "load steps", "{:,}"),
    ("reaction_median_seconds", "reaction median s", "{:.0f}"),
    ("reaction_max_seconds", "reaction max s", "{:.0f}"),
    ("steps_not_met", f"steps not met in {1800}s", "{:,}"),
    ("learned_capacity_rps_at_1800s", "learned capacity rps after 1800 s", "{:.1f}"),
    ("learned_capacity_rps", "learned capacity rps at the end", "{:.1f}"),
)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table, one column per configuration (side by side)."""
    names = [str(r["name"]) for r in rows]
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, label, fmt in _COLUMNS:
        cells = []
        for row in rows:
            value = row.get(key)
            cells.append("—" if value is None else fmt.format(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_png(
    path: str | Path,
    title: str,
    demand: Sequence[float],
    results: Sequence[ReplayResult],
    *,
    capacity_rps: float,
    max_points: int = 4000,
) -> None:
    """Load (left axis, rps) and instance counts per configuration (right axis) over time."""
    with requires_extra("analysis", "the replay chart (or pass --no-plot)"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    step = max(1, len(demand) // max_points)
    hours = len(demand) >= 3 * 3600
    scale = 3600.0 if hours else 60.0
    xs = [t / scale for t in range(0, len(demand), step)]
    fig, left = plt.subplots(figsize=(12, 5), dpi=100)
    load = [max(demand[t : t + step]) for t in range(0, len(demand), step)]
    left.fill_between(xs, load, step="post", color="0.85", label="offered load (rps)")
    left.set_ylabel("offered load (rps)")
    left.set_xlabel("hours" if hours else "minutes")
    right = left.twinx()
    for result in results:
        counts = [max(result.active[t : t + step]) for t in range(0, len(result.active), step)]
        right.step(xs, counts, where="post", linewidth=1.2, label=f"{result.name} instances")
    right.set_ylabel(f"instances ({capacity_rps:g} rps each at 100 %)")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(handles, labels, loc="upper left", fontsize="small")
    left.set_title(title)
    fig.tight_layout()
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(file)
    plt.close(fig)

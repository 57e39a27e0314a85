"""Write the two shipped synthetic traces (deterministic; rerun to regenerate).

* ``steps.csv``: 3 h in 10 s bins; flat levels joined by sudden steps up and down, to measure
  reaction time to a load step.
* ``diurnal_flash.csv``: 24 h in 60 s bins; a day/night cycle with Poisson-like noise and a
  flash crowd at 20:00 (x5 within 2 minutes, decaying over 40 minutes).

    .venv/bin/python benchmarks/traces/generate.py
"""

from __future__ import annotations

import math
import random
from pathlib import Path

HERE = Path(__file__).parent
STEPS = [(0, 100), (1200, 400), (2400, 150), (3600, 800), (4800, 300), (6000, 1200), (8400, 200)]


def steps() -> list[tuple[int, float]]:
    rows = []
    for t in range(0, 3 * 3600, 10):
        level = [rate for start, rate in STEPS if start <= t][-1]
        rows.append((t, float(level)))
    return rows


def diurnal_flash(seed: int = 7) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    rows = []
    for t in range(0, 24 * 3600, 60):
        hour = t / 3600
        day = 0.5 - 0.5 * math.cos(2 * math.pi * (hour - 3) / 24)  # trough 03:00, peak 15:00
        base = 120 + 480 * day
        flash = 0.0
        if 20 <= hour:
            minutes = (hour - 20) * 60
            rise = min(1.0, minutes / 2)
            flash = 4 * base * rise * math.exp(-max(0.0, minutes - 2) / 40)
        mean = base + flash
        noisy = max(0.0, rng.gauss(mean, math.sqrt(mean * 60) / 60 * 4))
        rows.append((t, round(noisy, 4)))
    return rows


def write(name: str, rows: list[tuple[int, float]]) -> None:
    lines = ["t_seconds,rps", *(f"{t},{r:g}" for t, r in rows)]
    (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write("steps.csv", steps())
    write("diurnal_flash.csv", diurnal_flash())

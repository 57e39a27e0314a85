"""Benchmark: what the base install and the full install (every extra) cost, and that two
fresh installs from requirements.lock are identical.

Each install is a new venv with ``pip install -c requirements.lock .[EXTRAS]`` (pip's cache warm:
this measures resolution and unpacking, not the network). Prints per install: wall time,
distributions, size of site-packages, and ``pip freeze`` equality of the two base installs.

Run: .venv/bin/python benchmarks/install.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


def install(where: Path, extras: str) -> tuple[float, list[str], int]:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    started = time.monotonic()
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(LOCK), target],
                   check=True, timeout=1800, capture_output=True)
    elapsed = time.monotonic() - started
    freeze = subprocess.run([str(python), "-m", "pip", "freeze", "--exclude", "kongstack"],
                            check=True, capture_output=True, text=True, timeout=120)
    site = next((where / "lib").glob("python3*/site-packages"))
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    return elapsed, freeze.stdout.splitlines(), size


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kongstack-install-") as tmp:
        rows = []
        freezes = {}
        for label, extras in (("base", ""), ("base again", ""),
                              ("all extras", "azure,analysis,api")):
            seconds, freeze, size = install(Path(tmp) / label.replace(" ", "-"), extras)
            freezes[label] = freeze
            rows.append((label, seconds, len(freeze), size))
    print(f"{'install':<12} {'seconds':>8} {'packages':>9} {'site-packages MiB':>18}")
    for label, seconds, count, size in rows:
        print(f"{label:<12} {seconds:8.1f} {count:9d} {size / 2**20:18.0f}")
    same = freezes["base"] == freezes["base again"]
    print(f"two fresh base installs: pip freeze {'identical' if same else 'DIFFERENT'}")
    base, full = rows[0], rows[2]
    print(f"base / all extras: {base[2] / full[2]:.2f}x packages, {base[3] / full[3]:.2f}x size")
    print("command: .venv/bin/python benchmarks/install.py")


if __name__ == "__main__":
    main()

"""Benchmark: how long the ``kongstack`` CLI takes to answer, as a user runs it (a new process
each time, wall clock): ``--help``, ``--version``, ``status --help`` and, when the demo runs
(``make demo`` / ``kongstack up``), ``status --json`` against it. Also bare ``python -c pass``
and ``import prefect`` in the same run, so the numbers can be read as ratios on a busy machine.

Prints min / median / max wall time of N runs per command, and the median CPU time (user +
system, from the OS's accounting of each child): on a shared, loaded machine the wall time
stretches with the load while the CPU time stays close to what a quiet machine gives.

Run: .venv/bin/python benchmarks/cli.py [--runs 10] [--no-status] [--baseline OTHER/kongstack]
(``--baseline``: another checkout's ``kongstack`` script, e.g. the eager CLI before the lazy one,
timed in the same run for a before/after ratio: its ``--help`` and, with the demo running,
its ``status --json``.)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KONGSTACK = Path(sys.executable).with_name("kongstack")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], runs: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU seconds of ``runs`` fresh processes (after one warm-up: the file cache)."""
    subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=120)
    times, cpu, code = [], [], 0
    for _ in range(runs):
        cpu_before, started = _children_cpu(), time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=120)
        times.append(time.perf_counter() - started)
        cpu.append(_children_cpu() - cpu_before)
        code = done.returncode
    return times, cpu, code


def demo_running() -> bool:
    done = subprocess.run([str(KONGSTACK), "health", "--json"], cwd=ROOT, capture_output=True,
                          timeout=60)
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-status", action="store_true", help="skip status --json")
    parser.add_argument("--baseline", help="another kongstack executable to time --help of")
    args = parser.parse_args()
    cases: list[tuple[str, list[str]]] = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import prefect'", [sys.executable, "-c", "import prefect"]),
        ("kongstack --help", [str(KONGSTACK), "--help"]),
        ("kongstack --version", [str(KONGSTACK), "--version"]),
        ("kongstack status --help", [str(KONGSTACK), "status", "--help"]),
    ]
    if args.baseline:
        cases.append(("baseline kongstack --help", [args.baseline, "--help"]))
    status = not args.no_status and demo_running()
    if status:
        cases.append(("kongstack status --json", [str(KONGSTACK), "status", "--json"]))
        if args.baseline:
            cases.append(("baseline status --json", [args.baseline, "status", "--json"]))
    elif not args.no_status:
        print("status --json: skipped, the demo is not running (make demo)")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'command':<30} {'min s':>7} {'median s':>9} {'max s':>7} {'CPU s':>7}  exit")
    medians, cpus = {}, {}
    for label, argv in cases:
        times, cpu, code = timed(argv, args.runs)
        medians[label], cpus[label] = statistics.median(times), statistics.median(cpu)
        print(f"{label:<30} {min(times):7.3f} {medians[label]:9.3f} {max(times):7.3f} "
              f"{cpus[label]:7.3f}  {code}")
    prefect, helps = cases[1][0], "kongstack --help"
    print(f"kongstack --help / import prefect: wall {medians[helps] / medians[prefect]:.2f}x, "
          f"CPU {cpus[helps] / cpus[prefect]:.2f}x")
    if args.baseline:
        base = "baseline kongstack --help"
        print(f"kongstack --help / baseline: wall {medians[helps] / medians[base]:.2f}x, "
              f"CPU {cpus[helps] / cpus[base]:.2f}x")
    if status:
        st, bare = "kongstack status --json", cases[0][0]
        for other in (prefect, bare, *(["baseline status --json"] if args.baseline else [])):
            print(f"status --json / {other}: wall {medians[st] / medians[other]:.2f}x, "
                  f"CPU {cpus[st] / cpus[other]:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"command: .venv/bin/python benchmarks/cli.py --runs {args.runs}"
          + (f" --baseline {args.baseline}" if args.baseline else "")
          + (" --no-status" if args.no_status else ""))


if __name__ == "__main__":
    main()

"""What an alias bomb costs the one YAML door, against reading the shipped stack file.

    .venv/bin/python benchmarks/yaml_bombs.py [--repeat 20]

For each document: the median wall time of ``parse_yaml`` (refusal or success) over
``--repeat`` runs, and the peak memory traced (tracemalloc) in one run. The bombs are ~700-byte
documents that expand to 9**9 = 387 million nodes; before issue 16 two of them took 31 s of CPU
and 2.3 GB. The ratio to the stack file (measured in the same run) is the meaningful number.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kongstack.core.errors import ConfigError  # noqa: E402
from kongstack.core.settings import REPO_ROOT  # noqa: E402
from kongstack.core.yamlfile import parse_yaml  # noqa: E402


def bomb(levels: int = 9, fan_out: int = 9, *, mapping: bool = False) -> str:
    lines = ["a0: &a0 {x: lol}" if mapping else 'a0: &a0 ["lol"]']
    for n in range(1, levels + 1):
        items = [f"k{i}: *a{n - 1}" if mapping else f"*a{n - 1}" for i in range(fan_out)]
        open_, close = "{}" if mapping else "[]"
        lines.append(f"a{n}: &a{n} {open_}{', '.join(items)}{close}")
    return "\n".join(lines) + "\n"


def measure(text: str, repeat: int) -> tuple[float, float, str]:
    """(median seconds, peak MiB, outcome)."""
    times = []
    outcome = "accepted"
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            parse_yaml(text, what="document", origin="benchmark")
        except ConfigError as exc:
            outcome = "refused: " + str(exc).split("refused: ", 1)[-1][:60]
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    try:
        parse_yaml(text, what="document", origin="benchmark")
    except ConfigError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    docs = {
        "stack file (deployments/stack.yaml)": (REPO_ROOT / "deployments/stack.yaml").read_text(),
        "list bomb, 9 levels of 9": bomb(),
        "mapping bomb, 9 levels of 9": bomb(mapping=True),
    }
    print(f"python {platform.python_version()}, {platform.machine()}, repeat {args.repeat}")
    base = None
    for name, text in docs.items():
        median, peak, outcome = measure(text, args.repeat)
        base = base or median
        print(f"{name:38s} {len(text):6d} B  median {median * 1000:7.2f} ms "
              f"({median / base:5.2f}x the stack file)  peak {peak:6.2f} MiB  {outcome}")
    print(f"reproduce: .venv/bin/python benchmarks/yaml_bombs.py --repeat {args.repeat}")


if __name__ == "__main__":
    main()

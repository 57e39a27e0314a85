"""Benchmark: what the namespace test hosts (tests/support/multihost.py) cost.

Per repetition: a lab of --hosts hosts brought up (network namespace + veth + sshd + Podman
service each) and torn down; the first docker SDK connection over SSH; a stock API container
run through it until it serves on the host's address; a cut host's SDK call failing (bounded
client, 3 s timeout) and the link restored until sshd answers again. Once: loading the stock
image into a host's own store with ``podman save | podman load``, the alternative to the
read-only additional image store the lab uses.

Run (root): .venv/bin/python benchmarks/netns_hosts.py [--repeat 5] [--hosts 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from kongstack.core.procs import wait_until  # noqa: E402
from tests.support.multihost import netns_lab  # noqa: E402
from tests.support.netns import unmount_under  # noqa: E402

IMAGE = "localhost/kongstack-stock-api:latest"


def serving(address: str, port: int) -> bool:
    try:
        return httpx.get(f"http://{address}:{port}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def once(hosts: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with netns_lab(hosts) as lab:
        up = time.perf_counter() - t0
        per_host = [lab.timings[h.name] for h in lab.hosts]
        host = lab.hosts[-1]
        t = time.perf_counter()
        # The connection timed is bounded by the client's default 10 s (a 3 s bound here
        # failed the whole run at load 14, where the first connection took longer).
        client = host.docker_client()
        connect = time.perf_counter() - t
        t = time.perf_counter()
        client.containers.run(host.image, detach=True, network_mode="host",
                              environment={"PORT": "18150"})
        wait_until(lambda: serving(host.address, 18150), timeout=60, what="the API")
        serve = time.perf_counter() - t
        bounded = host.docker_client(timeout=3)  # the bounded client the cut row measures
        host.cut()
        t = time.perf_counter()
        try:
            bounded.containers.list()
            raise RuntimeError("a call to a cut-off host succeeded")
        except Exception:  # any engine error is the expected outcome
            fail = time.perf_counter() - t
        t = time.perf_counter()
        host.restore()
        restore = time.perf_counter() - t
        t_down = time.perf_counter()
    down = time.perf_counter() - t_down
    return {"lab_up": up, "host_up_max": max(per_host), "host_up_median":
            statistics.median(per_host), "sdk_connect": connect, "run_to_serving": serve,
            "cut_call_fails": fail, "restore": restore, "teardown": down}


def save_load_seconds() -> float:
    with tempfile.TemporaryDirectory(prefix="kongstack-saveload-", dir="/var/tmp") as tmp:
        t = time.perf_counter()
        subprocess.run(f"podman save {IMAGE} | podman --root {tmp}/graph --runroot {tmp}/run "
                       "load -q", shell=True, check=True, capture_output=True, timeout=600)
        took = time.perf_counter() - t
        unmount_under(Path(tmp))  # the store's overlay mount, before the directory goes
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=3)
    args = parser.parse_args()
    runs = [once(args.hosts) for _ in range(args.repeat)]
    print(f"| measure ({args.repeat} repetitions, {args.hosts} hosts) | median | max |")
    print("|---|---:|---:|")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"| {key} | {statistics.median(values):.2f} s | {max(values):.2f} s |")
    print(f"| image into one host's own store (podman save \\| load) | {save_load_seconds():.2f} s "
          "| (once) |")
    print(f"command: .venv/bin/python benchmarks/netns_hosts.py --repeat {args.repeat} "
          f"--hosts {args.hosts}")


if __name__ == "__main__":
    main()

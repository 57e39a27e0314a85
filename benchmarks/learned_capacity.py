"""Learned capacity on the live demo against the true per-instance capacity (issue 12).

Needs the demo running (``make demo`` / ``kongstack up``; the same environment, so the same
ports, stack file and autoscale config). Two phases:

1. **Learn.** Varied load through the gateway, as ``kongstack load`` sends it (open loop,
   ``/api/stocks``, the first read-only consumer's key): each rate of ``--rates`` held for
   ``--hold`` seconds. Every 30 s it prints the pool size and the estimate the autoscale tick
   keeps in its memory block (``capacity_rps``: requests/s one instance serves at 100 % CPU,
   its sample count, relative error and confidence).
2. **Truth.** The load stopped, one ready instance is driven directly (closed loop,
   ``--clients`` keep-alive clients, the same path) for ``--truth-seconds`` at each client
   count, while its CPU is read from the instance driver (the numbers the tick learns from:
   Docker-style CPU %, 100 = one CPU). The instance is one gunicorn worker process (Python's
   GIL: at most about one CPU), so its saturated throughput is the rate at 100 % CPU, the
   learner's definition. On a shared machine the instance may not get a whole CPU while
   saturated; the script therefore also prints requests per CPU-second (rps / CPU% x 100),
   the same quantity extrapolated to 100 %, and compares the learned value with that.
   Then the same closed loop through the gateway (with the key, over every ready instance):
   requests per CPU-second for the traffic the learner saw (the gateway's connections and
   headers), which is the learner's own quantity.

Run (with the demo's environment):
    .venv/bin/python benchmarks/learned_capacity.py [--rates 60,120,200,280,160,90,240]
        [--hold 150] [--clients 4,16] [--truth-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kongstack.cli.load import LoadGenerator  # noqa: E402
from kongstack.core.settings import LocalSettings  # noqa: E402


def learned(block: str) -> dict[str, Any]:
    """The estimate the tick memory holds now (empty when none yet)."""
    from tasks.tick.memory import read_memory

    capacity = read_memory(block).history.capacity
    if capacity is None:
        return {}
    return {"capacity_rps": capacity.capacity_rps, "samples": capacity.samples,
            "relative_error": capacity.relative_error, "confidence": capacity.confidence,
            "slo_rps": capacity.slo_rps, "rejected": capacity.rejected,
            "resets": capacity.resets}


def learn_phase(url: str, key: str, rates: list[float], hold: float, block: str,
                driver: Any) -> dict[str, Any]:
    from tasks.instances.base import InstanceState

    start = time.monotonic()
    last: dict[str, Any] = {}
    for rate in rates:
        gen = LoadGenerator(url=url, rps=rate, duration=hold, headers={"apikey": key},
                            max_in_flight=256)
        thread = threading.Thread(target=gen.run, daemon=True)
        thread.start()
        began = time.monotonic()
        while thread.is_alive():
            thread.join(timeout=max(0.0, min(30.0, began + hold + 30 - time.monotonic())))
            ready = sum(1 for i in driver.list() if i.state is InstanceState.READY)
            last = learned(block)
            print(f"t={time.monotonic() - start:6.0f}s offered {rate:5.0f} rps, {ready} ready: "
                  f"{fmt_estimate(last)}", flush=True)
            if time.monotonic() > began + hold + 60:
                gen.stop.set()
    return last


def fmt_estimate(est: dict[str, Any]) -> str:
    if not est or est.get("capacity_rps") is None:
        return f"no estimate yet ({est.get('samples', 0) if est else 0} samples)"
    err = est["relative_error"]
    return (f"learned {est['capacity_rps']:.1f} rps/instance, {est['samples']} samples, "
            f"rel. error {err if err is None else round(err, 3)}, confidence "
            f"{est['confidence']:.2f}")


def truth(driver: Any, instances: list[Any], url: str, headers: dict[str, str], clients: int,
          seconds: float) -> dict[str, float]:
    """Closed loop on ``url`` (one instance directly, or the gateway); the CPU of
    ``instances`` (summed) from the driver over the same interval."""
    ok = [0] * clients
    stop = threading.Event()

    def client(i: int) -> None:
        with httpx.Client(timeout=10, headers=headers) as http:
            while not stop.is_set():
                try:
                    if http.get(url).status_code == 200:
                        ok[i] += 1
                except httpx.HTTPError:
                    pass

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(3)  # warm: connections open, the instance busy (not a readiness wait)
    base, t0 = sum(ok), time.monotonic()
    cpus: list[float] = []
    while time.monotonic() - t0 < seconds:
        readings = [driver.stats(i.id).cpu_percent for i in instances]
        if all(r is not None for r in readings):
            cpus.append(sum(r for r in readings if r is not None))
    served = sum(ok) - base
    elapsed = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(timeout=15)
    rps = served / elapsed / len(instances)
    cpu = statistics.mean(cpus) / len(instances) if cpus else float("nan")
    return {"clients": clients, "rps": rps, "cpu_percent": cpu,
            "rps_per_cpu": rps / cpu * 100 if cpus and cpu > 0 else float("nan")}


def show(runs: list[dict[str, float]]) -> None:
    for r in runs:
        print(f"  {r['clients']:3d} clients: {r['rps']:.1f} rps per instance at "
              f"{r['cpu_percent']:.0f} % CPU -> {r['rps_per_cpu']:.1f} requests per CPU-second",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="60,120,200,280,160,90,240")
    parser.add_argument("--hold", type=float, default=150.0)
    parser.add_argument("--clients", default="4,16")
    parser.add_argument("--truth-seconds", type=float, default=30.0)
    parser.add_argument("--skip-learn", action="store_true")
    parser.add_argument("--config", type=Path, default=None, help="stack file (for the key)")
    args = parser.parse_args()

    from kongstack.cli.localprefect import use_local_server_if_running
    from tasks.tick.config import load_autoscale_config
    from tasks.tick.pool import pool_clients

    settings = LocalSettings()
    if not use_local_server_if_running(settings):
        raise SystemExit("the demo's Prefect server is not running (make demo first)")
    config = load_autoscale_config().config
    if config.policy.target_rps_per_instance is not None:
        raise SystemExit("the policy sets target_rps_per_instance: nothing is learned")
    with pool_clients(config.pool) as clients:
        run(args, settings, config, clients.driver)


def run(args: argparse.Namespace, settings: LocalSettings, config: Any, driver: Any) -> None:
    from kongstack.cli.keys import consumer_key
    from kongstack.core.topology import load_topology
    from tasks.instances.base import InstanceState

    _, key = consumer_key(load_topology(args.config), None)
    url = f"http://{settings.host}:{settings.gateway_port}"
    print(f"load average {os.getloadavg()}; stack {config.pool.stack}; block "
          f"{config.memory_block}", flush=True)
    est = learned(config.memory_block)
    if not args.skip_learn:
        est = learn_phase(url, key, [float(r) for r in args.rates.split(",")], args.hold,
                          config.memory_block, driver)
    ready = [i for i in driver.list() if i.state is InstanceState.READY]
    if not ready:
        raise SystemExit("no ready instance to measure")
    instance = ready[0]
    print(f"truth on {instance.name} ({instance.address}); load average {os.getloadavg()}",
          flush=True)
    runs = [truth(driver, [instance], f"http://{instance.address}/api/stocks", {}, int(c),
                  args.truth_seconds) for c in args.clients.split(",")]
    show(runs)
    best = max(runs, key=lambda r: r["rps"])
    # The same quantity for the traffic the learner saw: through the gateway, with the key,
    # spread over every ready instance (per instance: rate / ready, CPU averaged).
    print(f"truth through the gateway on {len(ready)} ready instance(s)", flush=True)
    via = [truth(driver, ready, f"{url}/api/stocks", {"apikey": key}, int(c),
                 args.truth_seconds) for c in args.clients.split(",")]
    show(via)
    print(f"learned: {fmt_estimate(est)}")
    if est.get("capacity_rps"):
        for label, true in (("saturated throughput, direct", best["rps"]),
                            ("requests per CPU-second, direct", best["rps_per_cpu"]),
                            *((f"requests per CPU-second via the gateway, {r['clients']} clients",
                               r["rps_per_cpu"]) for r in via)):
            print(f"learned / true ({label} {true:.1f}): {est['capacity_rps'] / true:.3f}")
    print(f"load average {os.getloadavg()}. Reproduce: .venv/bin/python "
          f"benchmarks/learned_capacity.py --rates {args.rates} --hold {args.hold:g} "
          f"--clients {args.clients} --truth-seconds {args.truth_seconds:g}")


if __name__ == "__main__":
    main()

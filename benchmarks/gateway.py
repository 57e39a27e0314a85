"""Gateway benchmark: Kong reconcile cost, target changes under load, gateway overhead.

1. Kong (the Admin API double from tests/doubles, real HTTP on loopback): requests and wall
   time to apply the full stack configuration to an empty gateway and to re-apply it
   unchanged (expected: reads only, 0 writes); DB mode, DB-less, and 20 % injected faults.
2. The local gateway (nginx + Lua, real, loopback): 20 scale events (add, drain, remove a
   target) under a steady paced load from 8 client threads that never retry, once with
   kept-alive connections and once with a new connection per request. Every request's
   outcome is counted; the time each change takes to be in effect is measured, and the
   nginx master, its worker and the configuration generation are checked to be unchanged
   (no reload, no restart).
3. Gateway overhead at 500 req/s with key-auth and rate limiting on: the same paced load
   sent directly to an instance and through the gateway, alternating phases in one run; and
   the gateway's own account per request ($request_time - $upstream_response_time).

Run:  .venv/bin/python benchmarks/gateway.py [--output FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kongstack.core.procs import Daemon, free_port, port_open  # noqa: E402
from tasks.gateway.desired import (  # noqa: E402
    ConsumerConfig,
    GatewayStackConfig,
    build_gateway_state,
)
from tasks.gateway.kong.client import KongAdminClient  # noqa: E402
from tasks.gateway.kong.sync import KongGateway  # noqa: E402
from tasks.gateway.nginx import NginxGateway  # noqa: E402
from tasks.gateway.nginx.server import _children  # noqa: E402
from tests.doubles.kong_server import Faults, kong_double  # noqa: E402
from tests.gateway.backends import Backend, backends  # noqa: E402
from tests.gateway.load import SteadyLoad  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/gateway.py"
KEY = "bench-key-1"


def _config(limit: int = 1_000_000) -> GatewayStackConfig:
    return GatewayStackConfig(
        consumers=(ConsumerConfig(username="reader", key=SecretStr(KEY), access="read",
                                  rate_limit_per_minute=limit),
                   ConsumerConfig(username="writer", key=SecretStr(f"{KEY}-w"),
                                  access="write")),
        log_endpoint="http://127.0.0.1:9/logs",  # type: ignore[arg-type]
        rate_limit_per_minute=limit)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- 1. Kong reconcile ------------------------------------------------------------------------

def bench_kong(*, dbless: bool, failure_rate: float, runs: int) -> dict[str, float]:
    desired = build_gateway_state(_config())
    rows: list[dict[str, float]] = []
    for seed in range(runs):
        faults = Faults(failure_rate=failure_rate, seed=seed + 1)
        with kong_double(dbless=dbless, faults=faults) as kong:
            client = KongAdminClient(base_url=kong.url, backoff_initial=0.01, backoff_max=0.1)
            gateway = KongGateway(client=client)
            t0 = time.perf_counter()
            first = gateway.apply(desired)
            t1 = time.perf_counter()
            faults.failure_rate = 0.0
            again = gateway.apply(desired)
            t2 = time.perf_counter()
            client.close()
        rows.append({"ops": len(first.operations), "reads": first.reads,
                     "writes": first.writes, "ms": (t1 - t0) * 1000,
                     "re_reads": again.reads, "re_writes": again.writes,
                     "re_ms": (t2 - t1) * 1000})
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


# -- 2. scale events under load ---------------------------------------------------------------

def _events(count: int, pool: list[Backend]) -> Iterator[tuple[str, Backend]]:
    """add a spare, drain the oldest serving target, remove it (it becomes a spare)."""
    serving, spare = list(pool[:3]), list(pool[3:])
    draining: Backend | None = None
    for n in range(count):
        step = n % 3
        if step == 0:
            added = spare.pop(0)
            serving.append(added)
            yield "add", added
        elif step == 1:
            draining = serving.pop(0)
            yield "drain", draining
        else:
            assert draining is not None
            spare.append(draining)
            yield "remove", draining


def bench_scale_events(events: int = 20, *, keepalive: bool, rate: float = 200.0,
                       threads: int = 8) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, backends(5) as pool:
        gateway = NginxGateway(prefix=Path(tmp) / "nginx", port=free_port(),
                               status_port=free_port())
        try:
            gateway.apply(build_gateway_state(_config(), [b.address for b in pool[:3]]))
            master = gateway.server.pid()
            assert master is not None
            workers, generation = _children(master), gateway.server.served_generation()
            changes: list[tuple[str, Backend, float, float]] = []
            # When the balancer answered each change's PUT: the change is in effect from
            # then on; the call returns once the targets are also persisted (fsync'd).
            in_effect: list[float] = []
            admin = gateway._admin

            def timed_admin(method: str, path: str = "",
                            body: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
                answer = admin(method, path, body)
                if method == "PUT" and not path:
                    in_effect.append(time.monotonic())
                return answer

            gateway._admin = timed_admin  # type: ignore[method-assign]
            with SteadyLoad(f"{gateway.url}/api/bench", headers={"apikey": KEY},
                            threads=threads, max_requests=1_000_000, max_seconds=300,
                            keepalive=keepalive, rate=rate) as load:
                load.wait_for(int(rate))
                t_start, n_start = time.monotonic(), load.result.total
                call_ms: list[float] = []
                for kind, backend in _events(events, pool):
                    t0 = time.monotonic()
                    {"add": gateway.add_target, "drain": gateway.drain_target,
                     "remove": gateway.remove_target}[kind](backend.address)
                    call_ms.append((time.monotonic() - t0) * 1000)
                    changes.append((kind, backend, t0, in_effect[-1]))
                    load.wait_for(load.result.total + int(rate / 2))
                elapsed = time.monotonic() - t_start
                served = load.result.total - n_start
            unchanged = (gateway.server.pid() == master and _children(master) == workers
                         and gateway.server.served_generation() == generation)
        finally:
            gateway.stop()
    result = load.result
    answered = result.answered
    late = 0  # requests sent to a drained or removed target after its change took effect
    first_ms: list[float] = []  # change started -> first request sent to an added target
    for kind, backend, t0, t1 in changes:
        if kind in ("drain", "remove"):
            readded = min((c[2] for c in changes if c[1] is backend and c[0] == "add"
                           and c[2] > t1), default=float("inf"))
            late += sum(1 for sent, port in answered
                        if port == backend.port and t1 < sent < readded)
        else:
            sends = [sent for sent, port in answered if port == backend.port and sent >= t0]
            if sends:
                first_ms.append((min(sends) - t0) * 1000)
    effect_ms = [(t1 - t0) * 1000 for _, _, t0, t1 in changes]
    return {"events": events, "requests": result.total, "failed": result.failed,
            "rps": served / elapsed, "late": late,
            "call_median_ms": statistics.median(call_ms), "call_max_ms": max(call_ms),
            "effect_median_ms": statistics.median(effect_ms), "effect_max_ms": max(effect_ms),
            "first_median_ms": statistics.median(first_ms) if first_ms else float("nan"),
            "first_max_ms": max(first_ms) if first_ms else float("nan"),
            "reloads": 0 if unchanged else 1,
            "p50_ms": _pct(result.latencies, 0.5) * 1000,
            "p99_ms": _pct(result.latencies, 0.99) * 1000}


# -- 3. overhead at 500 req/s -----------------------------------------------------------------

def _nginx(workdir: Path, name: str, body: str) -> tuple[Daemon, int]:
    port = free_port()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    conf = workdir / f"{name}.conf"
    conf.write_text(
        f"worker_processes 1; pid {workdir}/{name}.pid; daemon off;\n"
        f"error_log {workdir}/logs/{name}.err warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; client_body_temp_path {workdir}/body;\n"
        f"  proxy_temp_path {workdir}/proxy;\n"
        f"  server {{ listen 127.0.0.1:{port}; keepalive_requests 100000;\n"
        f"    {body.replace('PORT', str(port))} }} }}\n")
    daemon = Daemon(name=name, run_dir=workdir)
    daemon.start(["nginx", "-p", str(workdir), "-c", str(conf)],
                 ready=lambda: port_open("127.0.0.1", port),
                 log_file=workdir / "logs" / f"{name}.out", timeout=15)
    return daemon, port


@contextmanager
def static_instance(workdir: Path) -> Iterator[str]:
    """The fastest possible instance (an nginx answering a fixed JSON body), so that what is
    measured through the gateway is the gateway."""
    daemon, port = _nginx(workdir, "instance", "location / { default_type application/json; "
                          "return 200 '{\"backend\":PORT}'; }")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        daemon.stop(grace=5)


@contextmanager
def plain_proxy(workdir: Path, instance: str) -> Iterator[str]:
    """nginx proxying to the instance with no Lua, no key, no limit: the cost of the extra
    process hop alone."""
    daemon, port = _nginx(workdir, "plain", (
        "location / { proxy_pass http://" + instance + "; proxy_http_version 1.1; "
        'proxy_set_header Connection ""; }'))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        daemon.stop(grace=5)


def _phase(url: str, *, rate: float | None, seconds: float, threads: int,
           count: int | None = None) -> list[float]:
    count = count or int((rate or 0) * seconds)
    with SteadyLoad(url, headers={"apikey": KEY}, threads=threads, rate=rate,
                    max_requests=count, max_seconds=seconds + 60) as load:
        load.wait_for(count, timeout=seconds + 60)
    if load.result.failed:
        raise RuntimeError(f"{load.result.failed} requests failed: {load.result.errors[:2]}"
                           f" {load.result.statuses}")
    return load.result.latencies


def bench_overhead(*, rate: float = 500.0, seconds: float = 10.0, rounds: int = 2,
                   threads: int = 8) -> dict[str, dict[str, float]]:
    """Paced 500 req/s and one sequential client, each against the instance directly, a
    plain nginx proxy and the gateway, in alternating phases of one run."""
    with tempfile.TemporaryDirectory() as tmp, static_instance(Path(tmp)) as instance, \
            plain_proxy(Path(tmp), instance) as plain:
        gateway = NginxGateway(prefix=Path(tmp) / "gw", port=free_port(),
                               status_port=free_port())
        try:
            gateway.apply(build_gateway_state(_config(limit=1_000_000), [instance]))
            urls = {"direct": f"http://{instance}/api/x", "plain": f"http://{plain}/api/x",
                    "gateway": f"{gateway.url}/api/x"}
            paced: dict[str, list[float]] = {k: [] for k in urls}
            serial: dict[str, list[float]] = {k: [] for k in urls}
            for url in urls.values():
                _phase(url, rate=None, seconds=5, threads=1, count=200)  # warm up
            log_start = gateway.access_log.stat().st_size
            for _ in range(rounds):  # alternate, so drift of the shared machine hits all
                for name, url in urls.items():
                    paced[name] += _phase(url, rate=rate, seconds=seconds, threads=threads)
            with open(gateway.access_log, "rb") as log:
                log.seek(log_start)
                records = [json.loads(line) for line in log.read().splitlines()]
            for _ in range(rounds):
                for name, url in urls.items():
                    serial[name] += _phase(url, rate=None, seconds=30, threads=1, count=2000)
        finally:
            gateway.stop()
    added = [(float(r["request_time_s"]) - float(r["upstream_response_time"])) * 1000
             for r in records if r["status"] == 200]
    out: dict[str, dict[str, float]] = {}
    for name in urls:
        out[name] = {"p50": _pct(paced[name], 0.5) * 1000, "p90": _pct(paced[name], 0.9) * 1000,
                     "p99": _pct(paced[name], 0.99) * 1000,
                     "serial_mean": statistics.mean(serial[name]) * 1000,
                     "serial_p99": _pct(serial[name], 0.99) * 1000,
                     "requests": len(paced[name])}
    out["own"] = {"p50": _pct(added, 0.5), "p99": _pct(added, 0.99), "max": max(added),
                  "below_1ms": sum(1 for a in added if a < 0.5) / len(added),
                  "logged": len(added)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    lines = ["## Gateway", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: 2 "
             f"cores, shared/noisy (1-min load average {load_before:.1f} at the start); "
             "everything on loopback. Kong numbers are against the Admin API double "
             "(tests/doubles, real HTTP), so request counts are exact and times are the "
             "client's plus the double's overhead, not a real Kong's.", "",
             f"Command: `{COMMAND}` (median of {args.runs} runs per Kong row)", "",
             "| Kong apply (full stack: upstream, service, 2 routes, 2 consumers + keys + "
             "ACL groups, 8 plugins) | ops | reads | writes | ms | unchanged re-apply reads "
             "| writes | ms |",
             "|---|---|---|---|---|---|---|---|"]
    for label, dbless, rate in (("DB mode, empty gateway", False, 0.0),
                                ("DB-less (POST /config), empty gateway", True, 0.0),
                                ("DB mode, 20 % injected failures", False, 0.2)):
        r = bench_kong(dbless=dbless, failure_rate=rate, runs=args.runs)
        lines.append(f"| {label} | {r['ops']:.0f} | {r['reads']:.0f} | {r['writes']:.0f} | "
                     f"{r['ms']:.0f} | {r['re_reads']:.0f} | {r['re_writes']:.0f} | "
                     f"{r['re_ms']:.0f} |")
    kept = bench_scale_events(keepalive=True)
    fresh = bench_scale_events(keepalive=False)
    lines += ["", "| local gateway: 20 scale events (add / drain / remove a target) under a "
              "steady 200 req/s from 8 client threads that never retry | keep-alive | new "
              "connection per request |", "|---|---|---|"]
    rows = [("requests during the run", "requests", "{:.0f}"),
            ("failed requests (error status, lost or reset connection)", "failed", "{:.0f}"),
            ("throughput during the run, req/s", "rps", "{:.0f}"),
            ("request latency p50, ms", "p50_ms", "{:.1f}"),
            ("request latency p99, ms", "p99_ms", "{:.1f}"),
            ("target change in effect (the balancer answered its PUT with the new "
             "list), median ms", "effect_median_ms", "{:.1f}"),
            ("target change in effect, max ms", "effect_max_ms", "{:.1f}"),
            ("the change's call returns (targets also persisted: two fsync'd writes), "
             "median ms", "call_median_ms", "{:.1f}"),
            ("the change's call returns, max ms", "call_max_ms", "{:.1f}"),
            ("requests sent to a drained/removed target after its change took effect", "late",
             "{:.0f}"),
            ("change started → first request sent to an added target, median ms "
             "(bounded by the load's request spacing)", "first_median_ms", "{:.1f}"),
            ("change started → first request to an added target, max ms", "first_max_ms",
             "{:.1f}"),
            ("reloads or worker restarts during the run", "reloads", "{:.0f}")]
    for label, key, fmt in rows:
        lines.append(f"| {label} | {fmt.format(kept[key])} | {fmt.format(fresh[key])} |")
    over = bench_overhead()
    d, p, g, own = over["direct"], over["plain"], over["gateway"], over["own"]
    lines += ["", "| gateway overhead: key-auth + ACL + rate limiting on, a static instance "
              "behind | direct to the instance | plain nginx proxy (no Lua) | the gateway | "
              "gateway − direct |", "|---|---|---|---|---|"]
    for label, key in (("500 req/s paced (8 keep-alive threads, 2 × 10 s per side, "
                        "alternating): p50 ms", "p50"),
                       ("500 req/s paced: p90 ms", "p90"), ("500 req/s paced: p99 ms", "p99"),
                       ("one sequential keep-alive client (2 × 2,000 requests): mean ms",
                        "serial_mean"),
                       ("one sequential client: p99 ms", "serial_p99")):
        lines.append(f"| {label} | {d[key]:.2f} | {p[key]:.2f} | {g[key]:.2f} | "
                     f"{g[key] - d[key]:+.2f} |")
    lines.append(f"| the gateway's own account at 500 req/s ($request_time − "
                 f"$upstream_response_time, 1 ms resolution, {own['logged']:.0f} requests): "
                 f"p50 / p99 / max ms | | | {own['p50']:.0f} / {own['p99']:.0f} / "
                 f"{own['max']:.0f} ({own['below_1ms'] * 100:.0f} % under 1 ms) | |")
    load_after = os.getloadavg()[0]
    lines += [
        "",
        f"1-min load average at the end: {load_after:.1f}.",
        "",
        "Reading the numbers:",
        "- Kong: requests are counted by the client, every attempt included. An apply reads "
        "the seven owner-tagged collections (all pages, one page each here) plus the targets "
        "of each owned upstream; on an empty gateway it also GETs each name it is about to "
        "create and lists all plugins and all key-auth credentials once, to refuse taking "
        "over an untagged entity, plugin scope or key before any write. DB-less: the first "
        "write is refused (405, code 12), then one `GET /config` and one `POST /config`. "
        "20 % faults: 5xx answers and connections dropped before or after Kong applied the "
        "write; the extra requests are the retries, and the end state has no duplicate.",
        "- Scale events: targets live in a shared dictionary that the Lua balancer reads on "
        "every request; a change is one `PUT /kongstack/targets` on the loopback status "
        "port, whose answer is the list the balancer now holds, so it is in effect when "
        "that answer arrives: no request was sent to a drained or removed target "
        "afterwards. The call then persists the targets (state.json and targets.json, each "
        "written atomically and fsync'd) before it returns: on the shared disk that is most "
        "of a call's time and all of its outliers, and the change does not wait for it. "
        "The nginx master, its worker and the configuration generation were the same before "
        "and after the 20 events: nothing reloaded, so no kept-alive connection was closed "
        "(with the reload-per-change nginx this replaced, 14 of 3,992 keep-alive requests "
        "failed during a 6 → 3 scale-in).",
        "- Overhead: the instance is a static nginx answering a fixed body, so what the "
        "gateway adds is what is measured. The gateway's own clock (its access log) says "
        "what its processing adds; the client-side percentiles also include the extra "
        "process hop and the Python client, all on the same 2 shared cores: the plain "
        "nginx proxy column is that hop alone, so gateway − plain is the Lua request "
        "path (key-auth, ACL, rate limit, balancer, passive checks).",
        ""]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"written to {args.output}")


if __name__ == "__main__":
    main()

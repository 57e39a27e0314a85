"""``kongstack load``: a bounded, open-loop load generator against the local gateway.

Requests are *scheduled* at a fixed rate (open loop: a slow server does not slow the offered
load, as in real traffic), capped in count and time, to loopback only unless told otherwise.
Progress is shown live, with the autoscaler's pool size read from its node_exporter textfile.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import httpx
import typer

from kongstack.core.errors import ConfigError
from kongstack.core.settings import LocalSettings

MAX_RPS = 2000.0
MAX_DURATION_S = 3600.0
API_KEY_ENV = "KONGSTACK_API_KEY"


@dataclass
class LoadProgress:
    """Counts so far (a snapshot handed to the progress callback)."""

    elapsed_s: float
    scheduled: int
    ok: int
    failed: int
    skipped: int
    in_flight: int
    statuses: dict[str, int]
    p50_ms: float | None
    p95_ms: float | None
    recent_rps: float


@dataclass
class LoadReport:
    url: str
    rps: float
    duration_s: float
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    """Requests not sent because ``max_in_flight`` were already outstanding."""
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.ok + self.failed

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check_url(url: str, *, allow_remote: bool = False) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"url: {url!r} is not an http(s) URL")
    if not allow_remote:
        host = parts.hostname
        loopback = host == "localhost"
        try:
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        except ValueError:
            pass
        if not loopback:
            raise ConfigError(f"url: {host} is not loopback (pass --allow-remote to load it)")
    return url.rstrip("/")


class LoadGenerator:
    """Offer ``rps`` requests per second for ``duration`` seconds (or until ``stop`` is set)."""

    def __init__(self, *, url: str, rps: float, duration: float,
                 paths: Sequence[str] = ("/api/stocks",), timeout: float = 10.0,
                 max_in_flight: int = 256, headers: dict[str, str] | None = None,
                 allow_remote: bool = False) -> None:
        if not 0 < rps <= MAX_RPS:
            raise ConfigError(f"rps: {rps} must be in (0, {MAX_RPS:g}]")
        if not 0 < duration <= MAX_DURATION_S:
            raise ConfigError(f"duration: {duration} must be in (0, {MAX_DURATION_S:g}] seconds")
        if not paths or any(not p.startswith("/") for p in paths):
            raise ConfigError("paths: each must start with '/'")
        self.url = check_url(url, allow_remote=allow_remote)
        self.rps, self.duration, self.paths = rps, duration, list(paths)
        self.timeout, self.max_in_flight = timeout, max_in_flight
        self.headers = headers or {}
        self.stop = threading.Event()

    def run(self, on_progress: Callable[[LoadProgress], None] | None = None) -> LoadReport:
        return asyncio.run(self._run(on_progress))

    async def _run(self, on_progress: Callable[[LoadProgress], None] | None) -> LoadReport:
        report = LoadReport(url=self.url, rps=self.rps, duration_s=self.duration)
        limits = httpx.Limits(max_connections=self.max_in_flight,
                              max_keepalive_connections=self.max_in_flight)
        in_flight: set[asyncio.Task[None]] = set()
        window: list[float] = []  # completion times, for the recent rate
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout, limits=limits,
                                     headers=self.headers) as client:

            async def one(path: str) -> None:
                started = time.perf_counter()
                try:
                    # Never re-sent: a request the gateway loses is a failure, as it is for
                    # the many clients that do not retry.
                    response = await client.get(path)
                    key = str(response.status_code)
                    if response.status_code < 400:
                        report.ok += 1
                    else:
                        report.failed += 1
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                    report.failed += 1
                    report.errors[key] += 1
                report.statuses[key] += 1
                now = time.perf_counter()
                report.latencies_ms.append((now - started) * 1000)
                window.append(now)

            t0 = time.perf_counter()
            next_report = t0 + 1.0
            i = 0
            while not self.stop.is_set():
                due = t0 + i / self.rps
                if due - t0 >= self.duration:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(in_flight) >= self.max_in_flight:
                    report.skipped += 1
                else:
                    task = asyncio.create_task(one(self.paths[i % len(self.paths)]))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                i += 1
                if on_progress is not None and time.perf_counter() >= next_report:
                    next_report += 1.0
                    on_progress(self._progress(report, t0, i, len(in_flight), window))
            if in_flight:
                await asyncio.wait(in_flight, timeout=self.timeout + 1)
            if on_progress is not None:
                on_progress(self._progress(report, t0, i, len(in_flight), window))
        return report

    @staticmethod
    def _progress(report: LoadReport, t0: float, scheduled: int, in_flight: int,
                  window: list[float]) -> LoadProgress:
        now = time.perf_counter()
        recent = [t for t in window[-5000:] if now - t <= 5.0]
        tail = report.latencies_ms[-2000:]
        ordered = sorted(tail)
        return LoadProgress(
            elapsed_s=now - t0, scheduled=scheduled, ok=report.ok, failed=report.failed,
            skipped=report.skipped, in_flight=in_flight, statuses=dict(report.statuses),
            p50_ms=ordered[len(ordered) // 2] if ordered else None,
            p95_ms=ordered[int(0.95 * (len(ordered) - 1))] if ordered else None,
            recent_rps=len(recent) / min(5.0, max(now - t0, 1e-3)),
        )


def pool_size(textfile: Path) -> tuple[int | None, int | None]:
    """(current, desired) instances from the autoscaler's textfile, if it is there."""
    values: dict[str, int] = {}
    try:
        for line in textfile.read_text().splitlines():
            for key in ("current", "desired"):
                prefix = f"kongstack_autoscaler_{key}_instances "
                if line.startswith(prefix):
                    values[key] = int(float(line[len(prefix):]))
    except OSError:
        pass
    return values.get("current"), values.get("desired")


def register(app: typer.Typer) -> None:
    @app.command("load")
    def load(
        rps: float = typer.Option(100.0, help=f"requests per second (max {MAX_RPS:g})"),
        duration: float = typer.Option(60.0, help=f"seconds (max {MAX_DURATION_S:g})"),
        url: str | None = typer.Option(None, help="gateway URL (default: the local gateway)"),
        path: Annotated[list[str] | None, typer.Option(
            help="request path(s), round robin (default /api/stocks)")] = None,
        max_in_flight: int = typer.Option(256, min=1, max=4096),
        allow_remote: bool = typer.Option(False, help="allow a non-loopback URL"),
        consumer: str | None = typer.Option(
            None, help="send with this consumer's key (default: the first read-only "
            f"consumer of the stack file; ${API_KEY_ENV} overrides the key)"),
        config: Annotated[Path | None, typer.Option(help="stack file (for --consumer)")] = None,
    ) -> None:
        """Offer a steady request rate to the gateway and watch the pool react."""
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table

        settings = LocalSettings()
        target = url or f"http://{settings.host}:{settings.gateway_port}"
        key = os.environ.get(API_KEY_ENV)
        try:
            if not key:
                from kongstack.cli.keys import consumer_key
                from kongstack.core.topology import load_topology

                consumer, key = consumer_key(load_topology(config), consumer)
            gen = LoadGenerator(url=target, rps=rps, duration=duration,
                                paths=path or ["/api/stocks"],
                                max_in_flight=max_in_flight, allow_remote=allow_remote,
                                headers={"apikey": key} if key else None)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from exc
        textfile = settings.home / "metrics" / "autoscaler.prom"
        console = Console()

        def table(p: LoadProgress) -> Table:
            current, desired = pool_size(textfile)
            t = Table(title=f"load {rps:g} rps -> {target} ({duration:g}s)", show_header=True)
            for col in ("elapsed", "ok", "failed", "skipped", "rate/s", "p50 ms", "p95 ms",
                        "pool", "desired"):
                t.add_column(col, justify="right")
            t.add_row(f"{p.elapsed_s:5.0f}s", str(p.ok), str(p.failed), str(p.skipped),
                      f"{p.recent_rps:.0f}", _fmt(p.p50_ms), _fmt(p.p95_ms),
                      "-" if current is None else str(current),
                      "-" if desired is None else str(desired))
            return t

        with Live(console=console, refresh_per_second=2) as live:
            report = gen.run(on_progress=lambda p: live.update(table(p)))
        console.print(f"done: {report.ok} ok, {report.failed} failed (any status >= 400 or "
                      f"lost connection, never re-sent), {report.skipped} skipped;"
                      f" p50 {_fmt(report.percentile(0.5))} ms, p95 {_fmt(report.percentile(0.95))}"
                      f" ms; statuses {dict(report.statuses)}")
        if report.failed:
            raise typer.Exit(code=1)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"

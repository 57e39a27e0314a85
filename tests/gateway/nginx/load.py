"""A bounded steady loopback load: N client threads looping GETs until stopped or capped.

Every request's outcome is recorded (status, which backend answered, or the exception), so
a test can assert zero failures across reloads. Connections are kept alive by default,
like real clients; ``keepalive=False`` opens one connection per request.

At a reload nginx's old worker closes its *idle* kept-alive connections; a GET the client
sends on such a connection at that instant is never read: the client sees EOF, or a reset
when the kernel drops the unread request. HTTP lets a client re-send an idempotent request
in exactly that case (RFC 9110 §9.2.2; browsers and Go's net/http do it automatically,
httpx does not), so in keep-alive mode this client re-sends once and counts it in
``resent``. Anything else (an error status, a second failure, any error with one
connection per request) is a failure.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

import httpx


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    backends: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    resent: int = 0

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    @property
    def failed(self) -> int:
        return len(self.errors) + sum(n for s, n in self.statuses.items() if s != 200)


def _idle_close(exc: httpx.HTTPError) -> bool:
    text = str(exc)
    return "without sending a response" in text or "Connection reset by peer" in text


class SteadyLoad:
    def __init__(self, url: str, *, headers: dict[str, str], threads: int = 4,
                 max_requests: int = 20000, max_seconds: float = 60.0,
                 keepalive: bool = True) -> None:
        self.url = url
        self.headers = headers
        self.threads = threads
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.keepalive = keepalive
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if self.keepalive else 0)
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=10.0, limits=limits) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self.result.total >= self.max_requests:
                        return
                start = time.perf_counter()
                try:
                    try:
                        response = client.get(self.url, headers=self.headers)
                    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                        if not self.keepalive or not _idle_close(exc):
                            raise
                        with self._lock:
                            self.result.resent += 1
                        response = client.get(self.url, headers=self.headers)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.result.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - start
                with self._lock:
                    self.result.statuses[response.status_code] += 1
                    self.result.latencies.append(elapsed)
                    if response.status_code == 200:
                        self.result.backends[int(response.json()["backend"])] += 1

    def __enter__(self) -> SteadyLoad:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def wait_for(self, requests: int, timeout: float = 30.0) -> None:
        """Block until at least ``requests`` have completed (the load is really running)."""
        deadline = time.monotonic() + timeout
        while self.result.total < requests and time.monotonic() < deadline:
            time.sleep(0.01)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=15)

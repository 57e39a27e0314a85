"""A bounded steady loopback load: N client threads looping requests until stopped or capped.

Every request's outcome is recorded (status, which backend answered, or the exception), so a
test can assert zero failures across target changes. Connections are kept alive by default,
like real clients (``keepalive=False`` opens one connection per request), and a request is
never re-sent: a kept-alive connection closed under a request is a failure, as it is for
Python's http.client, many SDKs and load balancers in front of the gateway.
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
    # (monotonic time the request was sent, backend port) of every answered request
    answered: list[tuple[float, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    @property
    def failed(self) -> int:
        return len(self.errors) + sum(n for s, n in self.statuses.items() if s >= 300)


class SteadyLoad:
    def __init__(self, url: str, *, headers: dict[str, str], threads: int = 4,
                 max_requests: int = 20000, max_seconds: float = 60.0,
                 keepalive: bool = True, method: str = "GET",
                 rate: float | None = None) -> None:
        self.url = url
        self.headers = headers
        self.threads = threads
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.keepalive = keepalive
        self.method = method
        self.rate = rate  # requests per second over all threads; None: as fast as answered
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._workers: list[threading.Thread] = []

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if self.keepalive else 0)
        deadline = time.monotonic() + self.max_seconds
        interval = self.threads / self.rate if self.rate else 0.0
        due = time.monotonic()
        with httpx.Client(timeout=10.0, limits=limits) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self.result.total >= self.max_requests:
                        return
                if interval:  # paced: each thread keeps its share of the rate
                    due += interval
                    if self._stop.wait(max(0.0, due - time.monotonic())):
                        return
                sent = time.monotonic()
                start = time.perf_counter()
                try:
                    response = client.request(self.method, self.url, headers=self.headers)
                except httpx.HTTPError as exc:
                    with self._progress:
                        self.result.errors.append(f"{type(exc).__name__}: {exc}")
                        self._progress.notify_all()
                    continue
                elapsed = time.perf_counter() - start
                with self._progress:
                    self.result.statuses[response.status_code] += 1
                    self.result.latencies.append(elapsed)
                    if response.status_code < 300:
                        port = int(response.json()["backend"])
                        self.result.backends[port] += 1
                        self.result.answered.append((sent, port))
                    self._progress.notify_all()

    def __enter__(self) -> SteadyLoad:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def wait_for(self, requests: int, timeout: float = 30.0) -> None:
        """Block until at least ``requests`` have completed (the load is really running)."""
        with self._progress:
            if not self._progress.wait_for(lambda: self.result.total >= requests,
                                           timeout=timeout):
                raise TimeoutError(f"load: {self.result.total} of {requests} requests "
                                   f"completed within {timeout:.0f}s")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=15)

"""What this instance knows about the services it depends on: Redis (the cache) and the store.

Liveness and readiness are separate questions (Kubernetes' probes):

* ``/live`` — the process answers. Only a failing liveness probe is a reason to replace it.
* ``/ready`` — it can serve: not shutting down and the store answers. Redis down is not a
  reason to be unready: reads fall back to the store (``cache.py``). A store outage makes
  ``/ready`` 503, but it is a *shared* dependency: every instance reports the same, and
  replacing instances cannot fix it; cached reads keep being served meanwhile.

Either outage makes the instance *degraded*: it says so in ``/ready``'s body and in the gauge
``stock_api_dependency_up{dependency="redis"|"store"}`` (1 up, 0 down), which the
``StockApiDependencyDown`` alert watches. The state is updated by every readiness probe, by
every cache lookup (hit/miss: up, error: down), by every store failure a request meets, and
by a scrape of ``/metrics`` when the last look is older than ``dependency_check_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger("stock_api.dependencies")

REDIS = "redis"
STORE = "store"


@dataclass(frozen=True)
class DependencyState:
    up: bool
    detail: str  # "ok", or the error's type name (never its text: it may hold addresses)
    since: float  # monotonic time of the last change


class Dependencies:
    """Last known state of each dependency, as a gauge and for ``/ready``."""

    def __init__(self, registry: CollectorRegistry, *, max_age_seconds: float) -> None:
        self._checks: dict[str, Callable[[], None]] = {}
        self._max_age = max_age_seconds
        self._lock = threading.Lock()
        self._states: dict[str, DependencyState] = {}
        self._checked_at = float("-inf")
        self._gauge = Gauge(
            "stock_api_dependency_up",
            "1 if the dependency answered at the last look, 0 if not (the instance is "
            "degraded)", ["dependency"], registry=registry,
        )

    def add(self, name: str, probe: Callable[[], None]) -> None:
        """Watch ``name``; ``probe`` raises when it is down. Assumed up until a look says
        otherwise, so a starting instance raises no alert."""
        with self._lock:
            self._checks[name] = probe
            self._states[name] = DependencyState(True, "ok", time.monotonic())
        self._gauge.labels(dependency=name).set(1)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._checks)

    def mark(self, name: str, up: bool, detail: str = "ok") -> None:
        """Record what a request or a probe just saw; log transitions only."""
        now = time.monotonic()
        with self._lock:
            before = self._states.get(name)
            if before is None:  # not watched (e.g. the cache is disabled)
                return
            if before.up == up and before.detail == detail:
                return
            self._states[name] = DependencyState(up, detail, now if before.up != up else
                                                 before.since)
            self._gauge.labels(dependency=name).set(1 if up else 0)
        if before.up and not up:
            log.warning("dependency %s is down (%s): serving degraded", name, detail,
                        extra={"dependency": name, "dependency_up": False})
        elif up and not before.up:
            log.info("dependency %s is back after %.1f s", name, now - before.since,
                     extra={"dependency": name, "dependency_up": True})

    def check(self) -> dict[str, DependencyState]:
        """Probe every dependency now and record the results."""
        with self._lock:
            checks = list(self._checks.items())
        for name, probe in checks:
            try:
                probe()
            except Exception as exc:  # each probe raises its client's own error types
                self.mark(name, False, type(exc.__cause__ or exc).__name__)
            else:
                self.mark(name, True)
        with self._lock:
            self._checked_at = time.monotonic()
            return dict(self._states)

    def refresh(self) -> None:
        """Probe again if the last full look is older than the configured age (scrapes)."""
        with self._lock:
            stale = time.monotonic() - self._checked_at >= self._max_age
        if stale:
            self.check()

    def states(self) -> dict[str, DependencyState]:
        with self._lock:
            return dict(self._states)

    def degraded(self) -> list[str]:
        """Names of the dependencies that are down, in a stable order."""
        return sorted(name for name, state in self.states().items() if not state.up)

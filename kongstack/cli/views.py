"""What the operator commands read: the pool, the policy, the history, live instance metrics.

No typer here: the commands in ``kongstack.cli.status`` / ``.ops`` / ``.monitor`` format; this
module fetches and computes (so it is testable without a terminal). No Prefect either:
``status`` must start fast.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from autoscaler import remaining_cooldowns
from autoscaler.capacity import CapacityEstimate
from autoscaler.config import AutoscalePolicy
from autoscaler.learning import rps_target
from kongstack.core.errors import UnreachableError
from kongstack.core.settings import LocalSettings
from tasks.instances.base import Instance
from tasks.tick.config import AutoscaleConfig, LoadedConfig, load_autoscale_config
from tasks.tick.memory_state import (
    DEFAULT_BLOCK_NAME,
    ServerUnreachable,
    TickMemory,
    api_headers,
    fetch_memory,
)
from tasks.tick.pool import ACTIVE, PoolConfig
from tasks.tick.scaling_log import ScalingLog


@dataclass(frozen=True)
class StackOptions:
    """The command line's choices over the autoscale config (the same file, through the same
    loader, as the autoscale flow): None = as configured."""

    stack: str | None = None
    driver: str | None = None
    gateway: str | None = None
    config_file: Path | None = None
    ready_timeout: float = 60.0

    @cached_property
    def loaded(self) -> LoadedConfig:
        return load_autoscale_config(file=self.config_file)

    def policy(self) -> AutoscalePolicy:
        return self.loaded.policy

    def pool(self) -> PoolConfig:
        given = {"stack": self.stack, "driver": self.driver, "gateway": self.gateway,
                 "ready_timeout_seconds": self.ready_timeout}
        return PoolConfig.model_validate({**self.loaded.config.pool.model_dump(),
                                          **{k: v for k, v in given.items() if v is not None}})

    def config(self) -> AutoscaleConfig:
        """The autoscale config in force, with the command line's pool."""
        return self.loaded.config.model_copy(update={"pool": self.pool()})

    @property
    def name(self) -> str:
        return self.pool().stack

    def settings(self) -> LocalSettings:
        return self.pool().settings()

    def history(self) -> ScalingLog:
        return ScalingLog(self.loaded.config.record.scaling_log_path)


def active(instances: list[Instance]) -> list[Instance]:
    return [i for i in instances if i.state in ACTIVE]


# -- cooldowns from the tick memory block -------------------------------------------------

@dataclass(frozen=True)
class Cooldowns:
    up_remaining: float | None
    down_remaining: float | None
    note: str
    capacity: CapacityEstimate | None = None
    """The learned capacity the tick memory holds (None: unknown)."""


def read_cooldowns(policy: AutoscalePolicy, block: str = DEFAULT_BLOCK_NAME) -> Cooldowns:
    """From the tick memory block, when a Prefect server is configured or runs locally.

    The block document is read over the server's REST API (no Prefect import: ~0.7 s of a
    ``status``). No local server and none configured: the cooldowns are unknown, said so.
    A server that should answer and does not: UnreachableError (the CLI's exit code 3)."""
    import os

    from kongstack.cli.localprefect import use_local_server_if_running

    if not use_local_server_if_running(LocalSettings()):
        return Cooldowns(None, None, "Prefect server not running: autoscale state unknown")
    api = os.environ["PREFECT_API_URL"]  # set by use_local_server_if_running, or by the user
    try:
        state = _fetch_memory_retrying(api, block)
    except ServerUnreachable as exc:
        raise UnreachableError(f"{exc}; the autoscale state (cooldowns) cannot be read. Start "
                               "the stack's server (kongstack up) or correct PREFECT_API_URL"
                               ) from exc
    if state.is_default:
        return Cooldowns(None, None, state.default_reason or "no state yet")
    # The same rule decide() applies, so the CLI never disagrees with the autoscaler.
    up, down = remaining_cooldowns(policy, state.history, datetime.now(UTC))
    note = ("one cooldown after any action (threshold)" if policy.strategy == "threshold" else
            "scale-down also waits for the stabilisation window "
            f"({policy.scale_down_stabilization_seconds:g}s)")
    return Cooldowns(up, down, note, state.history.capacity)


def _fetch_memory_retrying(api: str, block: str) -> TickMemory:
    """fetch_memory, retried briefly: a server that is starting or busy answers a moment
    later; one that is down still fails within about a second and a half."""
    for attempt in Retrying(retry=retry_if_exception_type(ServerUnreachable),
                            wait=wait_exponential(multiplier=0.25, max=1.0),
                            stop=stop_after_attempt(3), reraise=True):
        with attempt:
            return fetch_memory(api, block, headers=api_headers(), timeout=5.0)
    raise AssertionError("unreachable: tenacity reraises")  # for mypy


def learned_target(policy: AutoscalePolicy, capacity: CapacityEstimate | None) -> str | None:
    """The ``target_rps_per_instance`` row of ``kongstack status`` when it is learned: the
    rate the tick aims at and what it rests on, or why there is none yet."""
    if policy.target_rps_per_instance is not None or not policy.learn_capacity:
        return None
    if capacity is None:
        return None
    target = rps_target(policy, capacity)
    if target is None:
        return f"- (CPU alone until confident: {capacity.describe()})"
    return f"{target.rps:.1f} ({target.why})"


# -- live per-instance metrics (scraped from each instance's /metrics) ------------------------

@dataclass(frozen=True)
class Sample:
    at: float
    requests: float
    duration_sum: float
    duration_count: float
    buckets: dict[float, float] = field(default_factory=dict)


def scrape(address: str, timeout: float = 2.0) -> Sample | None:
    """One reading of the stock API's own counters; None if it does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = httpx.get(f"http://{address}/metrics", timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    requests = dsum = dcount = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == "stock_api_requests_total" and s.labels.get("route") != "/metrics":
                requests += s.value
            elif s.name == "stock_api_request_duration_seconds_sum":
                dsum += s.value
            elif s.name == "stock_api_request_duration_seconds_count":
                dcount += s.value
            elif s.name == "stock_api_request_duration_seconds_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    return Sample(time.time(), requests, dsum, dcount, buckets)


def rates(before: Sample | None, after: Sample | None) -> tuple[float | None, float | None,
                                                                  float | None]:
    """(requests/s, mean latency ms, p95 latency ms) between two samples."""
    if before is None or after is None or after.at <= before.at:
        return None, None, None
    rps = max(0.0, after.requests - before.requests) / (after.at - before.at)
    count = after.duration_count - before.duration_count
    if count <= 0:
        return rps, None, None
    mean = 1000 * (after.duration_sum - before.duration_sum) / count
    return rps, mean, _p95_ms(before.buckets, after.buckets, count)


def _p95_ms(before: dict[float, float], after: dict[float, float], count: float) -> float | None:
    rank = 0.95 * count
    prev_le, prev_n = 0.0, 0.0
    for le in sorted(after):
        n = after[le] - before.get(le, 0.0)
        if n >= rank:
            if math.isinf(le):
                return 1000 * prev_le  # beyond the last finite bucket: its bound, a floor
            width = n - prev_n
            frac = (rank - prev_n) / width if width > 0 else 1.0
            return 1000 * (prev_le + (le - prev_le) * frac)
        prev_le, prev_n = le, n
    return None


@dataclass(frozen=True)
class InstanceRow:
    name: str
    address: str
    state: str
    cpu_percent: float | None
    memory_percent: float | None
    rps: float | None
    mean_ms: float | None
    p95_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Thresholds:
    cpu_percent: float = 80.0
    memory_percent: float = 80.0
    rps: float = 150.0
    p95_ms: float = 1000.0

    def breaches(self, row: InstanceRow) -> list[str]:
        out = []
        checks = (("cpu_percent", row.cpu_percent, self.cpu_percent),
                  ("memory_percent", row.memory_percent, self.memory_percent),
                  ("rps", row.rps, self.rps), ("p95_ms", row.p95_ms, self.p95_ms))
        for name, value, limit in checks:
            if value is not None and value > limit:
                out.append(f"{row.name}: {name} {value:.1f} > {limit:g}")
        return out

"""Replay a request-rate trace through ``decide`` and the service model, second by second.

``simulate(policy, demand, model)`` runs the real decision core every ``tick`` seconds on the
metrics the model would have scraped, exactly as the autoscale tick does: ``learn`` (the
capacity estimate learns from the scraped rate, CPU and p95), ``decide``, ``record``; it
rebuilds the seasonal profile from the rates seen so far at every simulated midnight (as the
maintenance flow would), starts/drains instances as decided, and scores the run.
``oracle(demand, model, lo, hi)`` is the foresight limit: each second exactly the instances
that second needs, ready in advance (``block`` > 1: changing the pool at most once per
block). Pure: the trace comes in as a list of per-second rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from autoscaler.config import AutoscalePolicy
from autoscaler.decide import decide
from autoscaler.forecast import build_profile
from autoscaler.learning import learn
from autoscaler.model import InstanceState, InstanceView, Metrics, Observation, ScalingHistory
from autoscaler.service_model import ServiceModel, minute_means
from autoscaler.victims import select_victims

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_DAY = 86_400
LEARNED_AFTER = 1800
"""The replay reports the learned capacity after this much load (and at the end)."""
REACTION_HORIZON = 1800
"""A step not met within this many seconds counts as "no reaction"."""
_TIMEOUT_MS = 60_000.0  # what a saturated pool's p95 looks like to a scraper


@dataclass
class ReplayResult:
    name: str
    strategy: str
    tick_seconds: float
    seconds: int
    offered_requests: float
    dropped_requests: float
    slo_violation_seconds: int
    instance_seconds: float
    scale_actions: int
    reversals: int
    reaction_seconds: list[float | None] = field(default_factory=list)
    active: list[int] = field(default_factory=list, repr=False)
    """Instances costing money each second (starting + ready + draining)."""
    ready: list[int] = field(default_factory=list, repr=False)
    learned: list[tuple[int, float | None, float]] = field(default_factory=list, repr=False)
    """(second, learned capacity rps at 100 % CPU or None, confidence) after each tick."""

    def learned_at(self, second: int) -> tuple[float | None, float]:
        """The capacity estimate and its confidence as of ``second``."""
        best: tuple[float | None, float] = (None, 0.0)
        for t, capacity, confidence in self.learned:
            if t > second:
                break
            best = (capacity, confidence)
        return best

    def _learned_summary(self) -> dict[str, float | None]:
        if not any(capacity is not None for _, capacity, _ in self.learned):
            return {}
        early, early_confidence = self.learned_at(LEARNED_AFTER)
        final, confidence = self.learned[-1][1], self.learned[-1][2]
        return {
            "learned_capacity_rps": None if final is None else round(final, 2),
            "learned_confidence": round(confidence, 3),
            f"learned_capacity_rps_at_{LEARNED_AFTER}s": None if early is None else round(early, 2),
            f"learned_confidence_at_{LEARNED_AFTER}s": round(early_confidence, 3),
        }

    @property
    def dropped_percent(self) -> float:
        return (
            100.0 * self.dropped_requests / self.offered_requests if self.offered_requests else 0.0
        )

    def summary(self) -> dict[str, Any]:
        met = [r for r in self.reaction_seconds if r is not None]
        return {
            "name": self.name,
            "strategy": self.strategy,
            "tick_seconds": self.tick_seconds,
            "seconds": self.seconds,
            "slo_violation_seconds": self.slo_violation_seconds,
            "offered_requests": round(self.offered_requests, 1),
            "dropped_requests": round(self.dropped_requests, 1),
            "dropped_percent": round(self.dropped_percent, 4),
            "instance_seconds": round(self.instance_seconds, 1),
            "scale_actions": self.scale_actions,
            "reversals": self.reversals,
            "load_steps": len(self.reaction_seconds),
            "reaction_seconds": self.reaction_seconds,
            "reaction_median_seconds": _median(met),
            "reaction_max_seconds": max(met) if met else None,
            "steps_not_met": len(self.reaction_seconds) - len(met),
            **self._learned_summary(),
        }


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class _Instance:
    id: str
    started: int
    ready_at: int
    _views: dict[InstanceState, InstanceView] = field(default_factory=dict, repr=False)

    def view(self, t: int) -> InstanceView:
        """The instance as the autoscaler sees it (cached: only its state changes)."""
        state = InstanceState.READY if self.ready_at <= t else InstanceState.STARTING
        cached = self._views.get(state)
        if cached is None:
            # model_construct: the simulator's own values need no re-validation (speed).
            cached = InstanceView.model_construct(
                id=self.id,
                state=state,
                started_at=EPOCH + timedelta(seconds=self.started),
                metrics=None,
            )
            self._views[state] = cached
        return cached


class _Counter:
    """Counts scale actions and direction reversals (up then down, or down then up)."""

    def __init__(self) -> None:
        self.actions = 0
        self.reversals = 0
        self._last = 0

    def add(self, delta: int) -> None:
        if delta == 0:
            return
        sign = 1 if delta > 0 else -1
        self.actions += 1
        if self._last and sign != self._last:
            self.reversals += 1
        self._last = sign


def simulate(
    policy: AutoscalePolicy,
    demand: Sequence[float],
    model: ServiceModel,
    *,
    name: str | None = None,
    tick_seconds: float | None = None,
) -> ReplayResult:
    tick = max(1, round(tick_seconds or policy.check_interval_seconds))
    total = len(demand)
    cap = model.capacity_rps
    umax = model.max_utilisation
    scrape, window = model.scrape_interval_seconds, model.rate_window_seconds
    starting: list[_Instance] = []
    ready: list[_Instance] = [
        _Instance(id=f"i{k}", started=-3600, ready_at=-3600) for k in range(policy.min_instances)
    ]
    next_id = policy.min_instances
    draining: list[int] = []  # drain end times
    cum_d = [0.0] * (total + 1)
    cum_u = [0.0] * (total + 1)  # served utilisation, for the CPU a scrape reports
    cum_lost = [0.0] * (total + 1)  # dropped requests, the gateway's error count
    util = [0.0] * total  # per-second utilisation (offered/capacity), for the window p95
    active_series = [0] * total
    ready_series = [0] * total
    learned: list[tuple[int, float | None, float]] = []
    rates: list[tuple[datetime, float]] = []  # what maintenance would find in the history
    history = ScalingHistory()
    counter = _Counter()
    dropped = cost = 0.0
    violations = 0
    for t in range(total):
        if t and t % tick == 0:
            now = EPOCH + timedelta(seconds=t)
            if t % _DAY < tick and policy.strategy == "proportional":
                # Midnight: the maintenance flow refreshes the seasonal profile.
                history = history.model_copy(update={"profile": build_profile(rates, at=now)})
            obs = _observe(
                t, starting, ready, demand, (cum_d, cum_u, cum_lost), util, scrape, window, model
            )
            history = learn(policy, obs, history, now)
            decision = decide(policy, obs, history, now)
            history = history.record(decision)
            if obs.aggregate.rps is not None:
                rates.append((now, obs.aggregate.rps))
            estimate = history.capacity
            learned.append((t, estimate.capacity_rps, estimate.confidence))
            change = decision.desired - decision.current
            counter.add(change)
            if change > 0:
                for _ in range(change):
                    starting.append(_Instance(f"i{next_id}", t, t + model.startup_seconds))
                    next_id += 1
            elif change < 0:
                gone = {v.id for v in select_victims(policy, obs.instances, -change)}
                starting = [i for i in starting if i.id not in gone]
                ready = [i for i in ready if i.id not in gone]
                draining.extend([t + model.drain_seconds] * len(gone))
        while starting and starting[0].ready_at <= t:
            ready.append(starting.pop(0))
        if draining and min(draining) <= t:
            draining = [d for d in draining if d > t]
        n = len(ready)
        d = demand[t]
        capacity = n * cap
        u = d / capacity if capacity else (math.inf if d > 0 else 0.0)
        served = d if u <= 1 else capacity
        lost = d - served
        dropped += lost
        if lost > 1e-9 or u > umax + 1e-12:
            violations += 1
        cost += n + len(starting) + len(draining)
        cum_d[t + 1] = cum_d[t] + d
        cum_u[t + 1] = cum_u[t] + (served / capacity if capacity else 0.0)
        cum_lost[t + 1] = cum_lost[t] + lost
        util[t] = u
        ready_series[t] = n
        active_series[t] = n + len(starting) + len(draining)
    return ReplayResult(
        name=name or policy.strategy,
        strategy=policy.strategy,
        tick_seconds=tick,
        seconds=total,
        offered_requests=cum_d[total],
        dropped_requests=dropped,
        slo_violation_seconds=violations,
        instance_seconds=cost,
        scale_actions=counter.actions,
        reversals=counter.reversals,
        reaction_seconds=reactions(demand, ready_series, model, policy),
        active=active_series,
        ready=ready_series,
        learned=learned,
    )


def _observe(
    t: int,
    starting: list[_Instance],
    ready: list[_Instance],
    demand: Sequence[float],
    sums: tuple[list[float], list[float], list[float]],
    util: list[float],
    scrape: int,
    window: int,
    model: ServiceModel,
) -> Observation:
    """What Prometheus would report at ``t``: the last scrape's ``rate(...[window])``.

    Kong spreads load evenly, so every ready instance has the pool's CPU and memory: they are
    reported once, as the pool average (``readings.utilisation`` applies it to each warm
    instance), which keeps a week-long replay fast.
    """
    s = (t // scrape) * scrape
    lo = max(0, s - window)
    span = s - lo
    views = tuple(i.view(t) for i in (*ready, *starting))
    at = EPOCH + timedelta(seconds=s)
    if span <= 0:
        empty = Metrics.model_construct(
            cpu_percent=None,
            memory_percent=None,
            rps=None,
            p95_latency_ms=None,
            error_rate=None,
            sampled_at=at,
        )
        return Observation.model_construct(instances=views, aggregate=empty)
    cum_d, cum_u, cum_lost = sums
    rps = (cum_d[s] - cum_d[lo]) / span
    served = (cum_u[s] - cum_u[lo]) / span
    offered = cum_d[s] - cum_d[lo]
    errors = (cum_lost[s] - cum_lost[lo]) / offered if offered > 0 else 0.0
    serving = sum(1 for v in views if v.state is InstanceState.READY)
    cpu = model.cpu_percent(served, s // scrape, serving)
    p95 = _window_p95(model, demand[lo:s], util[lo:s])
    memory = model.memory_base_percent + model.memory_load_percent * min(served, 1.0)
    aggregate = Metrics.model_construct(
        cpu_percent=cpu,
        memory_percent=memory,
        rps=rps,
        p95_latency_ms=p95,
        error_rate=min(1.0, errors),
        sampled_at=at,
    )
    return Observation.model_construct(instances=views, aggregate=aggregate)


def _window_p95(model: ServiceModel, demand: Sequence[float], util: Sequence[float]) -> float:
    """``histogram_quantile(0.95, rate(..[window]))``: the latency below which 95 % of the
    window's requests finished, taking each second's p95 as its requests' latency."""
    seconds = sorted(zip(util, demand, strict=True))
    total = sum(demand)
    if total <= 0:
        return model.base_p95_ms
    seen = 0.0
    for u, d in seconds:
        seen += d
        if seen >= 0.95 * total:
            return min(model.p95_ms(u), _TIMEOUT_MS)
    return min(model.p95_ms(seconds[-1][0]), _TIMEOUT_MS)


def oracle(
    demand: Sequence[float], model: ServiceModel, lo: int, hi: int, *, block: int = 1
) -> ReplayResult:
    """Foresight: each second exactly the instances it needs, already ready.

    With ``block`` > 1, a hindsight reference that changes the pool at most once per block:
    each ``block`` seconds the fewest instances that meet the SLO in every second of the
    block, ready in advance (what a perfect forecaster that must hold its size would pay).
    """
    cap, umax = model.capacity_rps, model.max_utilisation
    counts = [model.needed(d, lo, hi) for d in demand]
    if block > 1:
        held: list[int] = []
        for i in range(0, len(counts), block):
            chunk = counts[i : i + block]
            held += [max(chunk)] * len(chunk)
        counts = held
    counter = _Counter()
    dropped = 0.0
    violations = 0
    for k, (n, d) in enumerate(zip(counts, demand, strict=True)):
        if k:
            counter.add(n - counts[k - 1])
        dropped += max(0.0, d - n * cap)
        if d > n * cap * umax * (1 + 1e-12):
            violations += 1
    return ReplayResult(
        name="oracle" if block == 1 else f"oracle/{block}s",
        strategy="oracle",
        tick_seconds=block,
        seconds=len(demand),
        offered_requests=float(sum(demand)),
        dropped_requests=dropped,
        slo_violation_seconds=violations,
        instance_seconds=float(sum(counts)),
        scale_actions=counter.actions,
        reversals=counter.reversals,
        reaction_seconds=[0.0 for _ in load_steps(demand, model, lo, hi)],
        active=counts,
        ready=counts,
    )


def load_steps(
    demand: Sequence[float], model: ServiceModel, lo: int, hi: int
) -> list[tuple[int, int]]:
    """Load steps: minutes whose mean needs at least max(2, +50 %) more instances than the
    minute before. Returns (start second, instances needed); one step per 5 minutes at most."""
    means = minute_means(demand)
    steps: list[tuple[int, int]] = []
    last = -math.inf
    for k in range(1, len(means)):
        before = model.needed(means[k - 1], lo, hi)
        after = model.needed(means[k], lo, hi)
        if after - before >= max(2, math.ceil(0.5 * before)) and k * 60 - last >= 300:
            steps.append((k * 60, after))
            last = k * 60
    return steps


def reactions(
    demand: Sequence[float], ready: Sequence[int], model: ServiceModel, policy: AutoscalePolicy
) -> list[float | None]:
    """Seconds from each load step until enough instances are ready for the new level."""
    out: list[float | None] = []
    for start, need in load_steps(demand, model, policy.min_instances, policy.max_instances):
        end = min(len(ready), start + REACTION_HORIZON)
        met = next((t - start for t in range(start, end) if ready[t] >= need), None)
        out.append(None if met is None else float(met))
    return out

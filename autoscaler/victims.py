"""Which instances to remove on scale-in: a named selector (Nomad's node selector).

Draining instances are never chosen (they are already leaving); starting instances go first
whatever the selector, since they serve nothing yet. An unknown selector name is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from autoscaler.config import AutoscalePolicy
from autoscaler.model import InstanceState, InstanceView
from autoscaler.placement import spread_victims

SelectorKey = Callable[[InstanceView], tuple[float, str]]


def _load(instance: InstanceView) -> float:
    m = instance.metrics
    if m is None:
        return float("inf")  # unknown load: pick it last
    for value in (m.cpu_percent, m.rps, m.memory_percent):
        if value is not None:
            return value
    return float("inf")


HOST_NEUTRAL = frozenset({"newest", "oldest"})
"""Selectors that say nothing about load: on a multi-host pool they pick within the fullest
host. ``least_loaded`` is a load choice and is followed as it is."""

SELECTORS: dict[str, SelectorKey] = {
    "newest": lambda i: (-i.started_at.timestamp(), i.id),
    "oldest": lambda i: (i.started_at.timestamp(), i.id),
    "least_loaded": lambda i: (_load(i), i.id),
}


def select_victims(
    policy_or_name: AutoscalePolicy | str, instances: Sequence[InstanceView], count: int
) -> list[InstanceView]:
    """Return up to ``count`` instances to remove, best victim first."""
    name = (
        policy_or_name.victim_selection
        if isinstance(policy_or_name, AutoscalePolicy)
        else policy_or_name
    )
    key = SELECTORS.get(name)
    if key is None:
        raise ValueError(
            f"victim_selection: unknown selector {name!r}; choose one of {sorted(SELECTORS)}"
        )
    if count <= 0:
        return []
    candidates = [i for i in instances if i.state is not InstanceState.DRAINING]
    ranked = sorted(candidates, key=lambda i: (i.state is not InstanceState.STARTING, *key(i)))
    if name in HOST_NEUTRAL and any(i.host for i in ranked):
        # A pool over several hosts shrinks from its fullest host first (it stays spread);
        # the age order only decides within a host.
        by_id = {i.id: i for i in ranked}
        host_of = {i.id: i.host or "" for i in ranked}
        return [by_id[i] for i in spread_victims([i.id for i in ranked], host_of, count)]
    return ranked[:count]

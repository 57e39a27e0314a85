"""Whether a pool spread over hosts needs another host, or can give an added one back. Pure.

The tick asks after it has acted: the decision's ``desired`` size against the room the live
hosts have (``autoscaler.placement``) and the hosts the autoscaler itself added earlier.

    add      the desired size does not fit on the live hosts (every one at capacity), no
             added host is still being made, fewer than ``max_added_hosts`` were added, and
             the last failed attempt is at least ``retry_seconds`` old
    wait     an added host is still being made (pending): one at a time, since a VM takes
             minutes and the next tick may find the shortfall gone
    remove   an added host has run nothing for ``idle_cooldown_seconds`` and the desired
             size fits on the other hosts without it; a failed one is cleaned away (its
             partial resources) once its retry time has come, so the next add starts afresh
    none     otherwise, with the reason (e.g. "max_added_hosts (2) reached")

Only hosts the autoscaler added are ever removed; the configured hosts are the operator's.
At most one host is added or removed per tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from autoscaler.placement import HostLoad, place

AddedState = Literal["pending", "ready", "failed", "removing"]
NeedAction = Literal["add", "wait", "remove", "none"]


@dataclass(frozen=True)
class GrowthLimits:
    max_added_hosts: int
    """0: the pool never grows beyond its configured hosts."""
    idle_cooldown_seconds: float
    """An added host must have run nothing for this long before it is removed."""
    retry_seconds: float
    """After a failed add (quota, ARM error), wait this long before the next attempt."""


@dataclass(frozen=True)
class AddedHost:
    """A host the autoscaler added, as the decision sees it."""

    name: str
    state: AddedState
    used: int = 0
    """Active instances on it (ready hosts only)."""
    idle_since: datetime | None = None
    """Since when it has run nothing (None: it runs instances, or it is not ready)."""
    changed_at: datetime | None = None
    """When it entered its state (a failed host: when the attempt failed)."""
    error: str | None = None


@dataclass(frozen=True)
class HostNeed:
    action: NeedAction
    reason: str
    host: str | None = None
    """The added host to wait for or remove (None for add/none)."""
    shortfall: int = 0
    """Instances of the desired size that find no room on the live hosts."""


def host_need(limits: GrowthLimits, hosts: Sequence[HostLoad], added: Sequence[AddedHost],
              *, desired: int, active: int, now: datetime) -> HostNeed:
    """What the pool's hosts need for ``desired`` instances (``active`` run now); see the
    module docstring for the rules and their order."""
    if limits.max_added_hosts <= 0:
        return HostNeed("none", "adding hosts is off (max_added_hosts 0)")
    shortfall = place(hosts, desired - active).unplaced if desired > active else 0
    pending = next((a for a in added if a.state in ("pending", "removing")), None)
    failed = next((a for a in added if a.state == "failed"), None)
    if pending is not None and pending.state == "pending":
        return HostNeed("wait", f"host {pending.name} is being added", pending.name, shortfall)
    if pending is not None:  # removing: finish that first, it frees a slot
        return HostNeed("wait", f"host {pending.name} is being removed", pending.name,
                        shortfall)
    if failed is not None:
        waited = _age(failed.changed_at, now)
        if waited < limits.retry_seconds:
            return HostNeed("none", f"adding host {failed.name} failed ({failed.error}); next "
                            f"try in {limits.retry_seconds - waited:.0f}s", failed.name,
                            shortfall)
        return HostNeed("remove", f"host {failed.name} failed to come up ({failed.error}): its "
                        "partial resources are removed before the next try", failed.name,
                        shortfall)
    if shortfall > 0:
        summary = ", ".join(f"{h.name} {h.used}/{h.capacity}" for h in hosts if h.usable)
        if len(added) >= limits.max_added_hosts:
            return HostNeed("none", f"pool full ({summary or 'no live host'}): {shortfall} "
                            f"instance(s) find no room, but max_added_hosts "
                            f"({limits.max_added_hosts}) hosts were added already",
                            shortfall=shortfall)
        return HostNeed("add", f"pool full ({summary or 'no live host'}): {shortfall} of "
                        f"{desired} instance(s) find no room; adding a host", shortfall=shortfall)
    return _idle_removal(limits, hosts, added, desired=desired, now=now)


def _idle_removal(limits: GrowthLimits, hosts: Sequence[HostLoad], added: Sequence[AddedHost],
                  *, desired: int, now: datetime) -> HostNeed:
    idle = sorted((a for a in added if a.state == "ready" and a.used == 0
                   and a.idle_since is not None), key=lambda a: (a.idle_since, a.name))
    if not idle:
        return HostNeed("none", "the pool fits on its hosts")
    host = idle[0]
    others = sum(h.capacity for h in hosts if h.usable and h.name != host.name)
    if others < desired:
        return HostNeed("none", f"added host {host.name} is idle, but the other hosts hold "
                        f"only {others} of the {desired} instance(s) wanted", host.name)
    waited = _age(host.idle_since, now)
    if waited < limits.idle_cooldown_seconds:
        return HostNeed("none", f"added host {host.name} idle for {waited:.0f}s of the "
                        f"{limits.idle_cooldown_seconds:.0f}s cool-down", host.name)
    return HostNeed("remove", f"added host {host.name} idle for {waited:.0f}s (cool-down "
                    f"{limits.idle_cooldown_seconds:.0f}s): removed", host.name)


def _age(since: datetime | None, now: datetime) -> float:
    return 0.0 if since is None else max((now - since).total_seconds(), 0.0)

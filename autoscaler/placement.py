"""Where a pool spread over several hosts starts and removes instances. Pure.

    scale-out  the live host with the most free capacity, ties by name: instances spread
               across hosts first, so losing one host takes the fewest of them
    scale-in   from the fullest host first (the same spread kept), the policy's victim order
               deciding within a host; ``least_loaded`` is a load choice and overrides it

A host that is down or unusable (its engine lacks the image) takes nothing; when every live
host is full, ``place`` says how many instances found no room: the pool needs another host.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HostLoad:
    """One host as placement sees it."""

    name: str
    capacity: int
    used: int
    usable: bool = True
    """False when the host is down or cannot run instances (placement skips it)."""

    @property
    def free(self) -> int:
        return max(self.capacity - self.used, 0) if self.usable else 0


@dataclass(frozen=True)
class Placement:
    hosts: tuple[str, ...]
    """One host name per instance placed, in start order."""
    unplaced: int
    """Instances that found no room on any live host."""


def place(hosts: Sequence[HostLoad], count: int) -> Placement:
    """Hosts for ``count`` new instances, each on the live host with the most free room."""
    used = {h.name: h.used for h in hosts}
    chosen: list[str] = []
    for _ in range(max(count, 0)):
        candidates = [h for h in hosts if h.usable and used[h.name] < h.capacity]
        if not candidates:
            break
        best = min(candidates, key=lambda h: (-(h.capacity - used[h.name]), used[h.name], h.name))
        used[best.name] += 1
        chosen.append(best.name)
    return Placement(hosts=tuple(chosen), unplaced=max(count, 0) - len(chosen))


def spread_victims(ordered_ids: Sequence[str], host_of: dict[str, str], count: int) -> list[str]:
    """``count`` of ``ordered_ids`` (the policy's victim order, best first), each taken from
    the host that has the most of them left: the pool stays spread while it shrinks."""
    left = Counter(host_of.get(i, "") for i in ordered_ids)
    remaining = list(ordered_ids)
    chosen: list[str] = []
    while remaining and len(chosen) < count:
        fullest = max(left.values())
        pick = next(i for i in remaining if left[host_of.get(i, "")] == fullest)
        remaining.remove(pick)
        left[host_of.get(pick, "")] -= 1
        chosen.append(pick)
    return chosen

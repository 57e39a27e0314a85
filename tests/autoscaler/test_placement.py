"""Placement over several hosts: spread on scale-out, fullest host first on scale-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autoscaler import AutoscalePolicy, InstanceView, select_victims
from autoscaler.placement import HostLoad, place, spread_victims

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_new_instances_go_to_the_host_with_most_free_room() -> None:
    hosts = [HostLoad("h1", 4, 2), HostLoad("h2", 4, 0), HostLoad("h3", 2, 0)]
    # h2 twice (most room); then h1 and h3 have equal room: the emptier host first
    assert place(hosts, 4).hosts == ("h2", "h2", "h3", "h1")


def test_equal_room_spreads_in_name_order() -> None:
    hosts = [HostLoad("h2", 3, 0), HostLoad("h1", 3, 0), HostLoad("h3", 3, 0)]
    assert place(hosts, 6).hosts == ("h1", "h2", "h3", "h1", "h2", "h3")


def test_down_and_full_hosts_take_nothing_and_the_rest_is_unplaced() -> None:
    hosts = [HostLoad("h1", 2, 2), HostLoad("h2", 5, 0, usable=False), HostLoad("h3", 2, 1)]
    placed = place(hosts, 3)
    assert placed.hosts == ("h3",)
    assert placed.unplaced == 2


def test_over_capacity_host_counts_as_full() -> None:
    assert HostLoad("h1", 2, 5).free == 0
    assert place([HostLoad("h1", 2, 5)], 1).unplaced == 1


def test_spread_victims_takes_from_the_fullest_host_in_policy_order() -> None:
    host_of = {"a": "h1", "b": "h1", "c": "h1", "d": "h2", "e": "h2", "f": "h3"}
    # policy order (best victim first): f, e, d, c, b, a
    assert spread_victims(["f", "e", "d", "c", "b", "a"], host_of, 3) == ["c", "e", "b"]


def views(spec: dict[str, str]) -> list[InstanceView]:
    return [InstanceView(id=i, started_at=T0 + timedelta(minutes=n), host=h)
            for n, (i, h) in enumerate(spec.items())]


def test_newest_selector_on_a_multihost_pool_keeps_it_spread() -> None:
    pool = views({"a": "h1", "b": "h2", "c": "h2", "d": "h3"})
    policy = AutoscalePolicy.build({"victim_selection": "newest"})
    assert [v.id for v in select_victims(policy, pool, 1)] == ["c"]  # h2 is fullest
    assert [v.id for v in select_victims(policy, pool, 2)] == ["c", "d"]


def test_least_loaded_overrides_the_spread() -> None:
    pool = views({"a": "h1", "b": "h2", "c": "h2"})
    policy = AutoscalePolicy.build({"victim_selection": "least_loaded"})
    # no metrics: equal load, id order decides; the host plays no part
    assert [v.id for v in select_victims(policy, pool, 1)] == ["a"]


def test_single_host_pool_is_unchanged() -> None:
    pool = [InstanceView(id=i, started_at=T0 + timedelta(minutes=n)) for n, i in enumerate("abc")]
    assert [v.id for v in select_victims("newest", pool, 2)] == ["c", "b"]

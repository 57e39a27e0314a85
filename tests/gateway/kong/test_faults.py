"""Convergence under injected faults: 20 % of requests fail (5xx, dropped before or after
being applied); the end state is exact, with no duplicate entity or target."""

from __future__ import annotations

from collections import Counter

import pytest

from tasks.gateway.kong.client import KongAdminClient
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.kong.sync import KongGateway
from tests.doubles.kong_server import Faults, kong_double

ADDRESSES = [f"127.0.0.1:{18300 + n}" for n in range(6)]


@pytest.mark.parametrize("dbless", [False, True], ids=["db", "dbless"])
@pytest.mark.parametrize("seed", [1, 3, 5])
def test_converges_with_20_percent_failures_and_no_duplicates(
    desired: GatewayState, seed: int, dbless: bool
) -> None:
    faults = Faults(failure_rate=0.2, seed=seed)
    with kong_double(dbless=dbless, faults=faults) as kong:
        client = KongAdminClient(base_url=kong.url, backoff_initial=0.002, backoff_max=0.02,
                                 timeout=2.0, attempts=8)
        gateway = KongGateway(client=client, drain_grace_seconds=0.0)
        gateway.apply(desired)
        for address in ADDRESSES:
            gateway.add_target(address)
        for address in ADDRESSES[:3]:
            gateway.drain_target(address)
            gateway.remove_target(address)

        faults.failure_rate = 0.0
        assert sum(faults.injected.values()) >= 5
        result = gateway.apply(desired)
        assert result.operations == [] and result.writes == 0
        for coll, key in (("services", "name"), ("routes", "name"), ("upstreams", "name"),
                          ("consumers", "username"), ("keyauth_credentials", "key")):
            counts = Counter(r[key] for r in kong.rows(coll))
            assert counts and max(counts.values()) == 1, coll
        plugins = Counter(p["name"] for p in kong.rows("plugins"))
        assert plugins == Counter({"key-auth": 1, "rate-limiting": 1, "acl": 2, "prometheus": 1,
                                   "correlation-id": 1, "http-log": 1})
        targets = sorted((t["target"], t["weight"]) for t in kong.rows("targets"))
        assert targets == [(a, 100) for a in ADDRESSES[3:]]
        gateway.close()


def test_latency_is_tolerated_within_timeouts(desired: GatewayState) -> None:
    with kong_double(faults=Faults(latency=0.02)) as kong:
        client = KongAdminClient(base_url=kong.url, timeout=1.0)
        result = KongGateway(client=client).apply(desired)
        assert result.writes == len(result.operations) == 14
        client.close()


def test_timeouts_are_retried(desired: GatewayState) -> None:
    with kong_double(faults=Faults(latency=0.3)) as kong:
        client = KongAdminClient(base_url=kong.url, timeout=0.1, attempts=2,
                                 backoff_initial=0.001)
        from tasks.gateway.kong.client import KongUnavailableError

        with pytest.raises(KongUnavailableError, match="ReadTimeout"):
            client.request("GET", "/services")
        assert kong.requests["GET"] == 2
        client.close()


def test_write_applied_but_answer_lost_is_not_duplicated(desired: GatewayState) -> None:
    """The dangerous retry: Kong applied the POST but the client never saw the 201."""
    with kong_double() as kong:
        client = KongAdminClient(base_url=kong.url, backoff_initial=0.001)
        gateway = KongGateway(client=client, drain_grace_seconds=0.0)
        gateway.apply(desired)
        kong.faults.scripted.append((-1, {}))
        gateway.add_target(ADDRESSES[0])
        assert [t["target"] for t in kong.rows("targets")] == [ADDRESSES[0]]
        kong.faults.scripted.append((-1, {}))
        gateway.remove_target(ADDRESSES[0])  # the retried DELETE gets 404: done
        assert kong.rows("targets") == []
        kong.faults.scripted += [(-1, {})] * 3
        gateway.apply(GatewayState())
        gateway.apply(desired)
        assert len(kong.rows("plugins")) == 7
        client.close()

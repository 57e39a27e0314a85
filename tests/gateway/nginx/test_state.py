"""The nginx gateway's stored state across kongstack upgrades."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr

from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.gateway.nginx.gateway import _State
from tasks.gateway.nginx.site import site_from_state


def test_a_site_stored_by_an_older_kongstack_is_dropped_and_the_targets_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    # Why: `kongstack up` after an upgrade failed with "9 validation errors for NginxSite"
    # on a state.json written before the site schema changed; the site is rebuilt from the
    # stack file on the next apply, but the pool's targets exist nowhere else.
    old = {"generation": 7,
           "site": {"routes": ["/api"], "consumers": {"demo": {"key": "k", "groups": []}}},
           "targets": {"127.0.0.1:9001": 100, "127.0.0.1:9002": 0}}
    with caplog.at_level(logging.WARNING):
        state = _State.from_json(json.dumps(old))
    assert state.site is None
    assert state.targets == {"127.0.0.1:9001": 100, "127.0.0.1:9002": 0}
    assert state.generation == 7
    assert "older kongstack" in caplog.text
    assert '"k"' not in caplog.text  # the stored key is never logged


def test_a_current_site_round_trips_with_its_keys() -> None:
    site = site_from_state(build_gateway_state(GatewayStackConfig(
        consumers=(ConsumerConfig(username="demo", key=SecretStr("k1")),))),
        upstream="stock-api-upstream")
    state = _State(generation=3, site=site, targets={"127.0.0.1:9001": 100})
    again = _State.from_json(state.to_json())
    assert again == state
    assert again.site is not None
    assert again.site.consumers["demo"].key.get_secret_value() == "k1"

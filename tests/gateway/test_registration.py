"""The one gateway state deploy-stack registers, on every provider."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tasks.gateway.desired import API_CONSUMER, ConsumerConfig, registration_state


def test_with_a_key_the_api_consumer_holds_it_and_key_auth_is_on() -> None:
    state = registration_state("s1", api_key="k-1", targets=["10.0.0.4:3021"],
                               log_endpoint="http://10.0.0.5:8000/kong",
                               rate_limit_per_minute=120)
    assert [c.username for c in state.consumers] == [API_CONSUMER] == ["api"]
    assert [(k.consumer, k.key.get_secret_value()) for k in state.keyauth_credentials] == [
        ("api", "k-1")]
    plugins = {p.name: p for p in state.plugins}
    assert "key-auth" in plugins and plugins["rate-limiting"].config["minute"] == 120
    assert plugins["http-log"].config["http_endpoint"] == "http://10.0.0.5:8000/kong"
    assert [t.target for t in state.targets or ()] == ["10.0.0.4:3021"]
    assert state.stack == "s1"


def test_without_a_key_there_is_no_consumer_and_no_key_auth() -> None:
    state = registration_state("s1", api_key=None)
    assert state.consumers == () and state.keyauth_credentials == ()
    assert "key-auth" not in {p.name for p in state.plugins}
    assert state.targets is None  # the autoscaler owns the target list
    assert "http-log" not in {p.name for p in state.plugins}


def test_a_secret_key_is_taken_as_is() -> None:
    state = registration_state("s1", api_key=SecretStr("k-2"))
    assert state.keyauth_credentials[0].key.get_secret_value() == "k-2"


def test_each_consumer_gets_its_key_groups_and_own_limit_next_to_the_older_key() -> None:
    consumers = (ConsumerConfig(username="reader", key=SecretStr("k-r"), access="read",
                                rate_limit_per_minute=30_000),
                 ConsumerConfig(username="writer", key=SecretStr("k-w"), access="write"))
    state = registration_state("s1", consumers=consumers, api_key="k-old")
    assert [c.username for c in state.consumers] == ["reader", "writer", "api"]
    assert sorted((a.consumer, a.group) for a in state.acls) == [
        ("api", "readers"), ("api", "writers"), ("reader", "readers"), ("writer", "readers"),
        ("writer", "writers")]
    own = {p.consumer: p.config["minute"] for p in state.plugins
           if p.name == "rate-limiting" and p.consumer}
    assert own == {"reader": 30_000}  # the others: the service-wide default
    assert {"key-auth", "acl"} <= {p.name for p in state.plugins}


def test_a_consumer_cannot_take_the_older_keys_name() -> None:
    with pytest.raises(ValueError, match="'api' is taken"):
        registration_state("s1", consumers=(ConsumerConfig(username="api", key=SecretStr("x")),),
                           api_key="k-old")

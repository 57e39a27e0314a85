"""The one gateway state deploy-stack registers, on every provider."""

from __future__ import annotations

from pydantic import SecretStr

from tasks.gateway.desired import API_CONSUMER, registration_state


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

"""Consumers from the stack file, keys from the environment or Prefect Secret blocks."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml

from kongstack.core.errors import ConfigError
from kongstack.core.settings import REPO_ROOT
from kongstack.core.topology import ConsumerSettings, Topology, parse_topology
from tasks.gateway.consumers import (
    SecretStore,
    consumer_configs,
    key_env,
    limit_warnings,
    resolve_keys,
    usage_hint,
)


class DictStore(SecretStore):
    def __init__(self, blocks: dict[str, str] | None = None, *, racing: str = "") -> None:
        self.blocks = dict(blocks or {})
        self.racing = racing  # a concurrent deploy creates this block first

    def load(self, name: str) -> str | None:
        return self.blocks.get(name)

    def create(self, name: str, value: str) -> bool:
        if name == self.racing:
            self.blocks[name] = "their-key"
            return False
        if name in self.blocks:
            return False
        self.blocks[name] = value
        return True


def _topology(**changes: Any) -> Topology:
    data = yaml.safe_load((REPO_ROOT / "deployments" / "stack.yaml").read_text())
    data.update(changes)
    return parse_topology(data)


def test_stack_file_consumers_have_bounds_and_named_errors() -> None:
    topo = _topology()
    assert [(c.name, c.access) for c in topo.consumers] == [("reader", "read"),
                                                           ("writer", "write")]
    for bad, field in (
        ({"name": "reader", "rate_limit_per_minute": 0}, "consumers[0].rate_limit_per_minute"),
        ({"name": "reader", "rate_limit_per_minute": 10**9},
         "consumers[0].rate_limit_per_minute"),
        ({"name": "Bad_Name"}, "consumers[0].name"),
        ({"name": "reader", "access": "admin"}, "consumers[0].access"),
        ({"name": "reader", "limit": 5}, "consumers[0].limit"),
    ):
        with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
            _topology(consumers=[bad])
    with pytest.raises(ConfigError, match="consumer names must be unique"):
        _topology(consumers=[{"name": "app"}, {"name": "app"}])
    with pytest.raises(ConfigError, match="consumers: List should have at least 1 item"):
        _topology(consumers=[])


def test_keys_are_created_once_and_then_read_from_the_blocks() -> None:
    topo = _topology()
    store = DictStore()
    made = iter(["k-reader", "k-writer"])
    first = resolve_keys(topo, create=True, store=store, environ={},
                         new_key=lambda: next(made))
    assert [(k.consumer.name, k.source, k.block) for k in first] == [
        ("reader", "created", "kongstack-key-reader"),
        ("writer", "created", "kongstack-key-writer")]
    assert store.blocks == {"kongstack-key-reader": "k-reader", "kongstack-key-writer": "k-writer"}
    again = resolve_keys(topo, create=True, store=store, environ={},
                         new_key=lambda: pytest.fail("a key was made twice"))
    assert [(k.key.get_secret_value(), k.source) for k in again] == [
        ("k-reader", "secret block"), ("k-writer", "secret block")]
    assert "k-reader" not in repr(again)
    configs = consumer_configs(again)
    assert [(c.username, c.access, c.rate_limit_per_minute) for c in configs] == [
        ("reader", "read", 60000), ("writer", "write", 60000)]


def test_environment_wins_and_missing_keys_are_named_without_creating() -> None:
    topo = _topology(consumers=[{"name": "mobile-app", "key_secret": "team-mobile-key"},
                                {"name": "batch", "access": "write"}])
    assert key_env("mobile-app") == "KONGSTACK_KEY_MOBILE_APP"
    store = DictStore()
    with pytest.raises(ConfigError, match="no key for batch .*kongstack-key-batch") as err:
        resolve_keys(topo, create=False, store=store,
                     environ={"KONGSTACK_KEY_MOBILE_APP": "from-env"})
    assert "mobile-app" not in str(err.value) and store.blocks == {}
    keys = resolve_keys(topo, create=True, store=DictStore(racing="kongstack-key-batch"),
                        environ={"KONGSTACK_KEY_MOBILE_APP": "from-env"})
    assert [(k.consumer.name, k.source, k.key.get_secret_value()) for k in keys] == [
        ("mobile-app", "environment", "from-env"), ("batch", "secret block", "their-key")]


@pytest.mark.parametrize(
    ("limits", "warned"),
    [
        pytest.param([60000, 6000], ["writer"], id="writer-below-420-rps"),
        pytest.param([25200, 25200], [], id="exactly-the-planned-capacity"),
        pytest.param([600, 600], ["reader", "writer"], id="kongs-old-600-per-minute"),
    ],
)
def test_limit_below_the_pools_planned_capacity_is_warned(limits: list[int],
                                                          warned: list[str]) -> None:
    consumers = [ConsumerSettings(name="reader", rate_limit_per_minute=limits[0]),
                 ConsumerSettings(name="writer", access="write",
                                  rate_limit_per_minute=limits[1])]
    warnings = limit_warnings(consumers, max_instances=6, rps_per_instance=70)
    assert [w.split(":")[0] for w in warnings] == [
        f"consumers[{[c.name for c in consumers].index(n)}].rate_limit_per_minute"
        for n in warned]
    if warned:
        assert "420 req/s (6 instances × 70 req/s)" in warnings[0]


def test_usage_hint_names_blocks_and_commands_never_keys() -> None:
    topo = _topology()
    keys = resolve_keys(topo, create=True, store=DictStore(), environ={},
                        new_key=lambda: "s3cret-" + uuid.uuid4().hex)
    text = "\n".join(usage_hint(keys, "http://127.0.0.1:18000"))
    assert "s3cret" not in text
    assert "kongstack-key-reader" in text and "kongstack key reader" in text
    assert "read only" in text and "read and write" in text
    other = "\n".join(usage_hint(keys, "http://127.0.0.1:18000", config="/srv/stack.yaml"))
    assert "kongstack key reader --config /srv/stack.yaml)" in other
    assert "load --consumer reader --config /srv/stack.yaml" in other


def test_real_secret_blocks(prefect_harness: None) -> None:
    stack = f"kt{uuid.uuid4().hex[:8]}"
    topo = _topology(name=stack)
    created = resolve_keys(topo, create=True, environ={})
    assert {k.source for k in created} == {"created"}
    assert len(created[0].key.get_secret_value()) >= 43
    again = resolve_keys(topo, create=False, environ={})
    assert [k.key for k in again] == [k.key for k in created]
    assert SecretStore().create(f"{stack}-key-reader", "other") is False

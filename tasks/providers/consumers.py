"""The API's consumers at deploy time, on every provider.

deploy-stack (``kongstack up`` locally, the Azure register step) reads each consumer's key
from its Prefect Secret block, creates the keys that are missing (tasks.gateway.consumers),
and checks each consumer's rate limit against what the pool is planned to serve at its
largest (the autoscale policy's ``max_instances`` × its request rate per instance): a client
limited below that gets 429 from the gateway before the autoscaler has a reason to grow.
Notes and warnings name consumers and Secret blocks, never a key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from kongstack.core.errors import ConfigError
from kongstack.core.topology import Topology
from tasks.gateway.consumers import ConsumerKey, consumer_configs, limit_warnings, resolve_keys
from tasks.gateway.desired import ConsumerConfig

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class DeployConsumers:
    keys: list[ConsumerKey]
    changes: list[str]
    """The keys this run created (consumer and Secret block)."""
    warnings: list[str]
    """Consumers limited below the pool's planned capacity."""

    @property
    def configs(self) -> tuple[ConsumerConfig, ...]:
        return consumer_configs(self.keys)

    def probe_key(self) -> str:
        """The key a health probe uses: the first read-only consumer's (least privilege)."""
        key = next((k for k in self.keys if k.consumer.access == "read"), self.keys[0])
        return key.key.get_secret_value()


def planned_consumers(topo: Topology) -> tuple[ConsumerConfig, ...]:
    """The consumers as a dry run shows them: access and limits, a placeholder for each key
    (nothing is read from or created in a Secret block)."""
    return tuple(ConsumerConfig(username=c.name, key=SecretStr(f"(Secret block "
                                                                f"{topo.key_secret(c)})"),
                                access=c.access, rate_limit_per_minute=c.rate_limit_per_minute)
                 for c in topo.consumers)


def planned_capacity() -> tuple[int, float]:
    """(max_instances, requests/s per instance) of the autoscale policy in force; the
    service model's capacity when the policy sets no request-rate target."""
    from autoscaler.service_model import ServiceModel
    from tasks.tick.config import load_autoscale_config

    policy = load_autoscale_config().policy
    return policy.max_instances, policy.target_rps_per_instance or ServiceModel().capacity_rps


def capacity_warnings(topo: Topology) -> list[str]:
    """The limit warnings of ``limit_warnings``, or one note saying why none were checked."""
    try:
        max_instances, per_instance = planned_capacity()
    except ConfigError as exc:  # the autoscale flow reports its own config errors
        return [f"consumers: rate limits not checked against the pool ({exc})"]
    return limit_warnings(topo.consumers, max_instances=max_instances,
                          rps_per_instance=per_instance)


def deploy_consumers(topo: Topology, *, log: LogFn) -> DeployConsumers:
    """Every consumer's key (created in its Secret block when missing), the keys created and
    the limit warnings (also logged)."""
    keys = resolve_keys(topo, create=True)
    changes = [f"consumer {k.consumer.name}: key created in Secret block {k.block}"
               for k in keys if k.source == "created"]
    warnings = capacity_warnings(topo)
    for line in warnings:
        log(f"warning: {line}")
    return DeployConsumers(keys, changes, warnings)

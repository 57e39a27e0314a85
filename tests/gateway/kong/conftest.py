from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydantic import AnyHttpUrl, SecretStr

from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.gateway.kong.client import KongAdminClient
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.kong.sync import KongGateway
from tests.doubles.kong_server import KongDouble, kong_double

DEMO_KEY = "demo-key-7f3a9c"


@pytest.fixture
def stack_config() -> GatewayStackConfig:
    return GatewayStackConfig(
        consumers=(ConsumerConfig(username="demo", key=SecretStr(DEMO_KEY)),),
        log_endpoint=AnyHttpUrl("http://127.0.0.1:9/logs"),
    )


@pytest.fixture
def desired(stack_config: GatewayStackConfig) -> GatewayState:
    return build_gateway_state(stack_config)


@pytest.fixture
def kong() -> Iterator[KongDouble]:
    with kong_double() as double:
        yield double


@pytest.fixture
def kong_dbless() -> Iterator[KongDouble]:
    with kong_double(dbless=True) as double:
        yield double


GatewayFactory = Callable[..., KongGateway]


@pytest.fixture
def make_gateway() -> Iterator[GatewayFactory]:
    made: list[KongGateway] = []

    def make(double: KongDouble, **client_kwargs: object) -> KongGateway:
        kwargs: dict[str, object] = {"backoff_initial": 0.005, "backoff_max": 0.05,
                                     "timeout": 2.0}
        kwargs.update(client_kwargs)
        client = KongAdminClient(base_url=double.url, **kwargs)  # type: ignore[arg-type]
        gateway = KongGateway(client=client, drain_grace_seconds=0.0)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from kongstack.core.procs import free_port
from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig
from tasks.gateway.nginx import NginxGateway
from tests.support.services import require_binary

KEY = "nginx-demo-key-4b1d"
OTHER_KEY = "nginx-other-key-90ce"


@pytest.fixture
def stack_config() -> GatewayStackConfig:
    return GatewayStackConfig(
        consumers=(ConsumerConfig(username="demo", key=SecretStr(KEY)),
                   ConsumerConfig(username="other", key=SecretStr(OTHER_KEY))),
        rate_limit_per_minute=100000,
    )


GatewayMaker = Callable[..., NginxGateway]


@pytest.fixture
def make_nginx(tmp_path: Path) -> Iterator[GatewayMaker]:
    binary = require_binary("nginx")
    made: list[NginxGateway] = []

    def make(prefix: Path | None = None) -> NginxGateway:
        gateway = NginxGateway(prefix=prefix or tmp_path / f"nginx-{len(made)}",
                               port=free_port(), status_port=free_port(), binary=binary)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.stop()


@pytest.fixture
def nginx(make_nginx: GatewayMaker) -> NginxGateway:
    return make_nginx()

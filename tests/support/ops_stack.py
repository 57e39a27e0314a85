"""A real local stack for the ops tests: gunicorn stock-API processes (process driver) behind
a real nginx gateway, on free loopback ports, under a temporary home. Torn down afterwards."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kongstack.core.procs import free_port, free_port_block
from tasks.cleanup.steps import pool_config
from tasks.tick.pool import PoolConfig, build_driver, build_gateway


@dataclass(frozen=True)
class LocalStack:
    config: PoolConfig
    home: Path
    data_dir: Path

    @property
    def local(self) -> dict[str, Any]:
        return dict(self.config.local)

    def env(self) -> dict[str, str]:
        """KONGSTACK_* variables that point the CLI at this stack."""
        local = self.config.local
        return {
            "KONGSTACK_HOME": str(local["home"]),
            "KONGSTACK_GATEWAY_PORT": str(local["gateway_port"]),
            "KONGSTACK_GATEWAY_STATUS_PORT": str(local["gateway_status_port"]),
            "KONGSTACK_API_BASE_PORT": str(local["api_base_port"]),
            "KONGSTACK_REDIS_PORT": str(self.config.redis_url or "").rsplit(":", 1)[-1]
            .split("/")[0],
            "KONGSTACK_PROMETHEUS_PORT": str(local["prometheus_port"]),
        }


def _apply_gateway(config: PoolConfig) -> None:
    from tasks.gateway.desired import GatewayStackConfig, build_gateway_state

    gateway = build_gateway(config)
    try:
        gateway.apply(build_gateway_state(GatewayStackConfig(stack=config.stack)))
    finally:
        gateway.close()


@contextmanager
def local_stack(tmp_path: Path, redis_url: str, instances: int = 2) -> Iterator[LocalStack]:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (run scripts/setup)")
    from tasks.tick.act import scale_up

    home = tmp_path / "var"
    data_dir = home / "data" / "stock_api"
    config = pool_config(
        f"t-{uuid.uuid4().hex[:8]}", driver="process", gateway="nginx",
        local={"home": home, "gateway_port": free_port(), "gateway_status_port": free_port(),
               "api_base_port": free_port_block(), "prometheus_port": free_port()},
        redis_url=redis_url, data_dir=data_dir, drain_seconds=0.5, drain_min_seconds=0.0,
        stop_grace_seconds=2.0, ready_timeout_seconds=120.0,  # 2 shared cores can be slow
    )
    stack = LocalStack(config=config, home=home, data_dir=data_dir)
    try:
        _apply_gateway(config)
        if instances:
            record = scale_up.fn(config, to_count=instances)
            assert record.outcome == "ok", record
        yield stack
    finally:
        driver, gateway = build_driver(config), build_gateway(config)
        for inst in driver.list():
            driver.stop(inst.id, grace=1.0)
        stop = getattr(gateway, "stop", None)
        if stop is not None:
            stop()

"""A throwaway local stack: its own home directory, free loopback ports, a unique stack name."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kongstack.core.procs import free_port_block
from kongstack.core.settings import LocalSettings
from kongstack.core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from tasks.providers.local.stack import LocalStack

PORT_VARS = ("REDIS_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "GATEWAY_PORT",
             "GATEWAY_STATUS_PORT", "WEBHOOK_PORT", "API_BASE_PORT")


@dataclass(frozen=True)
class LocalEnv:
    config: Path
    settings: LocalSettings
    env: dict[str, str]

    def stack(self) -> LocalStack:
        return LocalStack(load_topology(self.config), self.settings, lambda _: None)


def write_stack_file(path: Path, **changes: object) -> Path:
    data = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory,
              prefect_harness: None) -> Iterator[LocalEnv]:
    """The stack's consumer keys go to the test server's Secret blocks (unique stack name)."""
    home = tmp_path_factory.mktemp("stack")
    env = {"KONGSTACK_HOME": str(home)}
    # Every port below the ephemeral range, so no outgoing connection can take one first.
    base = free_port_block(40)
    env.update({f"KONGSTACK_{name}": str(base + i) for i, name in enumerate(PORT_VARS)})
    env["KONGSTACK_API_BASE_PORT"] = str(base + 20)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    config = write_stack_file(
        home / "stack.yaml", name=f"t{uuid.uuid4().hex[:8]}",
        local={"instances": 2, "driver": "process", "seed_symbols": 20},
    )
    local = LocalEnv(config, LocalSettings(), env)
    try:
        yield local
    finally:
        local.stack().stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

"""Real local stacks for the autoscale tests: nginx, Prometheus, stock API instances from the
process driver (always) or the Docker driver (when the Podman socket answers)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kongstack.core.settings import REPO_ROOT, LocalSettings
from tasks.instances.common import engine_usable
from tests.support.autoscale_stack import Stack, autoscale_stack


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (run scripts/setup)")


@pytest.fixture
def process_stack(tmp_path: Path, redis_url: str, prefect_harness: None) -> Iterator[Stack]:
    _require("nginx")
    _require("prometheus")
    with autoscale_stack(tmp_path, driver="process", redis_url=redis_url) as stack:
        yield stack


@pytest.fixture(scope="session")
def engine_image() -> str:
    local = LocalSettings()
    reason = engine_usable(local.docker_host)
    if reason is not None:
        pytest.skip(f"no Docker-API engine: {reason} (start it with scripts/engine start)")
    done = subprocess.run([str(REPO_ROOT / "scripts" / "build-image")], capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"scripts/build-image failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return local.image


@pytest.fixture
def docker_stack(tmp_path: Path, redis_url: str, prefect_harness: None,
                 engine_image: str) -> Iterator[Stack]:
    _require("nginx")
    _require("prometheus")
    with autoscale_stack(tmp_path, driver="docker", redis_url=redis_url) as stack:
        yield stack

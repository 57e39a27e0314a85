"""Fixtures for the instance drivers: a process driver in a temporary directory, and a Docker
driver on the Podman socket with the stock API image (built once per session, cached)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kongstack.core.settings import REPO_ROOT, LocalSettings
from tasks.instances.base import InstanceDriver
from tasks.instances.common import DockerSettings, ProcessSettings, engine_usable


def _stop_all(driver: InstanceDriver) -> None:
    for instance in driver.list():
        driver.stop(instance.id, grace=2)


def _stack() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"  # one owner per test: tests never see each other


@pytest.fixture
def process_settings(tmp_path: Path, redis_url: str) -> ProcessSettings:
    return ProcessSettings(
        stack=_stack(), redis_url=redis_url, data_dir=tmp_path / "data",
        run_dir=tmp_path / "run", log_dir=tmp_path / "log",
    )


@pytest.fixture
def process_driver(process_settings: ProcessSettings) -> Iterator[InstanceDriver]:
    from tasks.instances.process import ProcessDriver

    driver = ProcessDriver(process_settings)
    yield driver
    _stop_all(driver)


@pytest.fixture(scope="session")
def engine_image() -> tuple[str, str]:
    """(engine base_url, image) once the engine answers and the image is current.

    scripts/build-image is a no-op in about a second when nothing changed, so running it once per
    session keeps the image in step with stock_api/ without rebuilding needlessly."""
    local = LocalSettings()
    reason = engine_usable(local.docker_host)
    if reason is not None:
        pytest.skip(f"no Docker-API engine: {reason} (start it with scripts/engine start)")
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-image")], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/build-image failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return local.docker_host, local.image


@pytest.fixture
def docker_settings(
    engine_image: tuple[str, str], tmp_path: Path, redis_url: str
) -> DockerSettings:
    base_url, image = engine_image
    return DockerSettings(
        stack=_stack(), base_url=base_url, image=image, redis_url=redis_url,
        data_dir=tmp_path / "data", cpus=1.0, memory="256m",
    )


@pytest.fixture
def docker_driver(docker_settings: DockerSettings) -> Iterator[InstanceDriver]:
    from tasks.instances.docker import DockerDriver

    driver = DockerDriver(docker_settings)
    yield driver
    _stop_all(driver)

"""The httpx reader of a local engine (``kongstack status``) sees exactly the pool the docker
driver sees, on the real Podman socket; and says why an engine is not usable as the SDK did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kongstack.core.settings import REPO_ROOT
from tasks.instances.base import InstanceState
from tasks.instances.common import DockerSettings, engine_usable
from tasks.instances.docker import DockerDriver
from tasks.instances.engine_http import EngineInstanceReader, engine_usable_http

pytestmark = [pytest.mark.engine, pytest.mark.timeout(180)]


def test_the_reader_lists_what_the_driver_lists(docker_driver: DockerDriver,
                                                 docker_settings: DockerSettings) -> None:
    reader = EngineInstanceReader(docker_settings)
    assert reader.list() == docker_driver.list() == []
    ready = docker_driver.wait_ready(docker_driver.start(), timeout=60)
    stopped = docker_driver.wait_ready(docker_driver.start(), timeout=60)
    docker_driver.client.containers.get(stopped.id).stop(timeout=2)  # an exited one too
    by_driver, by_reader = docker_driver.list(), reader.list()
    assert by_reader == by_driver  # ids, names, addresses, states, start times, labels, image
    assert {i.id: i.state for i in by_reader} == {ready.id: InstanceState.READY,
                                                   stopped.id: InstanceState.EXITED}
    assert all(i.version and i.started_at.tzinfo for i in by_reader)


def test_engine_usable_says_why_as_before(engine_image: tuple[str, str], tmp_path: Path) -> None:
    base_url, image = engine_image
    assert engine_usable(base_url, image) is None
    missing = "localhost/kongstack-no-such-image:never"
    assert engine_usable(base_url, missing) == (
        f"engine at {base_url} answers but has no image {missing} (run scripts/build-image)")
    dead = f"unix://{tmp_path}/no-engine.sock"
    assert engine_usable_http(dead) == f"engine at {dead} does not answer: ConnectError"


def test_listing_a_local_engine_imports_no_docker_sdk(docker_settings: DockerSettings) -> None:
    probe = ("import json, sys\n"
             "from tasks.instances.common import DockerSettings\n"
             "from tasks.instances.engine_http import EngineInstanceReader\n"
             "settings = DockerSettings.model_validate_json(sys.argv[1])\n"
             "print(len(EngineInstanceReader(settings).list()))\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", probe, docker_settings.model_dump_json()],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True)
    count, modules = done.stdout.splitlines()[-2:]
    assert count == "0" and not {"docker", "paramiko"} & set(json.loads(modules))

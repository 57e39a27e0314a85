"""The stock API image carries the OCI annotations: version, revision, source, created, title,
licenses, read back through the engine's API from an image scripts/build-image built."""

from __future__ import annotations

import os
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from kongstack.core.settings import REPO_ROOT, LocalSettings
from tasks.instances.common import engine_usable

OCI = "org.opencontainers.image."


@pytest.fixture
def built_image() -> Iterator[tuple[str, dict[str, str], datetime]]:
    """A private tag built by scripts/build-image (removed afterwards), and its labels."""
    local = LocalSettings()
    reason = engine_usable(local.docker_host)
    if reason is not None:
        pytest.skip(f"no Docker-API engine: {reason} (start it with scripts/engine start)")
    import docker

    tag = f"localhost/kongstack-stock-api-labels:{uuid.uuid4().hex[:10]}"
    source = "https://git.example.org/kongstack/kongstack"
    started = datetime.now(UTC).replace(microsecond=0)
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-image")], capture_output=True, text=True,
        timeout=900, env={**os.environ, "KONGSTACK_IMAGE": tag, "KONGSTACK_IMAGE_SOURCE": source})
    client = docker.DockerClient(base_url=local.docker_host, timeout=60)
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        labels = client.images.get(tag).labels
        yield source, labels, started
    finally:
        try:
            client.images.remove(tag, noprune=False)
        except docker.errors.ImageNotFound:
            pass
        client.close()


def test_the_image_says_which_version_and_revision_it_is(
    built_image: tuple[str, dict[str, str], datetime],
) -> None:
    source, labels, started = built_image
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    revision = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=30, check=False)
    assert labels[OCI + "version"] == version
    assert labels[OCI + "title"] == "kongstack-stock-api"
    assert labels[OCI + "licenses"] == "MIT"
    assert labels[OCI + "source"] == source
    expected_revision = revision.stdout.strip() if revision.returncode == 0 else "unknown"
    assert labels[OCI + "revision"] == expected_revision
    created = datetime.strptime(labels[OCI + "created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert started - timedelta(seconds=1) <= created <= datetime.now(UTC)  # a new tag: built now
    assert labels["kongstack.image.content-hash"]

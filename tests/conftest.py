from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis for the whole session (``redis://127.0.0.1:PORT/0``)."""
    workdir: Path = tmp_path_factory.mktemp("redis")
    with redis_server(workdir) as (host, port, _daemon):
        yield f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One real Prefect API server (temporary SQLite) for the whole test session."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def prefect_postgres_api() -> Iterator[str]:
    """A real Prefect server on a private PostgreSQL cluster for the whole session (its
    API URL), started as ``kongstack up`` starts it with KONGSTACK_PREFECT_DB=postgresql."""
    from kongstack.cli.localprefect import api_url
    from tests.support.prefect_servers import prefect_server

    with prefect_server("postgresql") as settings:
        yield api_url(settings)


@pytest.fixture(params=["sqlite", "postgresql"])
def prefect_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test runs against a Prefect server on each database backend in turn."""
    if request.param == "sqlite":
        request.getfixturevalue("prefect_harness")
        yield "sqlite"
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = request.getfixturevalue("prefect_postgres_api")
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield "postgresql"

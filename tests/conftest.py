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

"""Real Prefect servers on either backend, started the way ``kongstack up`` starts them
(kongstack.cli.localprefect.start_server with its own KONGSTACK_HOME and free ports)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest

from kongstack.cli.localprefect import start_server, stop_server
from kongstack.core.errors import SetupError
from kongstack.core.postgres import find_bindir
from kongstack.core.procs import free_port
from kongstack.core.settings import LocalSettings

Backend = Literal["sqlite", "postgresql"]


def require_postgres() -> None:
    try:
        find_bindir()
    except SetupError as exc:
        pytest.skip(str(exc))


@contextmanager
def shared_tmpdir(prefix: str) -> Iterator[Path]:
    """A temporary directory others can traverse: as root, PostgreSQL runs as the postgres
    user, which cannot enter pytest's 0700 temporary root."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def server_settings(home: Path, backend: Backend) -> LocalSettings:
    home.mkdir(parents=True, exist_ok=True)
    settings = LocalSettings(home=home, prefect_port=free_port(), postgres_port=free_port(),
                             prefect_db=backend)
    settings.ensure_dirs()
    return settings


@contextmanager
def prefect_server(backend: Backend, home: Path | None = None) -> Iterator[LocalSettings]:
    """A Prefect server on ``backend`` for the duration; yields its settings (``api_url``)."""
    if backend == "postgresql":
        require_postgres()
    with shared_tmpdir(f"kongstack-prefect-{backend}-") as tmp:
        settings = server_settings(home or tmp / "home", backend)
        # The caller's own Prefect database settings must not leak into the server.
        saved = {k: os.environ.pop(k) for k in list(os.environ)
                 if k.startswith("PREFECT_SERVER_DATABASE_")}
        try:
            start_server(settings, timeout=180)
            yield settings
        finally:
            stop_server(settings)
            os.environ.update(saved)

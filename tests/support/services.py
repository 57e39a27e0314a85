"""Real local services for tests: started on free loopback ports, stopped afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kongstack.core.procs import Daemon, free_port, port_open


def require_binary(path: str) -> str:
    found = shutil.which(path) or (path if Path(path).exists() else None)
    if not found:
        pytest.skip(f"{path} is not installed (run scripts/setup)")
    return found


@contextmanager
def redis_server(workdir: Path, bind: str = "127.0.0.1") -> Iterator[tuple[str, int, Daemon]]:
    """A real redis-server on a free port of ``bind`` (loopback by default), no persistence."""
    binary = require_binary("redis-server")
    port = free_port(bind)
    daemon = Daemon(name=f"redis-{port}", run_dir=workdir)
    # Off loopback (a test bridge), clients come from other hosts: no protected mode.
    protected = "yes" if bind.startswith("127.") else "no"
    daemon.start(
        [binary, "--port", str(port), "--bind", bind, "--save", "", "--appendonly", "no",
         "--protected-mode", protected, "--dir", str(workdir)],
        ready=lambda: port_open(bind, port),
        log_file=workdir / f"redis-{port}.log",
        timeout=15,
    )
    try:
        yield bind, port, daemon
    finally:
        daemon.stop(grace=5)

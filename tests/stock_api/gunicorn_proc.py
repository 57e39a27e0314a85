"""Run the stock API under gunicorn as a real process on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kongstack.core.procs import Daemon, free_port, http_ok
from kongstack.core.settings import REPO_ROOT


@dataclass(frozen=True)
class ApiProcess:
    daemon: Daemon
    port: int
    log_file: Path
    out_file: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def gunicorn_argv() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", "python:stock_api.gunicorn_conf",
            "stock_api.app:create_app()"]


@contextmanager
def api_process(
    workdir: Path, env: Mapping[str, str], *, timeout: float = 30.0
) -> Iterator[ApiProcess]:
    port = free_port()
    daemon = Daemon(name=f"stock-api-{port}", run_dir=workdir)
    log_file = workdir / f"api-{port}.jsonl"
    out_file = workdir / f"gunicorn-{port}.out"
    full_env = {"PORT": str(port), "LOG_FILE": str(log_file), "INSTANCE_ID": f"it-{port}",
                **env}
    daemon.start(
        gunicorn_argv(), ready=lambda: http_ok(f"http://127.0.0.1:{port}/health"),
        log_file=out_file, env=full_env, cwd=REPO_ROOT, timeout=timeout,
    )
    try:
        yield ApiProcess(daemon=daemon, port=port, log_file=log_file, out_file=out_file)
    finally:
        daemon.stop(grace=20)

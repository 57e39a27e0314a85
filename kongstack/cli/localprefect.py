"""The local Prefect server that the demo and the CLI talk to: on SQLite under var/prefect by
default, or on PostgreSQL when KONGSTACK_PREFECT_DB=postgresql / KONGSTACK_PREFECT_DATABASE_URL
is set (kongstack/core/prefectdb.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kongstack.core import prefectdb
from kongstack.core.procs import Daemon, http_ok
from kongstack.core.settings import LocalSettings

PREFECT_ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # A 30-second schedule adds ~130 KiB per tick to SQLite (~390 MB a day, 60 % events,
    # docs/benchmarks.md): keep 2 days of runs and 1 day of events locally. The maintenance
    # flow prunes older autoscale runs too.
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": "P2D",
    "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": "P1D",
    # The runner polls for due runs every 2 s instead of 10 s (alert fast path).
    "PREFECT_RUNNER_POLL_FREQUENCY": "2",
}


def api_url(settings: LocalSettings) -> str:
    return f"http://{settings.host}:{settings.prefect_port}/api"


def ui_url(settings: LocalSettings) -> str:
    return f"http://{settings.host}:{settings.prefect_port}"


def prefect_env(settings: LocalSettings) -> dict[str, str]:
    """Environment for processes that use the local server."""
    env = dict(PREFECT_ENV_DEFAULTS)
    env["PREFECT_HOME"] = str(settings.home / "prefect")
    env["PREFECT_API_URL"] = api_url(settings)
    return env


def use_local_server_if_running(settings: LocalSettings) -> bool:
    """Point this process at the local server when it runs and nothing else is configured."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if server_daemon(settings).running():
        os.environ.update({k: v for k, v in prefect_env(settings).items() if k not in os.environ})
        return True
    return False


def server_daemon(settings: LocalSettings) -> Daemon:
    return Daemon("prefect-server", settings.run_dir)


def start_server(settings: LocalSettings, timeout: float = 120.0) -> str:
    """Start ``prefect server start`` on loopback unless it already answers (its database
    first: the local PostgreSQL cluster when configured); return the UI URL."""
    database = prefectdb.prepare(settings)
    prefect_bin = str(Path(sys.executable).with_name("prefect"))
    health = f"{api_url(settings)}/health"
    server_daemon(settings).start(
        [prefect_bin, "server", "start", "--host", settings.host,
         "--port", str(settings.prefect_port)],
        ready=lambda: http_ok(health, timeout=2.0),
        log_file=settings.log_dir / "prefect-server.log",
        env=prefect_env(settings) | database.server_env,  # the password: this process only
        timeout=timeout,
    )
    return ui_url(settings)


def stop_server(settings: LocalSettings) -> bool:
    """Stop the server, then the local PostgreSQL cluster if one runs (data is kept)."""
    stopped = server_daemon(settings).stop(grace=15.0)
    return prefectdb.stop_local(settings) or stopped

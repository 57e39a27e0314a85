"""The local Prefect server that the demo and the CLI talk to: on SQLite under var/prefect by
default, or on PostgreSQL when KONGSTACK_PREFECT_DB=postgresql / KONGSTACK_PREFECT_DATABASE_URL
is set (kongstack/core/prefectdb.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
    # Without the local server (`kongstack key` after `down`), Prefect's ephemeral API on the
    # same database: its 20 s default start is too short on 2 busy cores.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
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


def use_local_prefect(settings: LocalSettings) -> str:
    """Point this process at the stack's Prefect database, whether its server runs or not.

    $PREFECT_API_URL, if set, wins; else the local server when it runs; else Prefect's
    ephemeral API on the server's own SQLite file (PREFECT_HOME under the stack's home), so
    the Secret blocks `kongstack up` wrote are found by `kongstack key` after `kongstack
    down` too. Returns which one. Call before prefect is imported.
    """
    if use_local_server_if_running(settings):
        return os.environ["PREFECT_API_URL"]
    if "prefect" in sys.modules:  # too late to take effect here; would only leak into children
        return "as configured before prefect was imported"
    env = {k: v for k, v in prefect_env(settings).items() if k != "PREFECT_API_URL"}
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    return f"ephemeral ({os.environ['PREFECT_HOME']})"


@contextmanager
def local_server_settings(settings: LocalSettings) -> Iterator[None]:
    """Talk to the local server inside the block, although prefect was imported (and read its
    settings) before the server started: ``kongstack up``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url(settings)}):
        yield


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

"""Every CLI process finds the stack's Prefect database, whether its server runs or not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = ("from kongstack.core.settings import LocalSettings\n"
         "from kongstack.cli.localprefect import use_local_prefect\n"
         "print(use_local_prefect(LocalSettings()))\n"
         "from prefect.settings import get_current_settings\n"
         "s = get_current_settings()\n"
         "print(s.home, s.api.url, s.server.ephemeral.startup_timeout_seconds)\n")


def _probe(env: dict[str, str]) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(KONGSTACK_HOME=str(tmp_path), KONGSTACK_PREFECT_PORT="1", **extra)
    return env


def test_without_a_server_prefect_uses_the_servers_database(tmp_path: Path) -> None:
    """No server answers (port 1): Prefect's ephemeral API on <home>/prefect, with a start
    timeout that fits a busy machine; nothing is started by merely asking."""
    which, settings = _probe(_env(tmp_path))
    assert which == f"ephemeral ({tmp_path / 'prefect'})"
    assert settings == f"{tmp_path / 'prefect'} None 120"


def test_an_explicit_prefect_configuration_wins(tmp_path: Path) -> None:
    which, settings = _probe(_env(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api"))
    assert which == "http://127.0.0.1:9/api"
    assert settings.split()[1] == "http://127.0.0.1:9/api"

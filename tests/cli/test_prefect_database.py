"""The Prefect server's database: SQLite by default, PostgreSQL one setting away."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from kongstack.cli.app import app
from kongstack.cli.localprefect import api_url, start_server, stop_server
from kongstack.core import prefectdb
from kongstack.core.errors import ConfigError
from kongstack.core.settings import LocalSettings, load_settings
from tests.support.prefect_servers import prefect_server

SECRET = "pw-that-must-not-leak"
TEMPLATE_URL = "postgresql+asyncpg://prefect:${PREFECT_SERVER_DATABASE_PASSWORD}@db:5432/prefect"


def settings(tmp_path: Path, **values: object) -> LocalSettings:
    return LocalSettings(home=tmp_path, **values)  # type: ignore[arg-type]


def test_sqlite_is_the_default_and_needs_nothing(tmp_path: Path) -> None:
    chosen = prefectdb.prepare(settings(tmp_path))
    assert chosen.kind == "sqlite" and chosen.server_env == {}
    assert str(tmp_path / "prefect" / "prefect.db") in chosen.description
    assert not (tmp_path / "postgres").exists()


def test_external_server_gets_the_url_and_the_password(tmp_path: Path) -> None:
    secret_file = tmp_path / "db-password"
    secret_file.write_text(SECRET + "\n")
    chosen = prefectdb.prepare(settings(tmp_path, prefect_database_url=TEMPLATE_URL,
                                        prefect_db_password_file=secret_file))
    assert chosen.kind == "postgresql-external"
    assert chosen.server_env == {"PREFECT_SERVER_DATABASE_CONNECTION_URL": TEMPLATE_URL,
                                 "PREFECT_SERVER_DATABASE_PASSWORD": SECRET}
    assert SECRET not in chosen.description
    assert not (tmp_path / "postgres").exists(), "no local cluster for an external server"


@pytest.mark.parametrize(("values", "names"), [
    ({"prefect_database_url": TEMPLATE_URL}, "KONGSTACK_PREFECT_DB_PASSWORD"),
    ({"prefect_db": "postgresql", "prefect_db_password": SECRET,
      "prefect_db_password_file": "/etc/hostname"}, "not both"),
    ({"prefect_db": "postgresql", "prefect_db_password_file": "/nonexistent/pw"},
     "KONGSTACK_PREFECT_DB_PASSWORD_FILE=/nonexistent/pw"),
    ({"prefect_db": "postgresql", "prefect_db_password": ""}, "is empty"),
], ids=["template-without-password", "two-sources", "missing-file", "empty"])
def test_bad_database_settings_are_named_before_anything_starts(
    tmp_path: Path, values: dict[str, object], names: str
) -> None:
    with pytest.raises(ConfigError, match=names) as caught:
        prefectdb.prepare(settings(tmp_path, **values))
    assert SECRET not in str(caught.value)
    assert not (tmp_path / "postgres").exists()


def test_a_url_without_the_async_driver_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KONGSTACK_HOME", str(tmp_path))
    monkeypatch.setenv("KONGSTACK_PREFECT_DATABASE_URL", f"postgresql://u:{SECRET}@db/prefect")
    with pytest.raises(ConfigError, match="KONGSTACK_PREFECT_DATABASE_URL.*postgresql\\+asyncpg"):
        load_settings()
    result = CliRunner().invoke(app, ["up"], env={"KONGSTACK_HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert "KONGSTACK_PREFECT_DATABASE_URL" in result.output and SECRET not in result.output
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_up_refuses_a_template_url_without_password_before_deploying(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["up"], env={
        "KONGSTACK_HOME": str(tmp_path), "KONGSTACK_PREFECT_DATABASE_URL": TEMPLATE_URL})
    assert result.exit_code == 2, result.output
    assert "KONGSTACK_PREFECT_DB_PASSWORD" in result.output
    assert "deploy-stack" not in result.output, "nothing may start on a bad setting"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[LocalSettings]:
    with prefect_server("postgresql") as server:
        yield server


def _runs_in_postgres(server: LocalSettings, flow_name: str) -> list[str]:
    out = prefectdb.local_cluster(server).psql(
        "SELECT r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id "
        f"WHERE f.name = '{flow_name}'", database="prefect", what="reading flow runs")
    return out.split()


def test_server_on_postgresql_migrates_and_records_flow_runs(
    postgres_server: LocalSettings,
) -> None:
    server = postgres_server
    assert httpx.get(f"{api_url(server)}/health", timeout=5).json() is True
    cluster = prefectdb.local_cluster(server)
    # Prefect migrated the empty database itself on first start.
    revision = cluster.psql("SELECT version_num FROM alembic_version", database="prefect",
                            what="reading the schema revision").strip()
    assert revision
    assert not (server.home / "prefect" / "prefect.db").exists(), "SQLite was not used"

    # A flow run by a client of that server (its own process, as a worker would run it).
    code = ("from prefect import flow\n"
            "@flow(name='pg-recorded')\n"
            "def recorded() -> int:\n    return 7\n"
            "assert recorded() == 7\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True,
                   env={**os.environ, "PREFECT_API_URL": api_url(server)})
    assert _runs_in_postgres(server, "pg-recorded") == ["COMPLETED"]

    # The generated password: a private file, and in no log.
    password_file = prefectdb.generated_password_file(server)
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    for log in server.log_dir.glob("*.log"):
        assert password not in log.read_text(errors="replace"), log


def test_restart_keeps_the_database_and_does_not_recreate_it(
    postgres_server: LocalSettings,
) -> None:
    server = postgres_server
    before = _runs_in_postgres(server, "pg-recorded")
    assert stop_server(server)  # the server and the local cluster
    assert not prefectdb.local_cluster(server).daemon.running()
    start_server(server, timeout=180)
    assert prefectdb.local_cluster(server).daemon.running()
    assert _runs_in_postgres(server, "pg-recorded") == before
    flows = httpx.post(f"{api_url(server)}/flows/filter", json={}, timeout=10).json()
    assert "pg-recorded" in {f["name"] for f in flows}

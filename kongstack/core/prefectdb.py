"""Which database the local Prefect server uses, and the environment that selects it.

- ``sqlite`` (the default, ``make demo``): Prefect's embedded SQLite under
  ``<home>/prefect``; nothing to start.
- ``postgresql`` with ``prefect_database_url``: an existing server (production). The URL may
  carry ``${PREFECT_SERVER_DATABASE_PASSWORD}``, filled in by Prefect from the password given
  here (environment or file), so the URL itself can live in a config file.
- ``postgresql`` without a URL: a private cluster under ``<home>/postgres`` on 127.0.0.1
  (``postgres_port``), with role and database ``prefect`` created when missing. The password
  comes from ``KONGSTACK_PREFECT_DB_PASSWORD`` or ``..._PASSWORD_FILE``, else one is generated
  once into ``<home>/postgres/prefect.password`` (mode 0600).

Prefect runs its migrations itself when the server starts (``migrate_on_start``), on either
backend. Passwords go to the server process's environment only, never to argv or logs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kongstack.core.errors import ConfigError
from kongstack.core.postgres import PostgresCluster
from kongstack.core.settings import LocalSettings

PREFECT_DB_NAME = "prefect"
PREFECT_DB_ROLE = "prefect"
PASSWORD_TEMPLATE = "${PREFECT_SERVER_DATABASE_PASSWORD}"
DatabaseKind = Literal["sqlite", "postgresql-local", "postgresql-external"]


def database_kind(settings: LocalSettings) -> DatabaseKind:
    if settings.prefect_database_url is not None:
        return "postgresql-external"
    return "postgresql-local" if settings.prefect_db == "postgresql" else "sqlite"


def local_cluster(settings: LocalSettings) -> PostgresCluster:
    return PostgresCluster(root=settings.home / "postgres", port=settings.postgres_port,
                           log_file=settings.log_dir / "postgres.log",
                           bindir=settings.postgres_bindir)


def generated_password_file(settings: LocalSettings) -> Path:
    return settings.home / "postgres" / "prefect.password"


def given_password(settings: LocalSettings) -> str | None:
    """The password from the environment or the password file; None when neither is set."""
    if settings.prefect_db_password is not None and settings.prefect_db_password_file:
        raise ConfigError("set KONGSTACK_PREFECT_DB_PASSWORD or "
                          "KONGSTACK_PREFECT_DB_PASSWORD_FILE, not both")
    if settings.prefect_db_password is not None:
        value = settings.prefect_db_password.get_secret_value()
        if not value:
            raise ConfigError("KONGSTACK_PREFECT_DB_PASSWORD is empty")
        return value
    path = settings.prefect_db_password_file
    if path is None:
        return None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"KONGSTACK_PREFECT_DB_PASSWORD_FILE={path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"KONGSTACK_PREFECT_DB_PASSWORD_FILE={path} is empty")
    return value


def local_password(settings: LocalSettings) -> str:
    """The given password, else the generated one (made once, kept under <home>)."""
    given = given_password(settings)
    if given is not None:
        return given
    path = generated_password_file(settings)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


@dataclass(frozen=True)
class PrefectDatabase:
    """The chosen database: what to tell the user, and the server process's environment."""

    kind: DatabaseKind
    description: str
    server_env: dict[str, str]


def describe(settings: LocalSettings) -> str:
    """One line naming the database, without touching it."""
    kind = database_kind(settings)
    if kind == "sqlite":
        return f"SQLite {settings.home / 'prefect' / 'prefect.db'}"
    if kind == "postgresql-external":
        return "PostgreSQL (KONGSTACK_PREFECT_DATABASE_URL)"
    where = f"127.0.0.1:{settings.postgres_port}/{PREFECT_DB_NAME}"
    return f"PostgreSQL {where} (local cluster in {local_cluster(settings).root})"


def check(settings: LocalSettings) -> None:
    """Reject a configuration that cannot work, before anything starts."""
    if database_kind(settings) == "postgresql-external":
        assert settings.prefect_database_url is not None
        url = settings.prefect_database_url.get_secret_value()
        if PASSWORD_TEMPLATE in url and given_password(settings) is None:
            raise ConfigError(f"KONGSTACK_PREFECT_DATABASE_URL uses {PASSWORD_TEMPLATE}: set "
                              "KONGSTACK_PREFECT_DB_PASSWORD or KONGSTACK_PREFECT_DB_PASSWORD_FILE")
    else:
        given_password(settings)


def prepare(settings: LocalSettings) -> PrefectDatabase:
    """Make the configured database usable (start the local cluster, create role and
    database: idempotent) and return the Prefect server's environment for it."""
    check(settings)
    kind = database_kind(settings)
    if kind == "sqlite":
        return PrefectDatabase(kind, describe(settings), {})
    if kind == "postgresql-external":
        assert settings.prefect_database_url is not None
        env = {"PREFECT_SERVER_DATABASE_CONNECTION_URL":
               settings.prefect_database_url.get_secret_value()}
        password = given_password(settings)
        if password is not None:
            env["PREFECT_SERVER_DATABASE_PASSWORD"] = password
        return PrefectDatabase(kind, describe(settings), env)
    cluster = local_cluster(settings)
    password = local_password(settings)
    cluster.start()
    cluster.ensure_database(PREFECT_DB_NAME, PREFECT_DB_ROLE, password)
    env = {
        "PREFECT_SERVER_DATABASE_DRIVER": "postgresql+asyncpg",
        "PREFECT_SERVER_DATABASE_HOST": "127.0.0.1",
        "PREFECT_SERVER_DATABASE_PORT": str(settings.postgres_port),
        "PREFECT_SERVER_DATABASE_USER": PREFECT_DB_ROLE,
        "PREFECT_SERVER_DATABASE_NAME": PREFECT_DB_NAME,
        "PREFECT_SERVER_DATABASE_PASSWORD": password,
    }
    return PrefectDatabase(kind, describe(settings), env)


def stop_local(settings: LocalSettings) -> bool:
    """Stop the local cluster if it runs (its data stays). True if it was running."""
    return local_cluster(settings).stop()

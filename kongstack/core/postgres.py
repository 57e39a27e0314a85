"""A private PostgreSQL cluster under a directory of ours (Debian's binaries, our own data
directory, port and socket), started and stopped like the other local daemons.

- ``initdb`` once (skipped when the data directory holds a cluster); local socket
  connections are ``trust`` but the socket directory is private (0700, the cluster's owner),
  TCP on 127.0.0.1 only, with SCRAM passwords.
- PostgreSQL refuses to run as root: as root, the cluster runs as Debian's ``postgres`` system
  user (``setpriv``, which execs, so the pid we track is the postmaster's).
- ``ensure_database`` creates the role and database when missing and (re)sets the role's
  password, statements sent on stdin so the password never appears in a process list.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kongstack.core.errors import SetupError
from kongstack.core.procs import Daemon

DEBIAN_PREFIX = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"  # created by Debian's postgresql-common
SUPERUSER = "postgres"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SOCKET_PATH_MAX = 107  # sun_path, including ".s.PGSQL.<port>"
COMMAND_TIMEOUT = 120.0


def find_bindir(override: Path | None = None) -> Path:
    """Directory of ``initdb``/``postgres``/``psql``: ``override``, else the newest
    /usr/lib/postgresql/<major>/bin."""
    if override is not None:
        if not (override / "postgres").exists():
            raise SetupError(f"no postgres binary in {override} (KONGSTACK_POSTGRES_BINDIR)")
        return override
    found = sorted(
        (p for p in DEBIAN_PREFIX.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise SetupError("PostgreSQL is not installed: run "
                         "KONGSTACK_PREFECT_DB=postgresql scripts/setup")
    return found[-1]


def sql_literal(value: str) -> str:
    """A string literal for PostgreSQL (standard_conforming_strings is on by default)."""
    if "\x00" in value:
        raise SetupError("a PostgreSQL string cannot contain NUL")
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class PostgresCluster:
    """One cluster: ``root``/data (PGDATA), ``root``/run (socket), TCP 127.0.0.1:``port``."""

    root: Path
    port: int
    log_file: Path
    bindir: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def daemon(self) -> Daemon:
        return Daemon("postgres", self.root)

    def _bin(self, name: str) -> str:
        return str(find_bindir(self.bindir) / name)

    def _as_owner(self) -> list[str]:
        """Argv prefix that runs a command as the cluster's owner."""
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise SetupError(f"running as root needs the {SYSTEM_USER!r} system user "
                             "(Debian's postgresql package creates it)") from None
        return ["setpriv", f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}",
                "--init-groups", "--"]

    def _own(self, path: Path, mode: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, argv: Sequence[str], *, stdin: str | None = None,
             what: str) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run([*self._as_owner(), *argv], input=stdin, capture_output=True,
                                  text=True, timeout=COMMAND_TIMEOUT, cwd="/")
        except subprocess.TimeoutExpired:
            raise SetupError(f"{what} took longer than {COMMAND_TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            raise SetupError(f"{what} failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
        return proc

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> bool:
        """``initdb`` unless the data directory already holds a cluster. True if it ran."""
        if self.initialised():
            return False
        socket = self.socket_dir / f".s.PGSQL.{self.port}"
        if len(str(socket)) > SOCKET_PATH_MAX:
            raise SetupError(f"socket path {socket} is longer than {SOCKET_PATH_MAX} bytes: "
                             "choose a shorter KONGSTACK_HOME")
        self.root.mkdir(parents=True, exist_ok=True)
        self._own(self.data_dir, 0o700)
        self._own(self.socket_dir, 0o700)
        reachable = subprocess.run([*self._as_owner(), "test", "-w", str(self.data_dir)],
                                   capture_output=True, timeout=10)
        if reachable.returncode != 0:
            raise SetupError(f"the {SYSTEM_USER} system user cannot reach {self.data_dir}: every "
                             "directory above it must be searchable by others (choose another "
                             "KONGSTACK_HOME)")
        self._run([self._bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                   "--locale=C"], what=f"initdb in {self.data_dir}")
        return True

    def ready(self) -> bool:
        proc = subprocess.run(
            [self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "2"],
            capture_output=True, timeout=10,
        )
        return proc.returncode == 0

    def start(self, timeout: float = 60.0) -> int:
        """Initialise if needed, start unless running, and return once it accepts
        connections. Idempotent."""
        self.init()
        self._own(self.socket_dir, 0o700)
        return self.daemon.start(
            [*self._as_owner(), self._bin("postgres"), "-D", str(self.data_dir),
             "-c", f"port={self.port}", "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.socket_dir}",
             # Logs go to the daemon's log file, not into the data directory.
             "-c", "logging_collector=off"],
            ready=self.ready,
            log_file=self.log_file,
            cwd=Path("/"),
            timeout=timeout,
        )

    def stop(self) -> bool:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit)."""
        return self.daemon.stop(grace=30.0, sig=signal.SIGINT)

    def psql(self, sql: str, *, database: str = "postgres", what: str) -> str:
        """Run ``sql`` (from stdin) as the superuser over the private socket."""
        proc = self._run([self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
                          "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER,
                          "-d", database], stdin=sql, what=what)
        return proc.stdout

    def ensure_database(self, name: str, role: str, password: str) -> None:
        """Role ``role`` (LOGIN, password ``password``) owning database ``name``; creates
        what is missing, changes nothing else. Safe to repeat."""
        for field, value in (("database", name), ("role", role)):
            if not IDENTIFIER.match(value):
                raise SetupError(f"PostgreSQL {field} name {value!r} must match "
                                 f"{IDENTIFIER.pattern}")
        if not password:
            raise SetupError(f"an empty password for PostgreSQL role {role!r}")
        self.psql(
            f"SELECT 'CREATE ROLE {role} LOGIN' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = '{role}') \\gexec\n"
            f"ALTER ROLE {role} WITH LOGIN PASSWORD {sql_literal(password)};\n"
            f"SELECT 'CREATE DATABASE {name} OWNER {role}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{name}') \\gexec\n",
            what=f"creating role {role!r} and database {name!r}",
        )

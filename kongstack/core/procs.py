"""Start, find and stop local daemons (redis, prometheus, nginx, gunicorn, ...).

A daemon is a child process detached into its own session, tracked by a pid file, and
considered up only when a readiness probe passes (never a fixed sleep).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from kongstack.core.errors import SetupError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ephemeral_port_floor() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(size: int = 20, host: str = "127.0.0.1") -> int:
    """The first port of ``size`` consecutive ports, none listening now, all *below* the
    ephemeral range: an outgoing connection's local port can take a free port in that range
    between our choice and a server's bind (EADDRINUSE), but never one below it."""
    low = ephemeral_port_floor()
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, max(20001, low - size - 1), size)
        if not any(port_open(host, p, timeout=0.05) for p in range(base, base + size)):
            return base
    raise SetupError(f"no block of {size} free ports below {low} on {host}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code < 400
    except httpx.HTTPError:
        return False


def wait_until(
    probe: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``probe`` until it is true; raise SetupError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        if probe():
            return
        if time.monotonic() >= deadline:
            raise SetupError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass(frozen=True)
class Daemon:
    """A named background process with a pid file under ``run_dir``."""

    name: str
    run_dir: Path

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(
        self,
        argv: Sequence[str],
        *,
        ready: Callable[[], bool],
        log_file: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 30.0,
    ) -> int:
        """Start ``argv`` unless already running; return its pid once ``ready()`` passes."""
        existing = self.pid()
        if existing is not None:
            wait_until(ready, timeout=timeout, what=self.name)
            return existing
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
            )
        self.pidfile.write_text(str(proc.pid))

        def probe() -> bool:
            if proc.poll() is not None:
                tail = _tail(log_file)
                raise SetupError(f"{self.name} exited with code {proc.returncode}:\n{tail}")
            return ready()

        try:
            wait_until(probe, timeout=timeout, what=self.name)
        except SetupError:
            self.stop(grace=2.0)
            raise
        return proc.pid

    def stop(self, grace: float = 10.0, sig: int = signal.SIGTERM) -> bool:
        """Send ``sig``, wait up to ``grace`` seconds, then SIGKILL. True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.pidfile.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"

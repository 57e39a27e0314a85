"""One nginx master process owned by kongstack: start, test, reload (verified), stop.

The process runs in the foreground (``daemon off``) under ``procs.Daemon`` with its own pid
file in its prefix, so it never touches the system nginx. A reload is SIGHUP to that
master; it has taken effect when (1) a fresh connection to the status port is served the
new config generation and (2) every worker of the old generation is gone or "shutting
down" — from then on no new request can reach a target the new config dropped, while the
old workers finish their in-flight requests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from kongstack.core.errors import GatewayError, SetupError
from kongstack.core.procs import Daemon
from tasks.gateway.nginx.render import Listen


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def _retiring(pid: int) -> bool:
    """Gone, a zombie, or an nginx worker that has closed its listeners."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z" or "shutting down" in cmdline


class NginxServer:
    """The nginx process serving ``prefix/nginx.conf``."""

    def __init__(self, *, prefix: Path, listen: Listen, binary: str = "nginx",
                 timeout: float = 15.0) -> None:
        self.prefix = prefix
        self.listen = listen
        self.binary = binary
        self.timeout = timeout
        self.daemon = Daemon(name="nginx", run_dir=prefix)

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def _argv(self, conf: Path) -> list[str]:
        found = shutil.which(self.binary) or (self.binary if Path(self.binary).exists() else "")
        if not found:
            raise SetupError(f"nginx binary {self.binary!r} not found (run scripts/setup)")
        return [found, "-p", str(self.prefix), "-e", str(self.prefix / "logs" / "error.log"),
                "-c", str(conf)]

    def prepare(self) -> None:
        for sub in ("logs", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        # Traversable but not listable: workers (user nobody when started as root) need the
        # temp dirs; nginx.conf and state.json hold consumer keys and are 0600 themselves.
        self.prefix.chmod(0o711)

    def test(self, conf: Path) -> None:
        """``nginx -t`` on a candidate file; a bad config never reaches the running master."""
        result = subprocess.run([*self._argv(conf), "-t", "-q"], capture_output=True,
                                text=True, timeout=self.timeout, check=False)
        if result.returncode != 0:
            raise GatewayError(f"nginx rejected the rendered config: {result.stderr.strip()}")

    def pid(self) -> int | None:
        return self.daemon.pid()

    def served_generation(self) -> int | None:
        """The config generation a *new* connection is served (HTTP/1.0, one request per
        connection: a kept-alive one may belong to an old worker). Plain sockets: this is
        polled during every reload and an httpx client costs ~40 ms to build."""
        address = (self.listen.host, self.listen.status_port)
        try:
            with socket.create_connection(address, timeout=1.0) as sock:
                sock.sendall(b"GET /kongstack/generation HTTP/1.0\r\nHost: status\r\n\r\n")
                raw = b""
                while chunk := sock.recv(4096):
                    raw += chunk
        except OSError:
            return None
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or not body.strip().isdigit():
            return None
        return int(body)

    def start(self, generation: int) -> int:
        return self.daemon.start(
            self._argv(self.conf), ready=lambda: self.served_generation() == generation,
            log_file=self.prefix / "logs" / "master.log", timeout=self.timeout)

    def _new_errors(self, offset: int) -> str:
        """Configuration-load failures logged since ``offset`` (``nginx -t`` does not run
        init_by_lua, so a site file Lua rejects shows only when the master loads it)."""
        try:
            with open(self.prefix / "logs" / "error.log", "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(line for line in text.splitlines()
                         if "init_by_lua error" in line or "[emerg]" in line)

    def reload(self, generation: int) -> None:
        pid = self.pid()
        if pid is None:
            raise GatewayError("nginx is not running; cannot reload")
        old_workers = _children(pid)
        error_log = self.prefix / "logs" / "error.log"
        offset = error_log.stat().st_size if error_log.exists() else 0
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + self.timeout
        # Poll the real effect at a short fixed interval: a reload takes ~0.1 s.
        while not (self.served_generation() == generation
                   and all(_retiring(w) for w in old_workers)):
            failed = self._new_errors(offset)
            if failed:  # the master kept the previous configuration
                raise GatewayError(f"nginx refused the configuration of generation "
                                   f"{generation} and kept the previous one: {failed}")
            if time.monotonic() > deadline:
                raise GatewayError(f"nginx reload to generation {generation} not effective "
                                   f"after {self.timeout:.0f}s; see "
                                   f"{self.prefix / 'logs' / 'error.log'}")
            time.sleep(0.01)

    def stop(self, grace: float = 10.0) -> bool:
        # SIGQUIT: graceful shutdown, workers finish their requests first.
        return self.daemon.stop(grace=grace, sig=signal.SIGQUIT)

"""A real OpenSSH server on a free loopback port with throwaway host and user keys."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kongstack.core.procs import Daemon, free_port, port_open
from tests.support.services import require_binary


def ed25519_keypair(comment: str) -> tuple[str, str]:
    """(private key in OpenSSH format, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, f"{public} {comment}"


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    host_public_key: str  # "ssh-ed25519 AAAA... host"
    user_private_key: str
    user: str
    workdir: Path

    def known_hosts_line(self, port: int | None = None) -> str:
        key_type, key_b64 = self.host_public_key.split()[:2]
        port = port or self.port
        where = self.host if port == 22 else f"[{self.host}]:{port}"
        return f"{where} {key_type} {key_b64}\n"


@contextmanager
def sshd(
    workdir: Path,
    *,
    listen: str = "127.0.0.1",
    port: int | None = None,
    prefix: Sequence[str] = (),
    set_env: Mapping[str, str] | None = None,
    user_key: tuple[str, str] | None = None,
) -> Iterator[SshServer]:
    """sshd on ``listen``:``port`` (a free loopback port by default).

    ``prefix`` runs it through a command that places it elsewhere (e.g. inside a network
    namespace: tests/support/netns.py ``in_host``); ``set_env`` is sshd's ``SetEnv`` for
    every session (e.g. a PATH with a host's own ``docker`` shim); ``user_key`` (private,
    public) shares one deploy key across several servers instead of a new one per server."""
    binary = require_binary("/usr/sbin/sshd")
    workdir.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    host_private, host_public = ed25519_keypair("host")
    user_private, user_public = user_key or ed25519_keypair("deploy")
    host_key = workdir / "ssh_host_ed25519_key"
    host_key.write_text(host_private)
    host_key.chmod(0o600)
    (workdir / "authorized_keys").write_text(user_public + "\n")
    env_lines = "".join(f"SetEnv {k}={v}\n" for k, v in (set_env or {}).items())
    config = workdir / "sshd_config"
    config.write_text(
        f"ListenAddress {listen}\nHostKey {host_key}\nPidFile {workdir}/sshd.pid\n"
        f"AuthorizedKeysFile {workdir}/authorized_keys\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        f"MaxStartups 50\n{env_lines}"
    )
    # A namespace has all its ports to itself: the standard one unless told otherwise.
    port = port or (22 if prefix else free_port(listen))
    argv = [*prefix, binary, "-f", str(config), "-D", "-e", "-p", str(port)]
    daemon = Daemon(name=f"sshd-{port}", run_dir=workdir)
    daemon.start(
        argv,
        ready=lambda: port_open(listen, port),
        log_file=workdir / "sshd.log",
        timeout=15,
    )
    try:
        yield SshServer(listen, port, host_public, user_private, "root", workdir)
    finally:
        daemon.stop(grace=5)


class DroppingProxy:
    """TCP proxy to ``upstream``; cuts connection number ``drop_on`` when ``when()`` is true."""

    def __init__(self, upstream: int, *, drop_on: int, when: Callable[[], bool]) -> None:
        self.upstream = upstream
        self.drop_on = drop_on
        self.when = when
        self.connections = 0
        self.cut = threading.Event()  # set once connection number drop_on has been cut
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            pair = (client, server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b, pair), daemon=True).start()
            if self.connections == self.drop_on:
                threading.Thread(target=self._cut, args=(pair,), daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, ...]
    ) -> None:
        src.settimeout(None)
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _cut(self, pair: tuple[socket.socket, ...]) -> None:
        while not self._stop.is_set() and not self.when():
            self._stop.wait(0.02)
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.cut.set()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()

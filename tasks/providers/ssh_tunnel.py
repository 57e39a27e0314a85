"""A local port forward over SSH: how the deployer and the autoscaler reach Kong's Admin API.

Kong's Admin API listens on 127.0.0.1 on the Kong VM (it has no authentication of its own in
Kong OSS). ``SSHTunnel`` listens on an ephemeral port on this machine's loopback and carries
each connection accepted there through one SSH connection (paramiko, ``direct-tcpip``) to
``remote_host:remote_port`` as seen from the VM, so the HTTP client talks to
``http://127.0.0.1:<local port>`` and nothing but SSH crosses the network.

* Host keys: ``tasks.providers.ssh.connect`` (pinned keys / known_hosts, ``RejectPolicy``):
  an unknown or changed key is refused and never retried.
* Timeouts: TCP connect, banner and authentication (``SSHTarget.connect_timeout``), opening
  each forwarded channel (``channel_timeout``), SSH keepalives (a dead peer is noticed), and
  every blocking wait in the relay threads polls a stop flag.
* Reconnect: a connection accepted while the SSH transport is down reconnects first, with
  exponential backoff (``attempts``); if that fails, the local connection is closed and the
  HTTP client sees a connection error, which it retries (``KongAdminClient``).
* Lifecycle: ``open()`` / ``close()`` or a ``with`` block; ``close`` stops accepting, closes
  every relayed connection and the SSH connection, and joins the threads.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable
from types import TracebackType

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from kongstack.core.errors import InstallError
from kongstack.core.extras import requires_extra
from tasks.providers.ssh import SSHTarget, connect, retryable

with requires_extra("azure", "the SSH tunnel to Kong's Admin API"):
    import paramiko

log = logging.getLogger(__name__)
POLL_S = 0.2  # how often blocked threads look at the stop flag
BUFFER = 65536


class TunnelError(InstallError):
    """The tunnel could not be opened (after retries) or is closed."""


class SSHTunnel:
    """``127.0.0.1:<local_port>`` here -> ``remote_host:remote_port`` on the SSH server."""

    def __init__(
        self,
        target: SSHTarget,
        remote_host: str,
        remote_port: int,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        channel_timeout: float = 10.0,
        keepalive_s: int = 15,
        connector: Callable[[SSHTarget], paramiko.SSHClient] = connect,
    ) -> None:
        self.target = target
        self.remote = (remote_host, remote_port)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._channel_timeout = channel_timeout
        self._keepalive_s = keepalive_s
        self._connector = connector
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()  # guards _client (re)connects
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open_sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()
        self.connects = 0  # SSH connections made (1 + reconnects)

    def __repr__(self) -> str:
        return (f"SSHTunnel({self.target.username}@{self.target.host}:{self.target.port} -> "
                f"{self.remote[0]}:{self.remote[1]})")

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def local_port(self) -> int:
        if self._listener is None:
            raise TunnelError(f"{self!r} is not open")
        return int(self._listener.getsockname()[1])

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.local_port}"

    def open(self) -> SSHTunnel:
        """Connect (retried with backoff) and start forwarding; idempotent."""
        if self._listener is not None:
            return self
        self._stop.clear()
        self._ensure_connected()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(POLL_S)
        self._listener = listener
        self._spawn(self._accept_loop, "accept")
        log.info("tunnel open: 127.0.0.1:%d -> %s", self.local_port, self)
        return self

    def close(self) -> None:
        """Stop accepting, drop every relayed connection and the SSH connection."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._sockets_lock:
            for sock in list(self._open_sockets):
                _shutdown(sock)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        if self._listener is not None:
            log.info("tunnel closed: %s", self)
        self._listener = None

    def __enter__(self) -> SSHTunnel:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the SSH connection -----------------------------------------------------------------
    def _transport(self) -> paramiko.Transport | None:
        transport = self._client.get_transport() if self._client is not None else None
        return transport if transport is not None and transport.is_active() else None

    def _ensure_connected(self) -> paramiko.Transport:
        with self._lock:
            transport = self._transport()
            if transport is not None:
                return transport
            if self._client is not None:
                log.warning("tunnel %s: SSH connection lost; reconnecting", self)
                self._client.close()
                self._client = None
            retrying = Retrying(
                retry=retry_if_exception(retryable),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff, max=10),
                reraise=True,
                before_sleep=lambda s: log.info(
                    "tunnel %s: connect attempt %d failed (%s); retrying", self,
                    s.attempt_number, s.outcome.exception() if s.outcome else "?"),
            )
            try:
                client = retrying(self._connector, self.target)
            except InstallError:
                raise  # host key refused, authentication failed: never retried
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise TunnelError(
                    f"tunnel to {self.target.host}:{self.target.port}: could not connect "
                    f"after {self._attempts} attempts: {exc or type(exc).__name__}") from None
            self._client = client
            self.connects += 1
            transport = client.get_transport()
            if transport is None:
                raise TunnelError(f"tunnel to {self.target.host}: no SSH transport")
            transport.set_keepalive(self._keepalive_s)
            return transport

    # -- forwarding -------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"tunnel-{name}-{self.target.host}")
        with self._sockets_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        while listener is not None and not self._stop.is_set():
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            self._spawn(self._relay, "relay", sock, peer)

    def _relay(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        with self._sockets_lock:
            self._open_sockets.add(sock)
        channel: paramiko.Channel | None = None
        try:
            try:
                transport = self._ensure_connected()
                channel = transport.open_channel("direct-tcpip", self.remote, peer,
                                                 timeout=self._channel_timeout)
            except (InstallError, paramiko.SSHException, OSError, EOFError) as exc:
                # The client sees its connection close and retries (Kong client backoff).
                log.warning("tunnel %s: cannot forward to %s:%d: %s", self, *self.remote,
                            exc or type(exc).__name__)
                return
            channel.settimeout(self._channel_timeout)  # a stalled peer cannot block a send
            self._pipe(sock, channel)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            log.info("tunnel %s: connection from %s:%d ended: %s", self, *peer,
                     exc or type(exc).__name__)
        finally:
            if channel is not None:
                channel.close()
            _shutdown(sock)
            with self._sockets_lock:
                self._open_sockets.discard(sock)

    def _pipe(self, sock: socket.socket, channel: paramiko.Channel) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([sock, channel], [], [], POLL_S)
            if sock in readable:
                data = sock.recv(BUFFER)
                if not data:
                    return
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(BUFFER)
                if not data:
                    return
                sock.sendall(data)
            if channel.closed or (channel.eof_received and not channel.recv_ready()):
                return


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()

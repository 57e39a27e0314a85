"""Install over SSH (paramiko): upload a script, run it, stream its output, check its exit code.

Host keys are verified against pinned keys / a known_hosts file with ``RejectPolicy``: an
unknown host is refused and a changed key raises ``BadHostKeyException``; neither is retried.
Connection failures (refused, reset, dropped mid-run, banner timeouts) are retried with
exponential backoff; the scripts are idempotent, so re-running one after a drop is safe.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
import select
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from kongstack.core.errors import InstallError
from kongstack.core.extras import requires_extra

with requires_extra("azure", "installing over SSH"):
    import paramiko

LogFn = Callable[[str], None]
OUTPUT_TAIL_LINES = 40


class HostKeyRejected(InstallError):
    """The server's host key is not pinned or does not match: never retried."""


class ConnectionLost(InstallError):
    """The connection dropped or timed out before the script finished (retried)."""


class _Reject(paramiko.MissingHostKeyPolicy):
    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise HostKeyRejected(
            f"{hostname}: host key {key.get_name()} {key.fingerprint} is not in known_hosts "
            "or the pinned keys; refusing to connect"
        )


@dataclass(frozen=True)
class SSHTarget:
    host: str
    port: int = 22
    username: str = "azureuser"
    private_key: str | None = field(default=None, repr=False)  # PEM/OpenSSH text (a Secret)
    key_path: Path | None = None
    known_hosts: Path | None = None
    pinned_keys: tuple[str, ...] = ()  # "ssh-ed25519 AAAA..." lines
    connect_timeout: float = 15.0

    @property
    def host_id(self) -> str:
        """The name known_hosts uses: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class ScriptResult:
    host: str
    script: str
    exit_code: int
    output: str
    seconds: float
    attempts: int

    @property
    def changed(self) -> bool:
        """Scripts print ``changed: <what>`` for every step that changed something."""
        return any(line.startswith("changed:") for line in self.output.splitlines())


def load_private_key(text: str) -> paramiko.PKey:
    """A private key from its PEM/OpenSSH text (a Secret block's value); the error never
    shows the text."""
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except paramiko.SSHException:
            continue
    raise InstallError("private key: unsupported or malformed key (not logged)")


def connect(target: SSHTarget) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    if target.known_hosts is not None:
        if not target.known_hosts.exists():
            raise HostKeyRejected(f"{target.host}: known_hosts {target.known_hosts} does not exist")
        client.load_host_keys(str(target.known_hosts))
    for line in target.pinned_keys:
        key_type, key_b64 = line.split()[:2]
        entry = paramiko.hostkeys.HostKeyEntry.from_line(f"{target.host_id} {key_type} {key_b64}")
        if entry is None or entry.key is None:
            raise InstallError(f"{target.host}: pinned key is not a valid OpenSSH public key")
        client.get_host_keys().add(target.host_id, entry.key.get_name(), entry.key)
    client.set_missing_host_key_policy(_Reject())
    pkey = load_private_key(target.private_key) if target.private_key else None
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.username,
            pkey=pkey,
            key_filename=str(target.key_path) if target.key_path else None,
            timeout=target.connect_timeout,
            banner_timeout=target.connect_timeout,
            auth_timeout=target.connect_timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyRejected(
            f"{target.host}: host key CHANGED (got {exc.key.get_name()} {exc.key.fingerprint}, "
            f"pinned {exc.expected_key.fingerprint}); refusing to connect"
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise InstallError(
            f"{target.host}: authentication failed for {target.username}: {exc}"
        ) from None
    except BaseException:
        client.close()
        raise
    return client


def remote_command(
    username: str, remote: str, args: list[str], *, env: dict[str, str], sudo: bool
) -> str:
    """``[sudo -n] env K=V... bash SCRIPT ARGS``; ``-n``: fail at once instead of prompting
    for a password (a hung prompt would only end at the script timeout)."""
    exports = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    prefix = ["sudo", "-n", "env"] if sudo and username != "root" else ["env"]
    return " ".join([*prefix, *exports, "bash", shlex.quote(remote), *map(shlex.quote, args)])


def retryable(exc: BaseException) -> bool:
    """A connection failure worth another try (never a refused host key or login)."""
    if isinstance(exc, HostKeyRejected | paramiko.AuthenticationException):
        return False
    return isinstance(
        exc, ConnectionLost | paramiko.SSHException | socket.timeout | OSError | EOFError
    )


def _run_once(
    target: SSHTarget,
    script: Path,
    args: list[str],
    *,
    sudo: bool,
    timeout: float,
    env: dict[str, str],
    log: LogFn,
) -> ScriptResult:
    started = time.monotonic()
    body = script.read_bytes()
    digest = hashlib.sha256(body).hexdigest()[:12]
    client = connect(target)
    try:
        # A random part: concurrent runs of one script on one host must not share a path
        # (the first to finish would delete the other's copy), and /tmp names are guessable.
        remote = f"/tmp/kongstack-{script.stem}-{digest}-{secrets.token_hex(6)}.sh"
        with client.open_sftp() as sftp:
            sftp.putfo(io.BytesIO(body), remote)
            sftp.chmod(remote, 0o700)
        command = remote_command(target.username, remote, args, env=env, sudo=sudo)
        transport = client.get_transport()
        if transport is None:
            raise ConnectionLost(f"{target.host}: no transport")
        channel = transport.open_session(timeout=target.connect_timeout)
        channel.set_combine_stderr(True)
        channel.exec_command(f"{command}; rc=$?; rm -f {remote}; exit $rc")
        lines = _stream(channel, transport, target, script.name, started + timeout, log)
        code = channel.recv_exit_status()
        if code == -1:
            raise ConnectionLost(f"{target.host}: connection dropped while running {script.name}")
        output = "\n".join(lines)
        if code != 0:
            tail = "\n".join(lines[-OUTPUT_TAIL_LINES:])
            raise ScriptFailed(
                f"{target.host}: {script.name} exited with code {code}:\n{tail}",
                exit_code=code,
                output=output,
            )
        return ScriptResult(
            target.host, script.name, code, output, round(time.monotonic() - started, 3), 1
        )
    finally:
        client.close()


def _stream(
    channel: paramiko.Channel,
    transport: paramiko.Transport,
    target: SSHTarget,
    name: str,
    deadline: float,
    log: LogFn,
) -> list[str]:
    """Read the combined output line by line until EOF and an exit status arrive."""
    lines: list[str] = []
    pending = b""

    def emit(raw: bytes) -> None:
        line = raw.decode(errors="replace")
        lines.append(line)
        log(f"[{target.host} {name}] {line}")

    while True:
        readable, _, _ = select.select([channel], [], [], 0.25)
        if readable:
            chunk = channel.recv(32768)
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    emit(raw)
                continue
            # EOF: the exit status follows on a live connection.
            if channel.status_event.wait(timeout=5.0) and channel.exit_status_ready():
                break
        if channel.exit_status_ready() and not channel.recv_ready():
            break
        if not transport.is_active() or (channel.closed and not channel.exit_status_ready()):
            raise ConnectionLost(f"{target.host}: connection dropped while running {name}")
        if time.monotonic() > deadline:
            channel.close()
            raise InstallError(f"{target.host}: {name} timed out")
    if pending:
        emit(pending)
    if not channel.exit_status_ready():
        raise ConnectionLost(f"{target.host}: connection dropped while running {name}")
    return lines


class ScriptFailed(InstallError):
    """The script ran and exited non-zero: its output is in the message; not retried."""

    def __init__(self, message: str, *, exit_code: int, output: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.output = output


def run_script(
    target: SSHTarget,
    script: Path,
    args: list[str] | None = None,
    *,
    sudo: bool = True,
    timeout: float = 900.0,
    retries: int = 4,
    env: dict[str, str] | None = None,
    log: LogFn | None = None,
    backoff: float = 1.0,
) -> ScriptResult:
    """Upload ``script`` to ``target`` and run it; retries only on connection failures."""
    emit: LogFn = log or logging.getLogger(__name__).info
    attempts = 0

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        emit(f"[{target.host}] attempt {state.attempt_number} failed ({exc}); retrying")

    retrying = Retrying(
        retry=retry_if_exception(retryable),
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=backoff, max=30),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                result = _run_once(
                    target, script, args or [], sudo=sudo, timeout=timeout, env=env or {}, log=emit
                )
    except InstallError:
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise InstallError(
            f"{target.host}:{target.port}: could not run {script.name} after {attempts} "
            f"attempts: {exc or type(exc).__name__}"
        ) from None
    return ScriptResult(
        result.host, result.script, result.exit_code, result.output, result.seconds, attempts
    )


@task(name="ssh-run-script", cache_policy=NO_CACHE)
def run_script_task(
    target: SSHTarget, script: Path, args: list[str] | None = None, **kwargs: Any
) -> ScriptResult:
    """Prefect task: ``run_script`` with its output streamed into the run's logs."""
    logger = get_run_logger()
    return run_script(target, script, args, log=logger.info, **kwargs)

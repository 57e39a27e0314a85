"""Upload a script's rendered files to a private staging directory on the host (SFTP).

The directory is created with mode 0700 before anything is written into it, so secret files
are never readable by other users, even for a moment; the script (run with sudo) installs
from it and the directory is removed afterwards. Connection failures are retried with
backoff; a rejected host key is not (``tasks.providers.ssh.connect`` verifies pinned keys).
"""

from __future__ import annotations

import io
import posixpath
import secrets
import shlex
import socket
from collections.abc import Callable, Sequence

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from kongstack.core.errors import InstallError
from kongstack.core.extras import requires_extra
from tasks.providers.azure.role_files import StagedFile
from tasks.providers.ssh import HostKeyRejected, SSHTarget, connect

with requires_extra("azure", "installing over SSH"):
    import paramiko

LogFn = Callable[[str], None]
STAGING_ROOT = "/tmp"
CLEANUP_TIMEOUT_S = 30.0


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, HostKeyRejected | paramiko.AuthenticationException):
        return False
    return isinstance(exc, paramiko.SSHException | socket.timeout | OSError | EOFError)


def _check(files: Sequence[StagedFile]) -> None:
    for f in files:
        norm = posixpath.normpath(f.path)
        if f.path.startswith("/") or norm.startswith("..") or norm != f.path:
            raise InstallError(f"staged file path {f.path!r} must be relative and normalised")


def _upload_once(target: SSHTarget, directory: str, files: Sequence[StagedFile]) -> None:
    client = connect(target)
    try:
        with client.open_sftp() as sftp:
            try:  # a leftover from an interrupted attempt: start clean
                sftp.stat(directory)
                _remove(client, directory)
            except FileNotFoundError:
                pass
            sftp.mkdir(directory, mode=0o700)
            made = {directory}
            for f in files:
                parent = posixpath.dirname(posixpath.join(directory, f.path))
                for part in _parents(directory, parent):
                    if part not in made:
                        sftp.mkdir(part, mode=0o700)
                        made.add(part)
                sftp.putfo(io.BytesIO(f.content), posixpath.join(directory, f.path))
    finally:
        client.close()


def _parents(root: str, parent: str) -> list[str]:
    rel = posixpath.relpath(parent, root)
    if rel == ".":
        return []
    out, acc = [], root
    for part in rel.split("/"):
        acc = posixpath.join(acc, part)
        out.append(acc)
    return out


def _remove(client: paramiko.SSHClient, directory: str) -> None:
    _, stdout, _ = client.exec_command(f"rm -rf -- {shlex.quote(directory)}",
                                       timeout=CLEANUP_TIMEOUT_S)
    stdout.channel.recv_exit_status()


def upload(target: SSHTarget, name: str, files: Sequence[StagedFile], *, retries: int = 4,
           backoff: float = 1.0) -> str:
    """Upload ``files`` into a fresh private directory; returns its path on the host."""
    _check(files)
    directory = posixpath.join(STAGING_ROOT, f"kongstack-files-{name}-{secrets.token_hex(6)}")
    retrying = Retrying(retry=retry_if_exception(_transient), stop=stop_after_attempt(retries + 1),
                        wait=wait_exponential(multiplier=backoff, max=30), reraise=True)
    try:
        for attempt in retrying:
            with attempt:
                _upload_once(target, directory, files)
    except InstallError:
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise InstallError(f"{target.host}:{target.port}: could not upload the files of "
                           f"{name}.sh: {exc or type(exc).__name__}") from None
    return directory


def remove(target: SSHTarget, directory: str, log: LogFn) -> None:
    """Best effort: a leftover directory is private (0700) and lives in /tmp."""
    try:
        client = connect(target)
        try:
            _remove(client, directory)
        finally:
            client.close()
    except (InstallError, paramiko.SSHException, OSError, EOFError) as exc:
        log(f"[{target.host}] could not remove {directory}: {exc or type(exc).__name__}")

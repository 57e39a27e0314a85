"""A docker SDK client for an ``ssh://`` engine with bounded SSH waits and a small pool.

The stock ``docker.DockerClient(base_url="ssh://user@host")`` (docker SDK 7, paramiko) connects
without a TCP timeout and opens each HTTP connection as an SSH channel with paramiko's default
channel-open timeout of one hour. Measured on a namespace host whose link was cut
(docs/multihost-tests.md): the first call fails after the client's read timeout, the next one
(a new channel on the same, silent, transport) blocks until the link returns, which would hold
a tick for as long as a host is down. The SDK also keys its connection pools by the full
request URL, so a busy client holds more SSH channels than sshd's default ``MaxSessions`` (10)
allows and the next is refused: ``ChannelException(2, 'Connect failed')`` (docker/compose#6463).
This client is the same SDK and transport with every SSH wait bounded by ``timeout``, one pool
of ``POOL_SIZE`` channels per engine, the key (a file, or a Secret block's text) and the
known-hosts file given explicitly (or the user's ``~/.ssh`` defaults) and unknown host keys
rejected.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import docker

from kongstack.core.extras import requires_extra

with requires_extra("azure", "ssh:// engines of a multi-host pool"):
    import paramiko
    from docker.transport.sshconn import SSHHTTPAdapter

    from tasks.providers.ssh import load_private_key

API_VERSION = "1.41"  # Podman 4.3's Docker-compatible API; Docker Engine 20.10+ speaks it too
POOL_SIZE = 4  # SSH channels kept open per engine; below sshd's default MaxSessions (10)


class BoundedSSHAdapter(SSHHTTPAdapter):  # type: ignore[misc]  # untyped SDK
    """The SDK's paramiko adapter, with the key, known hosts and SSH timeouts given here."""

    def __init__(self, base_url: str, *, key_file: Path | None, known_hosts: Path | None,
                 timeout: float, private_key: str | None = None) -> None:
        self._key_file = key_file
        self._pkey = None if private_key is None else load_private_key(private_key)
        self._known_hosts = known_hosts
        self._ssh_timeout = timeout
        super().__init__(base_url, timeout=timeout, pool_connections=1,
                         max_pool_size=POOL_SIZE)

    def _create_paramiko_client(self, base_url: str) -> None:
        url = urllib.parse.urlparse(base_url)
        self.ssh_client = paramiko.SSHClient()
        self.ssh_params: dict[str, object] = {
            "hostname": url.hostname, "port": url.port or 22, "username": url.username,
            "timeout": self._ssh_timeout, "banner_timeout": self._ssh_timeout,
            "auth_timeout": self._ssh_timeout, "channel_timeout": self._ssh_timeout,
        }
        if self._pkey is not None:
            self.ssh_params.update(pkey=self._pkey, look_for_keys=False, allow_agent=False)
        elif self._key_file is not None:
            self.ssh_params.update(key_filename=str(self._key_file), look_for_keys=False,
                                   allow_agent=False)
        if self._known_hosts is not None:
            self.ssh_client.load_host_keys(str(self._known_hosts))
        else:
            self.ssh_client.load_system_host_keys()
        self.ssh_client.set_missing_host_key_policy(paramiko.RejectPolicy())

    def get_connection(self, url: str, proxies: object = None) -> object:
        # One engine, one pool (the SDK would open one per request URL).
        return super().get_connection("http+docker://ssh", proxies)


def ssh_docker_client(base_url: str, *, key_file: Path | None = None,
                      private_key: str | None = None, known_hosts: Path | None = None,
                      timeout: float = 10.0) -> docker.DockerClient:
    """A ``docker.DockerClient`` for ``ssh://user@host[:port]``: connects (SSH handshake and
    the engine's version) now, and every later call fails within about ``timeout`` seconds
    when the host stops answering, instead of hanging."""
    # Built on an address it never dials (an explicit version skips the version request),
    # then pointed at the SSH adapter exactly as the SDK does for ssh:// URLs.
    client = docker.DockerClient(base_url="unix:///nonexistent", version=API_VERSION,
                                 timeout=int(timeout + 0.999))
    adapter = BoundedSSHAdapter(base_url, key_file=key_file, private_key=private_key,
                                known_hosts=known_hosts, timeout=timeout)
    api = client.api
    api.mount("http+docker://ssh", adapter)
    api._custom_adapter = adapter
    api.base_url = "http+docker://ssh"
    try:
        api._version = api._retrieve_server_version()
    except Exception:
        client.close()
        raise
    return client

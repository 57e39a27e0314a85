"""How to reach Kong's Admin API through SSH: the ``ssh_tunnel`` gateway option.

In an autoscale config (``pool.gateway_options``)::

    gateway: kong
    gateway_options:
      admin_url: http://127.0.0.1:8001          # the Admin API as the Kong VM sees it
      ssh_tunnel:
        host: 20.50.1.2                         # the Kong VM's public address
        username: azureuser
        private_key_secret: kongstack-ssh-private-key
        known_hosts: var/deploy/kongstack/known_hosts   # pinned at provision time

The key comes from a Prefect Secret block (``private_key_secret``), a file (``key_path``)
or, for callers that already hold it, ``private_key``; host keys only from ``known_hosts``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

if TYPE_CHECKING:
    from tasks.providers.ssh import SSHTarget


class AdminTunnel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="the Kong VM's SSH address")
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(default="azureuser", min_length=1)
    private_key_secret: str | None = Field(default=None, description="Secret block: the key")
    key_path: Path | None = Field(default=None, description="a private key file")
    private_key: SecretStr | None = Field(default=None, description="the key itself")
    known_hosts: Path = Field(description="pinned host keys (OpenSSH known_hosts)")
    connect_timeout_s: float = Field(default=15.0, gt=0, le=300)
    channel_timeout_s: float = Field(default=10.0, gt=0, le=300)
    attempts: int = Field(default=4, ge=1, le=20, description="SSH connects, with backoff")

    @model_validator(mode="after")
    def _one_key(self) -> AdminTunnel:
        given = [n for n in ("private_key_secret", "key_path", "private_key")
                 if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of private_key_secret, key_path, private_key "
                             f"(got {', '.join(given) or 'none'})")
        return self

    def target(self) -> SSHTarget:
        from tasks.providers.secrets import read_secret
        from tasks.providers.ssh import SSHTarget

        key = (self.private_key.get_secret_value() if self.private_key is not None
               else read_secret(self.private_key_secret, "ssh_tunnel.private_key_secret")
               if self.private_key_secret else None)
        return SSHTarget(host=self.host, port=self.port, username=self.username,
                         private_key=key, key_path=self.key_path, known_hosts=self.known_hosts,
                         connect_timeout=self.connect_timeout_s)

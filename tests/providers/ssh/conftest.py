from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sshd import SshServer, sshd


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server

"""tasks.providers.ssh against a real OpenSSH server on loopback (throwaway host and user keys)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kongstack.core.errors import InstallError
from kongstack.core.procs import free_port
from tasks.providers.ssh import HostKeyRejected, ScriptFailed, SSHTarget, run_script
from tests.support.sshd import DroppingProxy, SshServer, ed25519_keypair


def target_for(
    server: SshServer,
    tmp_path: Path,
    *,
    port: int | None = None,
    known_hosts: str | None = None,
) -> SSHTarget:
    kh = tmp_path / "known_hosts"
    kh.write_text(server.known_hosts_line(port) if known_hosts is None else known_hosts)
    return SSHTarget(
        host=server.host,
        port=port or server.port,
        username=server.user,
        private_key=server.user_private_key,
        known_hosts=kh,
        connect_timeout=5,
    )


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
    return path


def test_script_runs_with_args_env_and_streamed_output(
    ssh_server: SshServer, tmp_path: Path
) -> None:
    streamed: list[str] = []
    path = script(
        tmp_path,
        "role.sh",
        'echo "hello $1 from $KONGSTACK_ROLE"\n'
        'echo "to stderr" >&2\necho "changed: wrote /tmp/x"\n',
    )
    result = run_script(
        target_for(ssh_server, tmp_path),
        path,
        ["world"],
        env={"KONGSTACK_ROLE": "redis"},
        log=streamed.append,
    )
    assert result.exit_code == 0 and result.attempts == 1 and result.changed
    # stdout and stderr are separate streams in SSH: their relative order is not kept
    assert sorted(result.output.splitlines()) == [
        "changed: wrote /tmp/x",
        "hello world from redis",
        "to stderr",
    ]
    assert streamed[0] == "[127.0.0.1 role.sh] hello world from redis"


def test_pinned_key_without_known_hosts_file(ssh_server: SshServer, tmp_path: Path) -> None:
    target = SSHTarget(
        host=ssh_server.host,
        port=ssh_server.port,
        username=ssh_server.user,
        private_key=ssh_server.user_private_key,
        pinned_keys=(ssh_server.host_public_key,),
        connect_timeout=5,
    )
    result = run_script(target, script(tmp_path, "ok.sh", "echo unchanged\n"), log=lambda _: None)
    assert result.output == "unchanged" and not result.changed


def test_wrong_host_key_is_refused_without_retry(ssh_server: SshServer, tmp_path: Path) -> None:
    _, other_public = ed25519_keypair("impostor")
    key_type, key_b64 = other_public.split()[:2]
    marker = tmp_path / "ran"
    target = target_for(
        ssh_server,
        tmp_path,
        known_hosts=f"[{ssh_server.host}]:{ssh_server.port} {key_type} {key_b64}\n",
    )
    started = time.monotonic()
    with pytest.raises(HostKeyRejected, match="host key CHANGED"):
        run_script(
            target,
            script(tmp_path, "x.sh", f"touch {marker}\n"),
            retries=3,
            backoff=1.0,
            log=lambda _: None,
        )
    assert not marker.exists()
    assert time.monotonic() - started < 1.0  # no backoff: a changed key is never retried


def test_unknown_host_is_refused(ssh_server: SshServer, tmp_path: Path) -> None:
    with pytest.raises(HostKeyRejected, match="not in known_hosts"):
        run_script(
            target_for(ssh_server, tmp_path, known_hosts=""),
            script(tmp_path, "x.sh", "true\n"),
            log=lambda _: None,
        )


def test_script_failure_fails_the_step_with_its_output(
    ssh_server: SshServer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    path = script(
        tmp_path,
        "broken.sh",
        f'echo run >> {runs}\necho "installing nginx"\n'
        'echo "E: Unable to locate package nginx-full" >&2\nexit 3\n',
    )
    with pytest.raises(ScriptFailed) as info:
        run_script(target_for(ssh_server, tmp_path), path, retries=3, log=lambda _: None)
    assert info.value.exit_code == 3
    assert "broken.sh exited with code 3" in str(info.value)
    assert "E: Unable to locate package nginx-full" in str(info.value)
    assert runs.read_text().count("run") == 1  # a failing script is not retried


def test_dropped_connection_is_retried(ssh_server: SshServer, tmp_path: Path) -> None:
    started = tmp_path / "started"
    # First run: signals it started, then blocks; the proxy cuts the connection meanwhile.
    path = script(
        tmp_path,
        "slow.sh",
        f'if [ ! -f {started} ]; then touch {started}; echo "step 1"; sleep 20; fi\necho "done"\n',
    )
    proxy = DroppingProxy(ssh_server.port, drop_on=1, when=started.exists)
    try:
        lines: list[str] = []
        result = run_script(
            target_for(ssh_server, tmp_path, port=proxy.port),
            path,
            retries=2,
            backoff=0.05,
            log=lines.append,
        )
    finally:
        proxy.close()
    assert result.attempts == 2 and proxy.connections == 2
    assert result.output == "done"
    assert any("attempt 1 failed" in line and "dropped" in line for line in lines)


def test_connection_refused_is_retried_then_named(ssh_server: SshServer, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    target = target_for(ssh_server, tmp_path, port=port)
    lines: list[str] = []
    with pytest.raises(
        InstallError, match=f"127.0.0.1:{port}: could not run x.sh after 3 attempts"
    ):
        run_script(
            target, script(tmp_path, "x.sh", "true\n"), retries=2, backoff=0.01, log=lines.append
        )
    assert sum("retrying" in line for line in lines) == 2


def test_script_timeout(ssh_server: SshServer, tmp_path: Path) -> None:
    path = script(tmp_path, "hang.sh", "echo waiting\nsleep 30\n")
    started = time.monotonic()
    with pytest.raises(InstallError, match="hang.sh timed out"):
        run_script(target_for(ssh_server, tmp_path), path, timeout=1.0, log=lambda _: None)
    assert time.monotonic() - started < 10


def test_sudo_is_non_interactive_for_non_root_users() -> None:
    from tasks.providers.ssh import remote_command

    cmd = remote_command("azureuser", "/tmp/k.sh", ["a b"], env={"X": "1 2"}, sudo=True)
    assert cmd == "sudo -n env X='1 2' bash /tmp/k.sh 'a b'"
    assert remote_command("root", "/tmp/k.sh", [], env={}, sudo=True) == "env bash /tmp/k.sh"
    assert remote_command("azureuser", "/tmp/k.sh", [], env={}, sudo=False).startswith("env ")

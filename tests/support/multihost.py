"""Real hosts for multi-host tests: network namespaces, each with its own sshd and its own
Docker-API engine, reached from the test (the root namespace) only through their addresses.

    with netns_lab(3) as lab:                      # slot N: hosts 10.213.N.11, .12, .13
        h1 = lab.hosts[0]
        client = h1.docker_client(timeout=5)       # docker SDK over ssh://root@10.213.N.11
        client.containers.run(IMAGE, network_mode="host", environment={"PORT": "18101"}, ...)
        httpx.get(f"http://{h1.address}:18101/health")
        h1.cut(); ...; h1.restore()                # link down / up
        h1.kill_engine(); ...; h1.start_engine()   # the engine crashes / comes back

See docs/multihost-tests.md for the whole surface. Names and layout: tests/support/netns.py;
the engine: tests/support/nsengine.py; the bounded SDK client: tasks/instances/ssh_client.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from kongstack.core.procs import port_open, wait_until
from tasks.instances.ssh_client import ssh_docker_client
from tests.support import netns
from tests.support.netns import SlotNames
from tests.support.nsengine import EngineLayout, NamespaceEngine, write_engine_files
from tests.support.sshd import SshServer, ed25519_keypair, sshd

SSH_USER = "root"
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require_multihost() -> None:
    """Skip (saying why) only where namespace hosts cannot be made: not root, a tool
    missing, or the kernel/sandbox refusing a network namespace (tried once per process)."""
    if os.geteuid() != 0:
        pytest.skip("namespace hosts need root (ip netns, veth, a bridge)")
    for tool in ("ip", "nsenter", "podman", "/usr/sbin/sshd", "/usr/sbin/runc"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (run scripts/setup)")
    refused = netns_refused()
    if refused:
        pytest.skip(f"network namespaces cannot be created here: {refused}")


_NETNS_PROBE: list[str] = []


def netns_refused() -> str:
    """'' when ``ip netns add`` works here, else its error (probed once, removed again)."""
    if not _NETNS_PROBE:
        name = f"ks-probe-{os.getpid()}"
        made = netns.ip("netns", "add", name, check=False)
        netns.ip("netns", "del", name, check=False)
        _NETNS_PROBE.append("" if made.returncode == 0 else
                            (made.stderr.strip() or f"exit code {made.returncode}"))
    return _NETNS_PROBE[0]


@dataclass
class NetnsHost:
    """One test host: namespace ``netns`` at ``address``, its sshd on port 22, its engine."""

    index: int
    netns: str
    address: str
    ssh: SshServer
    engine: NamespaceEngine
    key_file: Path
    known_hosts: Path
    names: SlotNames
    with_image: bool

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def image(self) -> str:
        """The stock image under the lab's own tag (see ``NetnsLab.image``)."""
        return netns.pinned_image(int(self.netns.split("-")[1][1:]))  # ks-s<N>-h<k>

    @property
    def docker_url(self) -> str:
        """The engine's address for the docker SDK / DockerSettings.base_url."""
        return f"ssh://{SSH_USER}@{self.address}"

    def docker_client(self, timeout: float = 10.0) -> docker.DockerClient:
        """The docker SDK over SSH with the lab's key and bounded SSH waits."""
        return ssh_docker_client(self.docker_url, key_file=self.key_file,
                                 known_hosts=self.known_hosts, timeout=timeout)

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host (e.g. curl to one of its local ports)."""
        return subprocess.run([*netns.in_host(self.netns, self.netns), *argv],
                              capture_output=True, text=True, timeout=timeout)

    # -- faults -------------------------------------------------------------------------

    def cut(self) -> None:
        """Cut the host off: its link goes down; frames to and from it are dropped silently.
        Everything on it keeps running."""
        netns.set_link(self.names, self.index, up=False)

    def restore(self, timeout: float = 30.0) -> None:
        """Bring the link back and wait until the host's sshd answers through it."""
        netns.set_link(self.names, self.index, up=True)
        wait_until(lambda: port_open(self.address, self.ssh.port), timeout=timeout,
                   what=f"sshd of {self.name} at {self.address}")

    @property
    def is_cut(self) -> bool:
        return not netns.link_is_up(self.names, self.index)

    def kill_engine(self) -> bool:
        """SIGKILL the host's engine (its containers keep running, as after a crash)."""
        return self.engine.kill()

    def start_engine(self) -> None:
        """Start the engine again (idempotent); it finds its containers in its own store."""
        self.engine.start()

    def heal(self) -> None:
        """Undo every fault: link up, engine running. Safe to call at any time."""
        if self.is_cut:
            self.restore()
        self.start_engine()


@dataclass
class NetnsLab:
    """The hosts of one slot: subnet ``10.213.N.0/24``, bridge address ``gateway``."""

    names: SlotNames
    ssh_home: Path
    hosts: list[NetnsHost] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _stack: ExitStack = field(default_factory=ExitStack)
    _user_key: tuple[str, str] = field(default_factory=lambda: ed25519_keypair("deploy"))

    @property
    def gateway(self) -> str:
        """The root namespace's address on the hosts' network (what hosts reach the test
        process's own services on, when those listen on it or on 0.0.0.0)."""
        return self.names.gateway

    @property
    def subnet(self) -> str:
        return self.names.subnet

    @property
    def key_file(self) -> Path:
        return self.ssh_home / ".ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_home / ".ssh" / "known_hosts"

    def ssh_env(self) -> dict[str, str]:
        """Environment for a subprocess that should use the stock docker SDK (or ``ssh``) on
        these hosts with no special code: ``HOME`` with the key, config and known hosts."""
        return {**os.environ, "HOME": str(self.ssh_home)}

    def host(self, name: str) -> NetnsHost:
        return next(h for h in self.hosts if h.name == name)

    @property
    def image(self) -> str:
        """The stock image under this lab's own tag (``netns.pin_image``): start containers
        from this name, so a rebuild of ``:latest`` elsewhere cannot remove their layers."""
        return netns.pinned_image(self.names.slot)

    def add_host(self, *, with_image: bool = True) -> NetnsHost:
        """One more host on the same network (the local stand-in for an added VM)."""
        started = time.perf_counter()
        index = len(self.hosts) + 1
        netns.create_netns_host(self.names, index)
        root = self.names.state_dir / f"h{index}"
        layout = EngineLayout(root / "engine")
        write_engine_files(layout, with_image=with_image)
        place = netns.in_host(self.names.netns(index), self.names.netns(index))
        engine = NamespaceEngine(layout, place)
        engine.start()
        self._stack.callback(engine.stop)
        self._stack.callback(engine.remove_containers)
        server = self._stack.enter_context(sshd(
            root / "ssh", listen=self.names.address(index), prefix=place,
            set_env={"PATH": f"{layout.bin_dir}:{STD_PATH}",
                     "CONTAINER_HOST": f"unix://{layout.socket}"},
            user_key=self._user_key,
        ))
        with self.known_hosts.open("a") as f:
            f.write(server.known_hosts_line())
        host = NetnsHost(index=index, netns=self.names.netns(index),
                         address=self.names.address(index), ssh=server, engine=engine,
                         key_file=self.key_file, known_hosts=self.known_hosts,
                         names=self.names, with_image=with_image)
        self.hosts.append(host)
        self.timings[host.name] = time.perf_counter() - started
        return host

    def heal_all(self) -> None:
        for host in self.hosts:
            host.heal()

    def _write_ssh_home(self) -> None:
        ssh_dir = self.ssh_home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        self.key_file.write_text(self._user_key[0])
        self.key_file.chmod(0o600)
        self.known_hosts.touch()
        prefix = self.names.gateway.rsplit(".", 1)[0]
        (ssh_dir / "config").write_text(
            f"Host {prefix}.*\n  User {SSH_USER}\n  IdentityFile {self.key_file}\n"
            f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
            "  ConnectTimeout 5\n"
        )


@contextmanager
def netns_lab(count: int = 3, *, with_image: bool = True) -> Iterator[NetnsLab]:
    """``count`` namespace hosts on a slot of their own; everything is removed afterwards,
    and a crashed earlier run's leftovers before (by name)."""
    require_multihost()
    started = time.perf_counter()
    netns.sweep_stale()
    lock = netns.acquire_slot()
    names = SlotNames(lock.slot)
    lab = NetnsLab(names=names, ssh_home=names.state_dir / "home")
    try:
        netns.pin_image(names.slot)
        names.state_dir.mkdir(parents=True)
        netns.create_bridge(names)
        lab._write_ssh_home()
        with lab._stack:
            for _ in range(count):
                lab.add_host(with_image=with_image)
            lab.timings["lab"] = time.perf_counter() - started
            yield lab
    finally:
        netns.remove_slot(names)
        netns.unpin_image(names.slot)
        lock.close()

"""Test hosts as Linux network namespaces on a private bridge (the network half).

A *slot* N (100-199) owns the subnet ``10.213.N.0/24`` and every name derived from it:

- bridge ``ks<N>br`` in the root namespace, address ``10.213.N.1/24`` (the "LAN" every test
  host is on; the root namespace reaches the hosts through it and only through it);
- host k (1-based): namespace ``ks-s<N>-h<k>``, a veth pair ``ks<N>h<k>`` (root side, a
  bridge port) <-> ``eth0`` (inside), address ``10.213.N.(10+k)/24``, default route via
  ``10.213.N.1``;
- state under ``/run/kongstack/netns/s<N>/``.

A slot is held with an ``flock`` for as long as its lab lives, so two test sessions (two
worktrees, or CI and a developer) never share one. Whatever carries a slot's names while its
lock is free is a crashed run's leftover and is removed by name (``sweep_stale``) before the
slot is used again. Needs root, iproute2 and util-linux (``nsenter``): scripts/setup.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kongstack.core.errors import SetupError
from kongstack.core.procs import pid_alive
from tests.support.nsengine import EngineLayout, NamespaceEngine

SUBNET = "10.213"  # the sandbox's test range (/16); Podman's own bridge is 10.88/16
SLOTS = range(100, 200)
STATE_ROOT = Path("/run/kongstack/netns")
IP_TIMEOUT = 15.0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` (bounded); raise SetupError naming the command when it fails."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and proc.returncode != 0:
        raise SetupError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


@dataclass(frozen=True)
class SlotNames:
    """Every name and address that belongs to slot ``slot``."""

    slot: int

    @property
    def subnet(self) -> str:
        return f"{SUBNET}.{self.slot}.0/24"

    @property
    def bridge(self) -> str:
        return f"ks{self.slot}br"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge."""
        return f"{SUBNET}.{self.slot}.1"

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / f"s{self.slot}"

    @property
    def netns_prefix(self) -> str:
        return f"ks-s{self.slot}-h"

    def netns(self, index: int) -> str:
        return f"{self.netns_prefix}{index}"

    def veth(self, index: int) -> str:
        return f"ks{self.slot}h{index}"

    def address(self, index: int) -> str:
        return f"{SUBNET}.{self.slot}.{10 + index}"


class SlotLock:
    """An exclusive, non-blocking hold on one slot; released when closed or when the holder
    dies (the kernel drops an flock with its last file descriptor)."""

    def __init__(self, slot: int) -> None:
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        self.slot = slot
        self._fd: int | None = os.open(STATE_ROOT / f"slot-{slot}.lock",
                                       os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def ensure_subnet_guard() -> None:
    """``unreachable 10.213.0.0/16`` (kept; added once): a lab's bridge route (/24) wins
    while the lab lives, and once it is gone its addresses fail at once instead of following
    the default route out of the machine, where this sandbox's egress proxy would accept the
    connection and a removed host would look alive."""
    ip("route", "replace", "unreachable", f"{SUBNET}.0.0/16", "metric", "9999")


def acquire_slot() -> SlotLock:
    """The lowest free slot, its crashed leftovers (if any) already removed."""
    ensure_subnet_guard()
    for slot in SLOTS:
        try:
            lock = SlotLock(slot)
        except BlockingIOError:
            continue
        remove_slot(SlotNames(slot))
        return lock
    raise SetupError(f"all {len(SLOTS)} test network slots are in use")


def sweep_stale() -> list[int]:
    """Remove the leftovers of every slot nobody holds; return the slots that had some."""
    for line in ip("netns", "list").stdout.splitlines():
        probe = _PROBE.match(line)  # multihost.netns_refused()'s, if its process died
        if probe and not pid_alive(int(probe.group(1))):
            ip("netns", "del", f"ks-probe-{probe.group(1)}", check=False)
    cleaned = []
    for slot in _slots_with_leftovers():
        try:
            lock = SlotLock(slot)
        except BlockingIOError:
            continue  # a live run owns it
        try:
            remove_slot(SlotNames(slot))
            unpin_image(slot)
            cleaned.append(slot)
        finally:
            lock.close()
    return cleaned


_NETNS = re.compile(r"^ks-s(\d+)-h\d+\b")
_PROBE = re.compile(r"^ks-probe-(\d+)\b")
_PIN = re.compile(r"^netns-s(\d+)$")
_BRIDGE = re.compile(r"^\d+: ks(\d+)br[:@]")


def _slots_with_leftovers() -> set[int]:
    slots = {int(m.group(1)) for line in ip("netns", "list").stdout.splitlines()
             if (m := _NETNS.match(line))}
    slots |= {int(m.group(1)) for line in ip("-o", "link", "show").stdout.splitlines()
              if (m := _BRIDGE.match(line))}
    if STATE_ROOT.is_dir():
        slots |= {int(p.name[1:]) for p in STATE_ROOT.glob("s*") if p.name[1:].isdigit()}
    tags = subprocess.run(["podman", "images", "--format", "{{.Tag}}",
                           "localhost/kongstack-stock-api"], capture_output=True, text=True,
                          timeout=60).stdout.split()
    slots |= {int(m.group(1)) for tag in tags if (m := _PIN.match(tag))}
    pins = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter",
                           "label=kongstack.netns-pin"], capture_output=True, text=True,
                          timeout=60).stdout.split()
    slots |= {int(name.removeprefix("ks-pin-s")) for name in pins
              if name.removeprefix("ks-pin-s").isdigit()}
    return {s for s in slots if s in SLOTS}


def slot_netns(names: SlotNames) -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines()
            if line.startswith(names.netns_prefix)]


def kill_netns_processes(netns: str, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, every process whose network namespace is ``netns``
    (sshd, the engine, conmon and the containers it runs with host networking)."""
    pids = [int(p) for p in ip("netns", "pids", netns, check=False).stdout.split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        pids = [p for p in pids if pid_alive(p)]
        if not pids:
            return
    raise SetupError(f"processes {pids} in network namespace {netns} did not end")


def unmount_under(directory: Path) -> None:
    """Unmount everything mounted at or below ``directory`` (deepest first): a killed engine
    leaves its overlay and shm mounts behind."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        proc = subprocess.run(["umount", point], capture_output=True, timeout=IP_TIMEOUT)
        if proc.returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=IP_TIMEOUT)


STOCK_IMAGE = "localhost/kongstack-stock-api:latest"


def pinned_image(slot: int) -> str:
    return f"localhost/kongstack-stock-api:netns-s{slot}"


def pin_container(slot: int) -> str:
    return f"ks-pin-s{slot}"


def pin_image(slot: int) -> str:
    """Keep the stock image this lab's hosts use, and return a name for it. The hosts read
    the main store's images; ``scripts/build-image`` (another worktree's test session, say)
    moves ``:latest`` and removes the previous image, which pulled the layers from under the
    hosts' containers ("getting graph driver info ... no such file or directory"). A
    container in the main store (created, never started) makes that removal fail, as
    build-image expects; the lab's own tag names the image for the tests."""
    pinned = pinned_image(slot)
    for argv in (["podman", "tag", STOCK_IMAGE, pinned],
                 ["podman", "create", "--name", pin_container(slot), "--label",
                  f"kongstack.netns-pin=s{slot}", pinned, "true"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise SetupError(f"{' '.join(argv)}: {done.stderr.strip()} "
                             "(build the image with scripts/build-image)")
    return pinned


def unpin_image(slot: int) -> None:
    """Drop the lab's pin; the image goes too if nothing else names it any more."""
    subprocess.run(["podman", "rm", "-f", pin_container(slot)], capture_output=True,
                   timeout=120)
    pinned = pinned_image(slot)
    found = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", pinned],
                           capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        return
    image_id = found.stdout.strip()
    subprocess.run(["podman", "untag", image_id, pinned], capture_output=True, timeout=60)
    tags = subprocess.run(["podman", "image", "inspect", "--format", "{{len .RepoTags}}",
                           image_id], capture_output=True, text=True, timeout=60)
    if tags.returncode == 0 and tags.stdout.strip() == "0":
        subprocess.run(["podman", "rmi", image_id], capture_output=True, timeout=120)


def remove_slot(names: SlotNames) -> None:
    """Everything carrying the slot's names, in dependency order; each step tolerates a
    half-made or already-removed lab, so this is safe to repeat."""
    # Engines that still answer remove their containers themselves: that also reaches a
    # container with a network namespace of its own, which the process sweep below would miss.
    for socket in sorted(names.state_dir.glob("h*/engine/podman.sock")):
        NamespaceEngine(EngineLayout(socket.parent), prefix=()).remove_containers()
    for netns in slot_netns(names):
        kill_netns_processes(netns)
        ip("netns", "del", netns, check=False)  # also destroys its end of the veth pair
    for line in ip("-o", "link", "show").stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == names.bridge or re.fullmatch(rf"ks{names.slot}h\d+", name):
            ip("link", "del", name, check=False)
    if names.state_dir.exists():
        unmount_under(names.state_dir)
        shutil.rmtree(names.state_dir, ignore_errors=True)


def create_bridge(names: SlotNames) -> None:
    ip("link", "add", names.bridge, "type", "bridge")
    ip("addr", "add", f"{names.gateway}/24", "dev", names.bridge)
    ip("link", "set", names.bridge, "up")


def create_netns_host(names: SlotNames, index: int) -> None:
    """Namespace + veth pair on the bridge + address + default route via the bridge."""
    netns, veth = names.netns(index), names.veth(index)
    ip("netns", "add", netns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    ip("link", "set", veth, "master", names.bridge)
    ip("link", "set", veth, "up")
    ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", netns, "addr", "add", f"{names.address(index)}/24", "dev", "eth0")
    ip("-n", netns, "link", "set", "eth0", "up")
    ip("-n", netns, "route", "add", "default", "via", names.gateway)


def in_host(netns: str, hostname: str) -> list[str]:
    """Argv prefix that runs a command inside host ``netns``: its network namespace
    (``nsenter --net``; not ``ip netns exec``, which remounts /sys and hides the cgroup mounts
    runc needs) and a UTS namespace of its own named ``hostname``, so ``hostname`` over SSH
    and the engine's containers name the host they run on. The command is exec'd: its pid
    is the one the caller started."""
    return ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--uts", "sh", "-c",
            'hostname "$0" && exec "$@"', hostname]


def set_link(names: SlotNames, index: int, up: bool) -> None:
    """The host's cable: its bridge port down drops every frame to and from it silently
    (no reset, no ICMP), as a pulled cable or a dead switch port would."""
    ip("link", "set", names.veth(index), "up" if up else "down")


def link_is_up(names: SlotNames, index: int) -> bool:
    """Administratively up (the flag ``set_link`` changes), whatever the carrier."""
    out = ip("-o", "link", "show", names.veth(index), check=False).stdout
    flags = out.split("<", 1)[1].split(">", 1)[0].split(",") if "<" in out else []
    return "UP" in flags

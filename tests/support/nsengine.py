"""A test host's own container engine: a Podman API service inside the host's network
namespace, with its own storage, locks and socket (the engine half of a namespace host).

- Started inside the host (tests/support/netns.py ``in_host``): the engine, conmon and
  every container it runs with host networking live in the host's network namespace, so a
  container listening on 0.0.0.0 answers on the host's address only.
- Its own ``containers.conf`` (``CONTAINERS_CONF``) and ``storage.conf``
  (``CONTAINERS_STORAGE_CONF``): graph root, run root, ``tmp_dir`` and *file* locks under the
  host's directory. Podman's default SHM locks (``/dev/shm/libpod_lock``) would be shared with
  the main engine and every other host and hand out the same lock numbers twice.
- The stock API image without a registry: the main store (/var/lib/containers/storage) is
  an ``additionalimagestores`` entry, read-only (0.1 s; ``podman save | podman load`` into
  each host measured 5.6 s and 228 MB per host). ``with_image=False`` leaves it out, for a
  host whose engine lacks the image.
- Reached from outside only over SSH: ``bin/docker`` is a shim that runs this host's Podman
  in remote mode against the host's socket, so ``docker system dial-stdio`` (what the docker
  SDK's ``ssh://`` transport executes) proxies to this engine.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from kongstack.core.errors import SetupError
from kongstack.core.procs import Daemon

MAIN_STORE = Path("/var/lib/containers/storage")


@dataclass(frozen=True)
class EngineLayout:
    """Files of one host's engine under ``root``."""

    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "podman.sock"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def containers_conf(self) -> Path:
        return self.root / "containers.conf"

    @property
    def storage_conf(self) -> Path:
        return self.root / "storage.conf"

    @property
    def log(self) -> Path:
        return self.root / "podman-service.log"


def podman_binary() -> str:
    found = shutil.which("podman")
    if not found:
        raise SetupError("podman is not installed (run scripts/setup)")
    return found


def write_engine_files(layout: EngineLayout, *, with_image: bool) -> None:
    root = layout.root
    for sub in ("graph", "run", "tmp", "networks", "bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    layout.containers_conf.write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        'lock_type = "file"\n'
        f'tmp_dir = "{root}/tmp"\n'
        "[engine.runtimes]\n"
        'runc = ["/usr/sbin/runc"]\n'
        "[network]\n"
        f'network_config_dir = "{root}/networks"\n'
    )
    stores = f'additionalimagestores = ["{MAIN_STORE}"]\n' if with_image else ""
    layout.storage_conf.write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{root}/graph"\n'
        f'runroot = "{root}/run"\n'
        "[storage.options]\n"
        f"{stores}"
    )
    shim = layout.bin_dir / "docker"
    shim.write_text(
        "#!/bin/sh\n"
        "# `docker` on this test host: this host's own Podman engine, in remote mode. The\n"
        "# docker SDK's ssh:// transport runs `docker system dial-stdio` through it.\n"
        f'exec {podman_binary()} --remote --url unix://{layout.socket} "$@"\n'
    )
    shim.chmod(0o755)


def engine_env(layout: EngineLayout) -> dict[str, str]:
    return {"CONTAINERS_CONF": str(layout.containers_conf),
            "CONTAINERS_STORAGE_CONF": str(layout.storage_conf)}


class NamespaceEngine:
    """The Podman API service of one namespace host."""

    def __init__(self, layout: EngineLayout, prefix: Sequence[str]) -> None:
        self.layout = layout
        self.prefix = list(prefix)  # what places the service in its host (netns.in_host)
        self.daemon = Daemon("podman-service", layout.root)

    def answering(self, timeout: float = 2.0) -> bool:
        """The service answers ``/_ping`` on its socket (the fixture's own probe; tests reach
        the engine over SSH only)."""
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.layout.socket)),
                              timeout=timeout) as client:
                return client.get("http://engine/_ping").text == "OK"
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 30.0) -> int:
        """Start the service unless it runs; idempotent. Returns its pid."""
        if self.daemon.pid() is None:
            self.layout.socket.unlink(missing_ok=True)  # a killed service leaves it
        return self.daemon.start(
            [*self.prefix, podman_binary(), "system", "service", "--time=0",
             f"unix://{self.layout.socket}"],
            ready=self.answering,
            log_file=self.layout.log,
            env=engine_env(self.layout),
            timeout=timeout,
        )

    def kill(self) -> bool:
        """SIGKILL the service, as a crash would. Its containers keep running (conmon holds
        them), exactly like containers outliving a crashed engine. True if it was running."""
        return self.daemon.stop(grace=5.0, sig=signal.SIGKILL)

    def stop(self) -> bool:
        return self.daemon.stop(grace=10.0)

    def remove_containers(self, timeout: float = 60.0) -> None:
        """Force-remove every container of this engine (teardown); quiet when it is down."""
        if not self.answering():
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [podman_binary(), "--remote", "--url", f"unix://{self.layout.socket}",
                 "rm", "--all", "--force", "--time", "0"],
                capture_output=True, timeout=timeout,
            )

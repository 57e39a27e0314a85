"""ProcessDriver: backend instances as gunicorn processes, for machines with no engine.

Each instance is a ``kongstack.core.procs.Daemon`` named ``kongstack-api-<port>`` with a pid file
and a JSON metadata file (port, labels, start time, log file) in ``run_dir``; the metadata is
what ``list()`` reads, so an instance that died still shows up, as EXITED, until ``stop``.
Semantics match the DockerDriver: SIGTERM then a grace period, CPU% where 100 = one CPU busy
(the gunicorn master and its worker together), memory % of MemTotal from RSS.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kongstack.core import OWNER_LABEL
from kongstack.core.errors import InstanceError, SetupError
from kongstack.core.extras import ensure_extra
from kongstack.core.files import write_atomic
from kongstack.core.procs import Daemon, pid_alive
from tasks.instances.base import Instance, InstanceState, InstanceStats
from tasks.instances.common import (
    PORT_LABEL,
    ProcessSettings,
    instance_name,
    live_state,
    pick_port,
    poll_ready,
)

log = logging.getLogger("kongstack.instances")

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MARKER_ENV = "KONGSTACK_INSTANCE"  # set on every process we start: tells ours from others
HOME_MARKER_ENV = "KONGSTACK_INSTANCE_HOME"  # which driver home started it (names repeat)
STATS_SAMPLE_S = 0.5  # shortest interval a CPU rate is measured over


@dataclass(frozen=True)
class _Meta:
    name: str
    port: int
    started_at: datetime
    labels: dict[str, str]
    log_file: Path


class ProcessDriver:
    """InstanceDriver running ``gunicorn -c python:stock_api.gunicorn_conf`` per instance."""

    def __init__(self, settings: ProcessSettings) -> None:
        self.settings = settings
        self.run_dir = settings.run_dir
        # Last CPU sample per instance: (monotonic time, cpu ticks), for deltas between calls.
        self._cpu_seen: dict[str, tuple[float, int]] = {}

    # -- InstanceDriver -----------------------------------------------------------------

    def list(self) -> builtins.list[Instance]:
        found = []
        for meta in self._all_meta():
            if meta.labels.get(OWNER_LABEL) == self.settings.stack:
                found.append(self._instance(meta))
        return sorted(found, key=lambda i: i.name)

    def start(self, *, env: dict[str, str] | None = None) -> Instance:
        if self.settings.python == sys.executable:  # another interpreter is the user's choice
            ensure_extra("api", "running the stock API as a process")
        taken = {meta.port for meta in self._all_meta()}
        port = pick_port(self.settings.host, self.settings.base_port, taken)
        name = instance_name(port)
        log_file = self.settings.log_dir / f"{name}.log"
        data_dir = self.settings.data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        meta = _Meta(name=name, port=port, started_at=datetime.now(UTC),
                     labels=self.settings.owner_labels(port), log_file=log_file)
        # Metadata first: a crash between the two leaves an EXITED entry stop() can clear.
        self._write_meta(meta)
        full_env = self.settings.instance_env(
            port=port, name=name, data_dir=str(data_dir) if data_dir is not None else None
        ) | (env or {}) | {MARKER_ENV: name, HOME_MARKER_ENV: self._home_marker()}
        argv = [self.settings.python, "-m", "gunicorn", "-c", "python:stock_api.gunicorn_conf",
                "stock_api.app:create_app()"]
        try:
            # Readiness is waited for in wait_ready (the protocol splits start from ready);
            # Daemon.start still fails at once if the process exits immediately.
            self._daemon(name).start(argv, ready=lambda: True, log_file=log_file, env=full_env,
                                     cwd=self.settings.workdir, timeout=5)
        except SetupError as exc:
            self._forget(name)
            raise InstanceError(f"process {name} failed to start: {exc}") from exc
        log.info("started process %s on port %d", name, port)
        return self._instance(meta, state=InstanceState.STARTING)

    def wait_ready(self, instance: Instance, timeout: float = 30.0) -> Instance:
        daemon = self._daemon(instance.name)

        def gone() -> str | None:
            if daemon.running():
                return None
            meta = self._read_meta(instance.name)
            return "process exited; last log lines:\n" + (
                _tail(meta.log_file, 20) if meta else "(no metadata)"
            )

        poll_ready(instance.address, timeout=timeout, probe_timeout=self.settings.probe_timeout,
                   alive=gone, what=f"process {instance.name}")
        return dataclasses.replace(instance, state=InstanceState.READY)

    def stop(self, instance_id: str, grace: float = 10.0) -> None:
        daemon = self._daemon(instance_id)
        session = _recorded_pid(daemon.pidfile)  # even when the master is already dead
        # The gunicorn master forwards SIGTERM to its worker, which finishes in-flight requests.
        was_running = daemon.stop(grace=grace, sig=signal.SIGTERM)
        if session is not None:
            _kill_leftovers(session, instance_id)  # e.g. a worker orphaned by a killed master
        else:
            # A caller killed between spawning gunicorn and writing its pid file leaves a
            # running master nobody recorded: find it by its markers.
            was_running = _stop_marked(instance_id, self._home_marker(), grace) or was_running
        self._forget(instance_id)
        self._cpu_seen.pop(instance_id, None)
        if was_running:
            log.info("stopped process %s (pid %s)", instance_id, session)

    def _home_marker(self) -> str:
        return str(self.settings.run_dir.resolve())

    def stats(self, instance_id: str) -> InstanceStats:
        if self._read_meta(instance_id) is None:
            raise InstanceError(f"no process instance {instance_id}")
        pid = self._daemon(instance_id).pid()
        if pid is None:
            return InstanceStats(instance_id=instance_id, cpu_percent=None, memory_percent=None)
        now, ticks = time.monotonic(), _session_cpu_ticks(pid)
        previous = self._cpu_seen.get(instance_id)
        if previous is None or now - previous[0] < STATS_SAMPLE_S:
            # A rate needs two samples at least STATS_SAMPLE_S apart (CLK_TCK is 10 ms).
            if previous is None:
                previous = (now, ticks)
            time.sleep(STATS_SAMPLE_S - (now - previous[0]))
            now, ticks = time.monotonic(), _session_cpu_ticks(pid)
        self._cpu_seen[instance_id] = (now, ticks)
        elapsed = now - previous[0]
        cpu = (ticks - previous[1]) / CLK_TCK / elapsed * 100.0 if elapsed > 0 else None
        rss = _session_rss(pid)
        total = _mem_total()
        memory = rss / total * 100.0 if rss is not None and total else None
        return InstanceStats(instance_id=instance_id, cpu_percent=cpu, memory_percent=memory,
                             memory_bytes=rss)

    def logs(self, instance_id: str, tail: int = 100) -> str:
        meta = self._read_meta(instance_id)
        if meta is None:
            raise InstanceError(f"no process instance {instance_id}")
        return _tail(meta.log_file, tail)

    # -- metadata -----------------------------------------------------------------------

    def _daemon(self, name: str) -> Daemon:
        return Daemon(name=name, run_dir=self.run_dir)

    def _meta_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _write_meta(self, meta: _Meta) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        body = {"name": meta.name, "port": meta.port, "started_at": meta.started_at.isoformat(),
                "labels": meta.labels, "log_file": str(meta.log_file)}
        # atomic: list() never reads half a file
        write_atomic(self._meta_path(meta.name), json.dumps(body, indent=1))

    def _read_meta(self, name: str) -> _Meta | None:
        try:
            body = json.loads(self._meta_path(name).read_text())
            return _Meta(name=body["name"], port=int(body["port"]),
                         started_at=datetime.fromisoformat(body["started_at"]),
                         labels={str(k): str(v) for k, v in body["labels"].items()},
                         log_file=Path(body["log_file"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable instance metadata %s: %s", name, exc)
            return None

    def _all_meta(self) -> builtins.list[_Meta]:
        if not self.run_dir.is_dir():
            return []
        metas = (self._read_meta(p.stem) for p in sorted(self.run_dir.glob("kongstack-api-*.json")))
        return [m for m in metas if m is not None]

    def _forget(self, name: str) -> None:
        self._meta_path(name).unlink(missing_ok=True)
        self._daemon(name).pidfile.unlink(missing_ok=True)

    def _instance(self, meta: _Meta, state: InstanceState | None = None) -> Instance:
        address = f"{self.settings.host}:{meta.port}"
        if state is None:
            if self._daemon(meta.name).running():
                state = live_state(address, meta.started_at, self.settings)
            else:
                state = InstanceState.EXITED
        labels = dict(meta.labels)
        labels.setdefault(PORT_LABEL, str(meta.port))
        return Instance(id=meta.name, name=meta.name, address=address, state=state,
                        started_at=meta.started_at, labels=labels)


# -- /proc readings ---------------------------------------------------------------------


def _proc_stat(pid: int) -> builtins.list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _session_pids(leader: int) -> builtins.list[int]:
    """The leader and every process in its session (the gunicorn master started its own
    session, so its worker and anything the worker forks are in it)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        # fields[3] is the session id (stat field 6).
        if fields is not None and len(fields) > 3 and fields[3] == str(leader):
            pids.append(int(entry.name))
    return pids


def _session_cpu_ticks(leader: int) -> int:
    total = 0
    for pid in _session_pids(leader):
        fields = _proc_stat(pid)
        if fields is not None and len(fields) > 12:
            total += int(fields[11]) + int(fields[12])  # utime + stime (stat fields 14, 15)
    return total


def _session_rss(leader: int) -> int | None:
    total, seen = 0, False
    for pid in _session_pids(leader):
        fields = _proc_stat(pid)
        if fields is not None and len(fields) > 21:
            total += int(fields[21]) * PAGE_SIZE  # rss in pages (stat field 24)
            seen = True
    return total if seen else None


def _mem_total() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def _recorded_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_instance(pid: int, name: str) -> bool:
    """The process carries our marker (guards against a recycled session id)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER_ENV}={name}".encode() in environ.split(b"\0")


def _stop_marked(name: str, home: str, grace: float) -> bool:
    """SIGTERM every process started as instance ``name`` by the driver at ``home`` (SIGKILL
    after ``grace``); True if there was any."""
    wanted = {f"{MARKER_ENV}={name}".encode(), f"{HOME_MARKER_ENV}={home}".encode()}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = set(Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if wanted <= environ:
            found.append(int(entry.name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 2.0)
        while any(pid_alive(pid) for pid in found) and time.monotonic() < deadline:
            for pid in found:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
            time.sleep(0.02)
        if not any(pid_alive(pid) for pid in found):
            break
    return bool(found)


def _kill_leftovers(session: int, name: str) -> None:
    """SIGKILL what is left of the instance's session once its master is gone."""
    leftovers = [pid for pid in _session_pids(session) if _is_instance(pid, name)]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while any(pid_alive(pid) for pid in leftovers) and time.monotonic() < deadline:
        for pid in leftovers:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))  # the tail of a big log without reading it all
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) + ("\n" if text else "")

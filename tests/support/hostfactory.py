"""The local provider's added host: a new network-namespace host (sshd + Podman engine) in a
``NetnsLab``, behind the same HostFactory protocol the Azure provider implements
(tasks/instances/added.py). Registered by a test as ``FACTORIES["netns"]``.

Like a VM it is made in the background (a thread runs ``lab.add_host``) and ``advance``
reports ``pending`` until it is there; "removing" it stops its engine and cuts its link (the
machine is gone for the pool; the lab removes the namespace at its end)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tasks.instances.added import AddedHostRecord, HostGrowthConfig, Progress
from tasks.instances.hosts import HostConfig
from tests.support.multihost import NetnsHost, NetnsLab


@dataclass
class NetnsHostFactory:
    lab: NetnsLab
    config: HostGrowthConfig
    made: dict[str, NetnsHost] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    _making: dict[str, threading.Thread] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, record: AddedHostRecord) -> Progress:
        name = record.name
        with self._lock:
            host = self.made.get(name)
            error = self._errors.pop(name, None)
            making = self._making.get(name)
        if error is not None:
            return Progress("failed", error)
        if host is not None:
            return Progress("ready", f"namespace host {host.netns} at {host.address}",
                            host=HostConfig(name=name, docker_host=host.docker_url,
                                            capacity=self.config.capacity,
                                            ssh_key_file=self.lab.key_file,
                                            known_hosts_file=self.lab.known_hosts,
                                            timeout_seconds=self.config.timeout_seconds,
                                            added=True))
        if making is None:
            thread = threading.Thread(target=self._make, args=(name,), daemon=True,
                                      name=f"netns-{name}")
            with self._lock:
                self._making[name] = thread
            thread.start()
        return Progress("pending", f"making namespace host {name}")

    def _make(self, name: str) -> None:
        try:
            host = self.lab.add_host()
        except Exception as exc:  # reported by the next advance
            with self._lock:
                self._errors[name] = f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            self.made[name] = host

    def remove(self, record: AddedHostRecord) -> Progress:
        host = self.made.get(record.name)
        if host is not None and record.name not in self.removed:
            host.kill_engine()
            host.cut()
            self.removed.add(record.name)
        return Progress("gone", f"namespace host {record.name} shut down")

    def existing(self) -> list[str]:
        return sorted(set(self.made) - self.removed)

    def close(self) -> None:
        """The factory outlives a tick (it is the test's); nothing to release."""

    def wait(self, timeout: float = 60.0) -> None:
        for thread in list(self._making.values()):
            thread.join(timeout)

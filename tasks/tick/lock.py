"""The tick lock: two ticks never act on one pool at once, on one machine or on several.

Two layers, both non-blocking (a tick that finds the pool busy does nothing and says so):

- ``tick_lock(path)``: an ``flock`` on a file under the run directory. It costs nothing and
  covers ticks started directly on one machine (tests, ``kongstack`` commands); the kernel
  releases it when the holder dies. flock locks belong to the open file description, so two
  ticks exclude each other whether they run in two processes or in two threads of one.
- ``pool_lock(name)``: a Prefect global concurrency limit of 1 slot per pool
  (``kongstack-autoscale-<stack>``), held with a lease. Every worker on every machine asks
  the same Prefect server, so it holds across machines, where a file lock cannot. The lease is
  renewed while the tick runs; a worker that dies stops renewing and its slot is freed when
  the lease expires (``lease_seconds``, Prefect's minimum 60 s), so a killed tick never
  blocks the pool for long; one that died on this machine is freed by the next tick here at
  once (its lease id is left in a file beside the file lock).

The deployment's own concurrency rule (prefect.yaml: 1, CANCEL_NEW) guards scheduled runs of
one deployment as well; the limit here also covers the alert fast path, manual runs and a
second deployment of the same pool.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from uuid import UUID

import httpx

log = logging.getLogger("kongstack.autoscale")

LIMIT_PREFIX = "kongstack-autoscale-"
LEASE_SECONDS = 60.0
"""How long a dead worker's slot outlives it (the lease is renewed while a tick runs)."""


@contextmanager
def tick_lock(path: Path) -> Iterator[bool]:
    """Non-blocking exclusive lock; yields False if another tick holds it. The kernel
    releases it if the holder dies, so a killed tick never leaves a stale lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextmanager
def tick_lock_within(path: Path, timeout: float, *, poll: float = 0.2) -> Iterator[bool]:
    """``tick_lock``, waiting up to ``timeout`` seconds for a running tick to let go (a
    command waits its turn rather than failing beside a tick); yields False after that."""
    deadline = time.monotonic() + timeout
    while True:
        with tick_lock(path) as held:
            if held or time.monotonic() >= deadline:
                yield held
                return
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))  # polled, bounded


def limit_name(stack: str) -> str:
    return f"{LIMIT_PREFIX}{stack}"


async def ensure_limit(name: str) -> bool:
    """The pool's limit exists with 1 slot (idempotent; two workers may race to make it).
    Returns whether its slot looked free just now (a hint; the acquisition decides)."""
    from prefect import get_client
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    async with get_client() as client:
        try:
            found = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                await client.upsert_global_concurrency_limit_by_name(name, 1)
            except ObjectAlreadyExists:
                pass  # another worker made it a moment ago
            return True
        if found.limit != 1 or not found.active:
            await client.upsert_global_concurrency_limit_by_name(name, 1)
        return found.active_slots < 1


@asynccontextmanager
async def pool_lock(name: str, *, lease_seconds: float = LEASE_SECONDS,
                    lease_file: Path | None = None) -> AsyncIterator[bool]:
    """Hold the pool's global concurrency slot for the block; yields False at once (asks
    once, never waits) when another tick, on any machine, holds it.

    ``lease_file`` (under the file lock, which the caller holds) keeps the lease id while
    the slot is held. A tick that finds one left there knows its writer died on this
    machine (the kernel released the file lock) and gives that lease back at once, instead
    of leaving the pool busy until the lease expires. A holder that died on another machine
    is freed by the expiry (``lease_seconds``)."""
    from prefect import get_client

    if not await ensure_limit(name):
        if lease_file is None or not await _release_orphan(lease_file):
            yield False  # taken (Prefect would log a refused acquisition as an error)
            return
    async with get_client() as client:
        try:
            response = await client.increment_concurrency_slots_with_lease(
                [name], 1, "concurrency", lease_seconds)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423:  # 423 Locked: taken since we looked
                raise
            yield False
            return
        lease_id = UUID(str(response.json()["lease_id"]))
    if lease_file is not None:
        lease_file.write_text(f"{lease_id}\n")
    renewal = LeaseRenewal(lease_id, lease_seconds)
    try:
        yield True
    finally:
        renewal.stop()
        try:
            async with get_client() as client:
                await client.release_concurrency_slots_with_lease(lease_id)
        finally:
            if lease_file is not None:
                lease_file.unlink(missing_ok=True)


async def _release_orphan(lease_file: Path) -> bool:
    """Give back the lease a tick that died on this machine left; True if there was one."""
    from prefect import get_client

    try:
        lease_id = UUID(lease_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    async with get_client() as client:
        try:
            await client.release_concurrency_slots_with_lease(lease_id)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:  # 404: it had expired already
                raise
    lease_file.unlink(missing_ok=True)
    log.warning("released the concurrency lease %s of a tick that died on this machine",
                lease_id)
    return True


@contextmanager
def pool_lock_within(name: str, timeout: float, *, lease_file: Path | None = None,
                     poll: float = 0.5) -> Iterator[bool]:
    """``pool_lock`` for a synchronous caller (``kongstack scale``), waiting up to ``timeout``
    seconds for a tick on any machine to let go (polled, bounded); yields False after that."""
    deadline = time.monotonic() + timeout
    with asyncio.Runner() as runner:
        while True:
            lock = pool_lock(name, lease_file=lease_file)
            held = runner.run(lock.__aenter__())
            if not held:
                runner.run(lock.__aexit__(None, None, None))
                if time.monotonic() < deadline:
                    time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
                    continue
                yield False
                return
            try:
                yield True
            except BaseException:
                runner.run(lock.__aexit__(*sys.exc_info()))
                raise
            runner.run(lock.__aexit__(None, None, None))
            return


class LeaseRenewal:
    """Renews a lease every third of its duration from a thread of its own: the tick's sync
    tasks may hold the flow's event loop for longer than the lease."""

    def __init__(self, lease_id: UUID, lease_seconds: float) -> None:
        self.lease_id = lease_id
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kongstack-lease",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from prefect import get_client

        while not self._stop.wait(self.lease_seconds / 3):
            try:
                with get_client(sync_client=True) as client:
                    client.renew_concurrency_lease(self.lease_id, self.lease_seconds)
            except Exception as exc:  # keep trying: the next renewal may get through
                log.warning("renewing the tick's concurrency lease failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

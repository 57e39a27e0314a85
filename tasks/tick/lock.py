"""The tick lock: two ticks never act on one pool at once.

The deployment's concurrency limit (prefect.yaml: 1, CANCEL_NEW) guards scheduled runs; this
file lock also covers ticks started directly (tests, ``kongstack`` commands, a second worker).
flock locks belong to the open file description, so two ticks exclude each other whether
they run in two processes or in two threads of one.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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

"""A gunicorn gthread worker that drains properly on SIGTERM.

Stock gthread already stops accepting and lets in-flight requests finish within
``graceful_timeout``. Two additions:

* the shutdown flag is raised at once, so ``/ready`` answers 503 while draining;
* the worker closes its inherited copies of the listening sockets as soon as it stops
  accepting. The master has closed its copies before signalling, so the kernel socket
  goes away and new connections are *refused* (a gateway fails over at once) instead of
  waiting in a backlog nobody will accept. On a reload (SIGHUP) the master keeps its
  copies, so new workers still accept.
"""

from __future__ import annotations

import contextlib
from types import FrameType
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from stock_api import lifecycle


class DrainingThreadWorker(ThreadWorker):  # type: ignore[misc]
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        lifecycle.begin_shutdown()
        super().handle_exit(sig, frame)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            listeners: list[Any] = list(self.sockets)
            for listener in listeners:
                with contextlib.suppress(OSError):
                    listener.close()

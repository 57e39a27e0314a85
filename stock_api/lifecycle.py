"""Process-wide shutdown state: set when the worker receives SIGTERM.

``/ready`` reports 503 from then on, so that anything still polling it over an open
connection (a gateway health check, the autoscaler's drain) stops sending traffic.
"""

from __future__ import annotations

import threading

_shutting_down = threading.Event()


def begin_shutdown() -> None:
    _shutting_down.set()


def shutting_down() -> bool:
    return _shutting_down.is_set()


def reset() -> None:
    """Forget a shutdown (tests that build several apps in one process)."""
    _shutting_down.clear()

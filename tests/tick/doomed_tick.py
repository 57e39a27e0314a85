"""One autoscale tick in its own process that stops, forever, at a chosen point and says so
on stdout, so the test can kill it there (a crash on cue):

    python -m tests.tick.doomed_tick CONFIG_JSON            "started": its new instances are
        started and none of them is a gateway target yet (a crash mid scale-up)
    python -m tests.tick.doomed_tick CONFIG_JSON recording  "acted": the scale-up is done and
        nothing is recorded yet (a crash between acting and recording)
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

from flows.autoscale import autoscale
from tasks.instances.base import Instance
from tasks.instances.docker import DockerDriver
from tasks.instances.process import ProcessDriver
from tasks.tick.config import AutoscaleConfig
from tasks.tick.run import TickRun


def _stop_here(self: Any, instance: Instance, timeout: float = 30.0) -> Any:
    print("started", flush=True)
    threading.Event().wait()  # until the test kills this process


def _stop_before_recording(self: TickRun, *args: Any) -> Any:
    print("acted", flush=True)
    threading.Event().wait()  # until the test kills this process


def main(path: str, where: str = "started") -> None:
    config = AutoscaleConfig.model_validate_json(open(path).read())
    if where == "recording":
        TickRun.record = _stop_before_recording  # type: ignore[method-assign,assignment]
    else:
        ProcessDriver.wait_ready = _stop_here  # type: ignore[method-assign]
        DockerDriver.wait_ready = _stop_here  # type: ignore[method-assign]  # (each host's)
    asyncio.run(autoscale(config=config, trigger="doomed"))


if __name__ == "__main__":
    main(*sys.argv[1:3])

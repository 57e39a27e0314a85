"""One autoscale tick in its own process that stops, forever, the moment it has started its
new instances: it says so on stdout ("started") so the test can kill it there, with the
instances started and none of them a gateway target yet (a crash mid scale-up, on cue).

    python -m tests.tick.doomed_tick CONFIG_JSON
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

from flows.autoscale import autoscale
from tasks.instances.base import Instance
from tasks.instances.process import ProcessDriver
from tasks.tick.config import AutoscaleConfig


def _stop_here(self: ProcessDriver, instance: Instance, timeout: float = 30.0) -> Any:
    print("started", flush=True)
    threading.Event().wait()  # until the test kills this process


def main(path: str) -> None:
    config = AutoscaleConfig.model_validate_json(open(path).read())
    ProcessDriver.wait_ready = _stop_here  # type: ignore[method-assign]
    asyncio.run(autoscale(config=config, trigger="doomed"))


if __name__ == "__main__":
    main(sys.argv[1])

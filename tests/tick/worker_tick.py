"""One autoscale tick in its own process, as a worker on another machine would run it.

    python -m tests.tick.worker_tick CONFIG_JSON [--hold]

With ``--hold`` the tick stops at its act step (inside both tick locks), prints "inside"
and waits for a line on stdin before it acts: the test decides when it goes on, no timing.
The tick's result is printed as one JSON line at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import flows.autoscale as autoscale_flow
from tasks.tick.act import act
from tasks.tick.config import AutoscaleConfig


def held_act(*args: Any, **kwargs: Any) -> Any:
    print("inside", flush=True)
    sys.stdin.readline()  # the test says when
    return act(*args, **kwargs)


def main(path: str, hold: bool) -> None:
    config = AutoscaleConfig.model_validate_json(open(path).read())
    if hold:
        setattr(autoscale_flow, "act", held_act)  # noqa: B010  (the flow looks it up by name)
    result = asyncio.run(autoscale_flow.autoscale(config=config, trigger="worker"))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], "--hold" in sys.argv[2:])

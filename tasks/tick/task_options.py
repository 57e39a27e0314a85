"""Prefect options shared by the tick's tasks (apart from the pool model, tasks/tick/pool.py,
which the CLI reads without Prefect)."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from kongstack.core.errors import GatewayError, InstanceError
from kongstack.core.retry import retry_on

POOL_CHANGING_TASK: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [1.0, 3.0],
    "retry_jitter_factor": 0.3,
    # engine and gateway hiccups go away; configuration and logic errors will not
    "retry_condition_fn": retry_on(GatewayError, InstanceError, OSError, TimeoutError),
    "cache_policy": NO_CACHE,
}
"""Prefect options of every task that changes the pool: retried on transient faults only
(each step re-reads the world, so a retry never duplicates work), never cached."""

"""Ticks exclusive across machines: two workers (two processes, each with its own file lock,
as on two machines) tick one pool at once against one Prefect server; exactly one acts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from kongstack.core.procs import wait_until
from kongstack.core.settings import REPO_ROOT
from tasks.tick.config import AutoscaleConfig
from tasks.tick.lock import ensure_limit, limit_name, pool_lock
from tests.support.autoscale_stack import Stack


def worker(config: AutoscaleConfig, tmp: Path, name: str, *,
           hold: bool = False) -> subprocess.Popen[str]:
    from prefect.settings import PREFECT_API_URL

    # Another machine: its own run directory, so the file lock cannot see the other worker
    # (inside the stack's home, where a lock_path must be).
    home = config.pool.settings().home
    own = AutoscaleConfig.model_validate(
        {**config.model_dump(), "lock_path": home / name / "autoscale.lock"})
    path = tmp / f"{name}.json"
    path.write_text(own.model_dump_json())
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "KONGSTACK_AUTOSCALER_CONFIG": ""}
    argv = [sys.executable, "-m", "tests.tick.worker_tick", str(path),
            *(["--hold"] if hold else [])]
    return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(proc: subprocess.Popen[str], timeout: float = 180) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    last = [line for line in out.splitlines() if line.startswith("{")][-1]
    return dict(json.loads(last))


def read_line(stream: IO[str] | None) -> str:
    assert stream is not None
    return stream.readline().strip()


@contextmanager
def held_worker(config: AutoscaleConfig, tmp: Path, name: str
                ) -> Iterator[subprocess.Popen[str]]:
    """A worker whose tick stops inside its act step, holding the pool, until ``let_finish``."""
    proc = worker(config, tmp, name, hold=True)
    try:
        assert read_line(proc.stdout) == "inside", proc.stderr.read() if proc.stderr else ""
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def let_finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Let a held worker finish its tick; its result."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return result_of(proc)


def test_two_workers_at_once_exactly_one_acts(process_stack: Stack, tmp_path: Path) -> None:
    s = process_stack
    grow = s.with_policy(min_instances=3)  # real work: whoever runs must act
    # The first worker holds the pool's slot at its act step (it says so).
    with held_worker(grow, tmp_path, "machine-a") as first:
        second = result_of(worker(grow, tmp_path, "machine-b"))
        assert second.get("skipped") is True, second
        assert "concurrency limit" in second["reason"]
        done = let_finish(first)
    assert done.get("after") == 3, done
    assert len(s.driver().list()) == 3  # one tick's worth of instances, not two
    # The slot is free again: the next worker (either machine) ticks.
    again = result_of(worker(grow, tmp_path, "machine-b"))
    assert not again.get("skipped") and again["after"] == 3, again


@pytest.mark.usefixtures("prefect_harness")
def test_pool_lock_is_taken_once_and_freed_on_exit() -> None:
    name = limit_name(f"lock-{uuid.uuid4().hex[:8]}")

    async def run() -> tuple[bool, bool, bool]:
        async with pool_lock(name) as held:
            async with pool_lock(name) as second:
                busy = not second
        async with pool_lock(name) as third:  # released on exit: free at once
            free = third
        return held, busy, free

    assert asyncio.run(run()) == (True, True, True)


def test_a_dead_workers_slot_is_freed_when_its_lease_expires(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a killed worker leaves: a slot taken with a lease nobody renews. The pool is
    busy until the lease (Prefect's minimum, 60 s) runs out and the server's repossessor
    takes the slot back; then the next tick gets it. A real ``prefect server start`` (the
    test harness runs no background services), its repossessor looking every second."""
    from prefect.concurrency._asyncio import aacquire_concurrency_slots_with_lease
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from kongstack.cli.localprefect import api_url
    from tests.support.prefect_servers import prefect_server

    monkeypatch.setenv("PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS", "1")
    name = limit_name(f"dead-{uuid.uuid4().hex[:8]}")

    async def try_lock() -> bool:
        async with pool_lock(name) as held:
            return held

    async def abandon() -> None:
        await ensure_limit(name)
        await aacquire_concurrency_slots_with_lease([name], 1, lease_duration=60, strict=True)

    with prefect_server("sqlite") as settings, \
            temporary_settings(updates={PREFECT_API_URL: api_url(settings)}):
        asyncio.run(abandon())
        assert not asyncio.run(try_lock())  # the dead worker's lease still holds the slot
        wait_until(lambda: asyncio.run(try_lock()), timeout=240, interval=2.0,
                   what="the abandoned lease to expire and free the slot")


def test_a_manual_scale_and_a_tick_on_another_machine_never_act_at_once(
        process_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``kongstack scale`` takes the pool lock ticks take (tasks/tick/manual_scale.py): with
    its own file lock free (the tick runs on another machine), it still waits for the tick
    and then refuses; and while it scales, another machine's tick does nothing."""
    from kongstack.core.errors import StackError
    from tasks.tick import manual_scale

    s = process_stack
    grow = s.with_policy(min_instances=3)
    with held_worker(grow, tmp_path, "machine-a") as first:
        with pytest.raises(StackError, match="still holds the pool's concurrency limit"):
            manual_scale.scale_by_hand(s.config, 2, reason="by hand", lock_wait_seconds=1.0)
        assert s.driver().list() == []  # the manual scale did nothing
        done = let_finish(first)
    assert done.get("after") == 3, done

    inside, release = threading.Event(), threading.Event()
    resize = manual_scale._resize_by_hand

    def held_resize(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        release.wait(timeout=120)  # the test says when
        return resize(*args, **kwargs)

    monkeypatch.setattr(manual_scale, "_resize_by_hand", held_resize)
    results: list[Any] = []
    by_hand = threading.Thread(target=lambda: results.append(manual_scale.scale_by_hand(
        s.config, 2, reason="by hand")))
    by_hand.start()
    try:
        assert inside.wait(timeout=60)
        other = result_of(worker(grow, tmp_path, "machine-b"))
        assert other.get("skipped") is True and "concurrency limit" in other["reason"], other
    finally:
        release.set()
        by_hand.join(timeout=120)
    (action,) = results
    assert (action.from_count, action.to_count, action.outcome) == (3, 2, "ok")
    assert len(s.driver().list()) == 2

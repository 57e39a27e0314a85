"""A real, small autoscaling stack on free loopback ports, for tests and the benchmark.

nginx (the gateway), Prometheus (1 s scrapes of the file_sd list the autoscaler writes),
backend instances from the process driver or the Docker driver, and the autoscale flow
ticked directly (``stack.tick()``) against whatever Prefect API is configured.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from autoscaler import AutoscalePolicy
from flows.autoscale import autoscale
from kongstack.core.procs import Daemon, free_port, free_port_block, http_ok, wait_until
from tasks.gateway.desired import ConsumerConfig, GatewayStackConfig, build_gateway_state
from tasks.gateway.protocol import Gateway
from tasks.instances.base import InstanceDriver, InstanceState
from tasks.tick.config import AutoscaleConfig
from tasks.tick.pool import PoolConfig, build_driver, build_gateway
from tasks.tick.prometheus import PrometheusConfig
from tasks.tick.record import RecordConfig

FAST_POLICY = {
    "min_instances": 2,
    "max_instances": 4,
    "target_rps_per_instance": 10.0,
    "target_cpu_percent": None,
    "target_memory_percent": None,
    "warmup_seconds": 0.0,
    "scale_down_stabilization_seconds": 6.0,
    "metric_max_age_seconds": 30.0,
    # The decision core's long memories (30 min peak, 5 min scale-in cooldown, 60 s rate
    # forecast) are right for production and would hide what these tests look at.
    "scale_down_peak_window_seconds": 0.0,
    "scale_down_cooldown_seconds": 0.0,
    "forecast_seconds": 0.0,
}
"""Short windows so a test sees a whole scale-out/scale-in cycle in seconds."""


def prometheus_yaml(targets_file: Path, scrape_interval: str = "1s", extra: str = "") -> str:
    return extra + (
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        "scrape_configs:\n"
        "  - job_name: stock_api\n"
        f"    scrape_interval: {scrape_interval}\n"
        "    scrape_timeout: 900ms\n"
        "    file_sd_configs:\n"
        f"      - files: ['{targets_file}']\n"
        "        refresh_interval: 1s\n"
    )


@dataclass
class Prometheus:
    daemon: Daemon
    port: int
    argv: list[str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.daemon.start(self.argv, ready=lambda: http_ok(f"{self.url}/-/ready"),
                          log_file=self.log, timeout=30)

    def stop(self) -> None:
        self.daemon.stop(grace=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=3).json()
        return list(body["data"]["result"])


@contextmanager
def prometheus_server(workdir: Path, targets_file: Path, extra: str = "") -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (run scripts/setup)")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "prometheus.yml"
    conf.write_text(prometheus_yaml(targets_file, extra=extra))
    port = free_port()
    prom = Prometheus(
        daemon=Daemon(f"prometheus-{port}", workdir),
        port=port,
        argv=[binary, f"--config.file={conf}", f"--storage.tsdb.path={workdir / 'tsdb'}",
              f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        log=workdir / "prometheus.log",
    )
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


@dataclass
class Stack:
    home: Path
    config: AutoscaleConfig
    prometheus: Prometheus
    gateway_url: str

    def with_policy(self, **changes: Any) -> AutoscaleConfig:
        policy = self.config.policy.with_overrides(changes)
        return self.config.model_copy(update={"policy": policy})

    def tick(self, config: AutoscaleConfig | None = None, trigger: str = "test") -> dict[str, Any]:
        return asyncio.run(autoscale(config=config or self.config, trigger=trigger))

    def driver(self) -> InstanceDriver:
        return build_driver(self.config.pool)

    def gateway(self) -> Gateway:
        return build_gateway(self.config.pool)

    def ready(self) -> list[str]:
        return sorted(i.address for i in self.driver().list() if i.state is InstanceState.READY)

    def targets(self) -> list[str]:
        return sorted(t.address for t in self.gateway().list_targets() if t.weight > 0)

    def rps(self) -> float | None:
        result = self.prometheus.query(
            'sum(rate(stock_api_requests_total{route=~"/api.*"}[5s]))')
        return float(result[0]["value"][1]) if result else None

    def scraping(self) -> int:
        """How many backends Prometheus scrapes successfully right now (0 if it is down)."""
        try:
            result = self.prometheus.query('count(up{job="stock_api"} == 1)')
        except httpx.HTTPError:
            return 0
        return int(float(result[0]["value"][1])) if result else 0

    def wait_rps(self, predicate: Any, timeout: float = 30.0, what: str = "rps") -> None:
        def ok() -> bool:
            value = self.rps()
            return value is not None and bool(predicate(value))

        wait_until(ok, timeout=timeout, what=what, interval=0.25)

    def get(self, path: str = "/api/stocks") -> httpx.Response:
        return httpx.get(f"{self.gateway_url}{path}", headers=API_HEADERS, timeout=10)

    def stop_all(self) -> None:
        driver = self.driver()
        for inst in driver.list():
            driver.stop(inst.id, grace=2)
        gateway = self.gateway()
        stop = getattr(gateway, "stop", None)
        if callable(stop):
            stop()


LOAD_KEY = "autoscale-load-key-5c1e"
API_HEADERS = {"apikey": LOAD_KEY}


def keyed_gateway_state(stack: str) -> Any:
    """The stack's gateway state with key-auth and rate limiting on, as deployed; the load's
    consumer may send far more than the tests' load."""
    load = ConsumerConfig(username="load", key=SecretStr(LOAD_KEY), access="read",
                          rate_limit_per_minute=6_000_000)
    return build_gateway_state(GatewayStackConfig(stack=stack, consumers=(load,)))


def instance_base_port() -> int:
    return free_port_block()


@contextmanager
def autoscale_stack(workdir: Path, *, driver: str, redis_url: str,
                    policy: dict[str, Any] | None = None, drain_seconds: float = 3.0,
                    rate_window: str = "5s", prometheus_extra: str = "",
                    pool_overrides: dict[str, Any] | None = None) -> Iterator[Stack]:
    """nginx + Prometheus + an empty pool, all under ``workdir`` on free ports.
    ``pool_overrides``: PoolConfig fields (e.g. ``hosts`` for a pool over several hosts)."""
    stack = f"as-{uuid.uuid4().hex[:8]}"
    home = workdir / "home"
    local = {"home": str(home), "gateway_port": free_port(), "gateway_status_port": free_port(),
             "api_base_port": instance_base_port()}
    overrides = dict(pool_overrides or {})
    local.update(overrides.pop("local", {}))
    pool = PoolConfig.model_validate({
        "stack": stack, "driver": driver, "gateway": "nginx", "local": local,
        "redis_url": redis_url, "data_dir": workdir / "data", "ready_timeout_seconds": 60,
        "drain_seconds": drain_seconds, "drain_min_seconds": 1.0, "stop_grace_seconds": 5,
        **overrides})
    targets_file = pool.scrape_file()
    targets_file.parent.mkdir(parents=True, exist_ok=True)
    targets_file.write_text("[]")
    with prometheus_server(workdir / "prometheus", targets_file, prometheus_extra) as prom:
        config = AutoscaleConfig(
            policy=AutoscalePolicy.build({**FAST_POLICY, **(policy or {})}),
            prometheus=PrometheusConfig(url=prom.url, rate_window=rate_window,
                                        max_age_seconds=30),
            pool=pool,
            record=RecordConfig(stack=stack, scaling_log_path=home / "history.sqlite",
                                textfile_path=home / "metrics" / "autoscaler.prom"),
            memory_block=stack,
        )
        gateway = build_gateway(pool)
        gateway.apply(keyed_gateway_state(stack))
        s = Stack(home=home, config=config, prometheus=prom,
                  gateway_url=f"http://127.0.0.1:{local['gateway_port']}")
        try:
            yield s
        finally:
            s.stop_all()


def wait_for(predicate: Any, *, timeout: float, what: str) -> None:
    wait_until(lambda: bool(predicate()), timeout=timeout, what=what, interval=0.2)


def monotonic_deadline(seconds: float) -> float:
    return time.monotonic() + seconds

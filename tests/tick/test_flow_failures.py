"""A tick that cannot act fails loudly and leaves a trace: a failed flow run, a history row,
the textfile's failure counter (which the AutoscaleTicksFailing alert watches)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flows.autoscale import autoscale
from kongstack.core.errors import ConfigError
from tasks.tick.config import AutoscaleConfig, resolve_config
from tasks.tick.pool import PoolConfig
from tasks.tick.prometheus import PrometheusConfig
from tasks.tick.record import RecordConfig, read_counter
from tasks.tick.scaling_log import ScalingLog


@pytest.mark.usefixtures("prefect_harness")
def test_a_failing_tick_is_recorded_and_raises(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KONG_ADMIN_URL", raising=False)
    textfile = tmp_path / "metrics" / "autoscaler.prom"
    config = AutoscaleConfig(
        pool=PoolConfig(stack="fail-test", driver="process", gateway="kong",
                        local={"home": str(tmp_path)}),
        prometheus=PrometheusConfig(url="http://127.0.0.1:9"),
        record=RecordConfig(stack="fail-test", scaling_log_path=tmp_path / "h.sqlite",
                            textfile_path=textfile, artifacts=False),
        memory_block="fail-test",
    )
    for attempt in (1, 2):
        with pytest.raises(ConfigError, match="admin_url"):
            asyncio.run(autoscale(config=config))
        assert read_counter(textfile, "kongstack_autoscaler_tick_failures_total") == attempt
    assert "kongstack_autoscaler_last_tick_success 0.0" in textfile.read_text().splitlines()
    rows = ScalingLog(tmp_path / "h.sqlite").recent()
    assert [(r.kind, r.outcome) for r in rows] == [("error", "failed"), ("error", "failed")]
    assert "admin_url" in rows[0].reason


def test_config_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "autoscale.yaml"
    path.write_text("policy: {min_instances: 2, max_instances: 5}\npool: {driver: process}\n")
    monkeypatch.setenv("KONGSTACK_AUTOSCALER_CONFIG", str(path))
    monkeypatch.setenv("KONGSTACK_AUTOSCALE_MAX_INSTANCES", "4")
    config = resolve_config(None, dry_run=True)
    assert (config.policy.min_instances, config.policy.max_instances) == (2, 4)
    assert config.policy.dry_run and config.pool.driver == "process"
    path.write_text("policy: {min_instances: 2}\npool: {drivr: process}\n")
    with pytest.raises(ConfigError, match="drivr"):
        resolve_config(None, dry_run=None)

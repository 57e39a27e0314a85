"""``kongstack status`` reads without Prefect: the tick memory over the server's REST API, in a
fresh interpreter that never imports prefect; a configured server that does not answer is
exit code 3 naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoscaler.model import ScalingHistory
from kongstack.cli.app import app
from kongstack.core.procs import free_port_block
from kongstack.core.settings import REPO_ROOT

runner = CliRunner()

PROBE = """
import json, sys
from kongstack.cli.app import app
try:
    app(["status", "--json", "--config", sys.argv[1]], prog_name="kongstack")
except SystemExit as exc:
    code = exc.code
print("MODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
print("EXIT " + str(code))
"""


def _empty_stack_env(home: Path) -> dict[str, str]:
    """A stack with no instances and no gateway running: status still answers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KONGSTACK_", "PREFECT_API_"))}
    return env | {"KONGSTACK_HOME": str(home), "KONGSTACK_DRIVER": "process",
                  "KONGSTACK_GATEWAY": "nginx", "COLUMNS": "200"}


@pytest.mark.usefixtures("prefect_harness")
def test_status_json_reads_the_memory_without_importing_prefect(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    from tasks.tick.memory import save_memory

    block = f"status-{uuid.uuid4().hex[:8]}"
    save_memory.fn(block, ScalingHistory(last_scale_up_at=datetime.now(UTC)), generation=0,
                   pool_size=2)
    config = tmp_path / "autoscale.yaml"
    config.write_text(f"memory_block: {block}\npolicy: {{scale_up_cooldown_seconds: 600}}\n")
    env = _empty_stack_env(tmp_path / "home") | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = subprocess.run([sys.executable, "-c", PROBE, str(config)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert lines[-1] == "EXIT 0", done.stdout + done.stderr
    loaded = json.loads(lines[-2].removeprefix("MODULES "))
    assert "prefect" not in loaded, "status must not import prefect"
    # nor the docker SDK (and paramiko) for a pool of processes: the drivers load when chosen
    assert not {"docker", "paramiko"} & set(loaded), loaded
    doc = json.loads("\n".join(lines[:-2]))
    up = doc["cooldowns"]["scale_up_remaining_s"]
    assert up is not None and 0 < up <= 600, doc["cooldowns"]  # read from the block
    assert doc["policy"]["fields"]["scale_up_cooldown_seconds"]["value"] == 600


def test_a_configured_server_that_does_not_answer_is_exit_3(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port_block(1)}/api"
    env = _empty_stack_env(tmp_path) | {"PREFECT_API_URL": closed}
    as_json = runner.invoke(app, ["status", "--json"], env=env)
    assert as_json.exit_code == 3, as_json.output
    error = json.loads(as_json.stdout)
    assert error["exit_code"] == 3 and closed in error["error"]
    assert "did not answer" in error["error"] and "kongstack up" in error["error"]
    table = runner.invoke(app, ["status"], env=env)
    assert table.exit_code == 3 and closed in " ".join(table.output.split())

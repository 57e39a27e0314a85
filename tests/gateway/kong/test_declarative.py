"""The declarative export: decK 1.4.0 accepts it, Kong's loader (double) accepts it, and it
round-trips to the same desired state."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from kongstack.core.errors import ConfigError
from tasks.gateway.desired import GatewayStackConfig, build_gateway_state
from tasks.gateway.kong import declarative
from tasks.gateway.kong.model import GatewayState
from tasks.gateway.kong.template import TEMPLATE_PATH, render_template
from tests.doubles import kong_dbless
from tests.gateway.kong.conftest import DEMO_KEY
from tests.support.services import require_binary


def _deck_validate(path: Path) -> subprocess.CompletedProcess[str]:
    deck = require_binary("deck")
    env = {**os.environ, "DECK_ANALYTICS": "off"}
    # --kong-addr to a closed port proves validation is offline.
    return subprocess.run([deck, "validate", "-s", str(path), "--kong-addr",
                           "http://127.0.0.1:1"], capture_output=True, text=True, env=env,
                          timeout=60, check=False, cwd=path.parent)


@pytest.mark.parametrize("reveal", [False, True], ids=["placeholders", "keys"])
def test_deck_validate_accepts_the_export(desired: GatewayState, tmp_path: Path,
                                          reveal: bool) -> None:
    state = desired.with_targets(list(
        build_gateway_state(GatewayStackConfig(), ["127.0.0.1:18101"]).targets or ()))
    path = declarative.write(state, tmp_path / "kong.yaml", reveal_secrets=reveal)
    result = _deck_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load(path.read_text())
    assert doc["_format_version"] == "3.0"
    assert (DEMO_KEY in path.read_text()) is reveal


def test_deck_validate_catches_what_kong_would_reject(tmp_path: Path) -> None:
    """The validator is real: a broken reference and a too-new field both fail."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"_format_version": "3.0", "plugins": [
        {"name": "http-log", "service": "nonexistent", "config": {}}]}))
    assert _deck_validate(path).returncode != 0
    path.write_text(yaml.safe_dump({"_format_version": "3.0", "_transform": True}))
    assert _deck_validate(path).returncode != 0


def test_committed_template_is_current_and_valid() -> None:
    assert TEMPLATE_PATH.read_text() == render_template(), (
        "regenerate with: python -m tasks.gateway.kong.template")
    result = _deck_validate(TEMPLATE_PATH)
    assert result.returncode == 0, result.stdout + result.stderr


def test_round_trip_gives_the_same_desired_state(desired: GatewayState, tmp_path: Path) -> None:
    for state in (desired, desired.with_targets([]), GatewayState(stack="other")):
        path = declarative.write(state, tmp_path / "rt.yaml", reveal_secrets=True)
        assert declarative.load(path).normalized() == state.normalized()


def test_kong_loader_accepts_the_export(desired: GatewayState) -> None:
    doc = declarative.export(desired, reveal_secrets=True)
    assert doc.pop("_info") == {"select_tags": ["kongstack", "kongstack-kongstack"]}
    store = kong_dbless.load(doc)
    assert len(store.rows["plugins"]) == 7
    service = next(iter(store.rows["services"].values()))
    assert [r["service"] for r in store.rows["routes"].values()] == [{"id": service["id"]}] * 2
    assert [a["group"] for a in store.rows["acls"].values()] == ["readers"]


def test_parse_rejects_other_format_versions(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text('_format_version: "1.1"\n')
    with pytest.raises(ConfigError, match="_format_version"):
        declarative.load(path)

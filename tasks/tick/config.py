"""Reading the autoscale policy at the edge: a file, then ``KONGSTACK_AUTOSCALE_<FIELD>``
environment overrides. The decision core's ``PolicyError`` becomes ``ConfigError`` here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoscaler import AutoscalePolicy
from autoscaler.errors import PolicyError
from kongstack.core.errors import ConfigError

ENV_PREFIX = "KONGSTACK_AUTOSCALE_"
"""``KONGSTACK_AUTOSCALE_MIN_INSTANCES=2`` overrides the policy's ``min_instances``."""


def build_policy(data: Mapping[str, Any], *, source: str) -> AutoscalePolicy:
    try:
        return AutoscalePolicy.build(data, source=source)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from exc


def policy_from_file(path: str | Path) -> AutoscalePolicy:
    """A JSON or YAML file (a mapping of field names; an ``autoscale:`` section is also
    accepted)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read policy file ({exc.strerror})") from exc
    data = _parse_mapping(text, file)
    section = data.get("autoscale", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{file}: autoscale: expected a mapping")
    return build_policy(section, source=str(file))


def policy_from_env(
    environ: Mapping[str, str], *, prefix: str = ENV_PREFIX, base: AutoscalePolicy | None = None
) -> AutoscalePolicy:
    """Read ``<prefix><FIELD>`` variables from the mapping you pass (``os.environ`` at the
    edge). Unknown names are errors; an empty value switches an optional field off."""
    overrides: dict[str, Any] = {}
    for key, raw in environ.items():
        if key.upper().startswith(prefix):
            overrides[key[len(prefix) :].lower()] = _env_value(raw)
    start = (base or AutoscalePolicy()).model_dump()
    return build_policy({**start, **overrides}, source="environment")


def _parse_mapping(text: str, file: Path) -> dict[str, Any]:
    try:
        if file.suffix.lower() == ".json":
            data: Any = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc})") from exc
    except Exception as exc:  # yaml.YAMLError has no common stdlib base
        raise ConfigError(f"{file}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of policy fields")
    return data


def _env_value(raw: str) -> Any:
    """Environment values are strings; pydantic coerces numbers and booleans. An empty value
    means "unset" (None) so an optional target can be switched off."""
    stripped = raw.strip()
    if stripped == "" or stripped.lower() in {"none", "null"}:
        return None
    return stripped

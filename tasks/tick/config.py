"""The one way to load the autoscale configuration: file -> environment -> parameters.

    file         the YAML file named by KONGSTACK_AUTOSCALER_CONFIG (default
                 deployments/autoscale.yaml; set it empty for no file): an AutoscaleConfig
                 (``policy:``, ``prometheus:``, ``pool:``, ``record:``...), unknown keys rejected
    environment  KONGSTACK_AUTOSCALE_<FIELD> overrides one policy field (empty = switch off)
    parameters   flow or command parameters (``None`` = not given)

The autoscale flow, every ``kongstack`` command, ``kongstack simulate`` and the maintenance
flow load the policy here, so they all see the same one. ``LoadedConfig.origins`` says where
each policy value came from ("default", "file", "environment", "parameter"); ``kongstack
status`` shows it. The decision core's ``PolicyError`` becomes ``ConfigError`` here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autoscaler import AutoscalePolicy
from autoscaler.errors import PolicyError
from kongstack.core.errors import ConfigError
from kongstack.core.settings import REPO_ROOT
from kongstack.core.yamlfile import load_yaml
from tasks.tick.memory_state import DEFAULT_BLOCK_NAME
from tasks.tick.pool import PoolConfig
from tasks.tick.prometheus import PrometheusConfig
from tasks.tick.record import RecordConfig

CONFIG_FILE_ENV = "KONGSTACK_AUTOSCALER_CONFIG"
"""Names the autoscale config file; unset: DEFAULT_CONFIG_FILE; empty: no file."""
DEFAULT_CONFIG_FILE = REPO_ROOT / "deployments" / "autoscale.yaml"
ENV_PREFIX = "KONGSTACK_AUTOSCALE_"
"""``KONGSTACK_AUTOSCALE_MIN_INSTANCES=2`` overrides the policy's ``min_instances``."""

DEFAULT, FILE, ENVIRONMENT, PARAMETER = "default", "file", "environment", "parameter"
ORIGINS = (DEFAULT, FILE, ENVIRONMENT, PARAMETER)
"""Where a policy value can come from, weakest first."""


class AutoscaleConfig(BaseModel):
    """Everything one tick needs; parsed once, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: AutoscalePolicy = Field(default_factory=AutoscalePolicy)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    record: RecordConfig = Field(default_factory=RecordConfig)
    memory_block: str = Field(default=DEFAULT_BLOCK_NAME, pattern=r"^[a-z0-9][a-z0-9-]*$")
    lock_path: Path | None = Field(
        default=None, description="default: <home>/run/autoscale.lock; must lie inside the "
        "stack's home (pool.local.home), so a config cannot point the tick at a system file")

    @model_validator(mode="after")
    def _lock_inside_home(self) -> AutoscaleConfig:
        if self.lock_path is not None:
            home = self.pool.settings().home.resolve()
            if not self.lock_path.resolve().is_relative_to(home):
                raise ValueError(f"lock_path: {self.lock_path} is outside the stack's home "
                                 f"{home}")
        return self

    def lock_file(self) -> Path:
        return self.lock_path or self.pool.settings().run_dir / f"autoscale-{self.pool.stack}.lock"


@dataclass(frozen=True)
class LoadedConfig:
    """The configuration in force, and where each policy value came from."""

    config: AutoscaleConfig
    origins: Mapping[str, str]
    """Every policy field -> one of ORIGINS."""
    file: Path | None = None
    """The file that was read (None: none)."""

    @property
    def policy(self) -> AutoscalePolicy:
        return self.config.policy

    def origin(self, field: str) -> str:
        return self.origins[field]

    def provenance(self) -> list[tuple[str, Any, str]]:
        """(field, value, origin) for every policy field, in the model's order."""
        values = self.policy.model_dump()
        return [(name, values[name], self.origins[name])
                for name in AutoscalePolicy.model_fields]

    def with_parameters(self, parameters: Mapping[str, Any] | None) -> LoadedConfig:
        """The last layer: parameters (``None`` values are "not given")."""
        given = {k: v for k, v in (parameters or {}).items() if v is not None}
        if not given:
            return self
        policy = _build({**self.policy.model_dump(), **given}, source="parameters")
        return LoadedConfig(self.config.model_copy(update={"policy": policy}),
                            {**self.origins, **dict.fromkeys(given, PARAMETER)}, self.file)


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The file KONGSTACK_AUTOSCALER_CONFIG names (relative to the working directory), the
    default when it is unset, None when it is set empty."""
    raw = (os.environ if environ is None else environ).get(CONFIG_FILE_ENV)
    if raw is None:
        return DEFAULT_CONFIG_FILE
    return Path(raw.strip()) if raw.strip() else None


def load_autoscale_config(
    *,
    file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """file (``file``, else the one ``config_file`` names) -> environment -> parameters."""
    env = os.environ if environ is None else environ
    path = Path(file) if file is not None else config_file(env)
    data = load_yaml(path, what="autoscale config") if path is not None else {}
    config = _from_mapping(data, source=str(path) if path else "defaults")
    origins = {name: FILE if name in (data.get("policy") or {}) else DEFAULT
               for name in AutoscalePolicy.model_fields}
    overrides = env_overrides(env)
    if overrides:
        policy = _build({**config.policy.model_dump(), **overrides}, source="environment")
        config = config.model_copy(update={"policy": policy})
        origins.update(dict.fromkeys(overrides, ENVIRONMENT))
    return LoadedConfig(config, origins, path).with_parameters(parameters)


def given_config(config: AutoscaleConfig,
                 parameters: Mapping[str, Any] | None = None) -> LoadedConfig:
    """A whole config passed as a parameter (tests, benchmarks): no file, no environment."""
    origins = {name: PARAMETER if name in config.policy.model_fields_set else DEFAULT
               for name in AutoscalePolicy.model_fields}
    return LoadedConfig(config, origins).with_parameters(parameters)


def resolve_config(config: AutoscaleConfig | None, *, dry_run: bool | None) -> AutoscaleConfig:
    """The autoscale flow's config: its ``config`` parameter, else the loader's (file ->
    environment); its ``dry_run`` parameter last."""
    parameters = {"dry_run": dry_run}
    loaded = (given_config(config, parameters) if config is not None
              else load_autoscale_config(parameters=parameters))
    return loaded.config


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``KONGSTACK_AUTOSCALE_<FIELD>`` variables as policy fields (values still strings;
    pydantic coerces them). Unknown field names are rejected when the policy is built."""
    return {key[len(ENV_PREFIX):].lower(): _env_value(raw)
            for key, raw in environ.items() if key.upper().startswith(ENV_PREFIX)}


def _from_mapping(data: Mapping[str, Any], *, source: str) -> AutoscaleConfig:
    misplaced = sorted(set(data) & set(AutoscalePolicy.model_fields))
    if misplaced:
        raise ConfigError(f"{source}: {', '.join(misplaced)}: policy fields belong under "
                          "'policy:' (see deployments/autoscale.yaml)")
    section = data.get("policy")
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(f"{source}: policy: expected a mapping of policy fields")
    policy = _build(section or {}, source=f"{source}: policy")
    try:
        return AutoscaleConfig.model_validate({**data, "policy": policy})
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in err['loc'])}: " if err["loc"] else "")
            + str(err["msg"]).removeprefix("Value error, ") for err in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None


def _build(data: Mapping[str, Any], *, source: str) -> AutoscalePolicy:
    try:
        return AutoscalePolicy.build(data, source=source)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from exc


def _env_value(raw: str) -> Any:
    """An empty value (or none/null) means "unset" so an optional target can be switched off."""
    stripped = raw.strip()
    if stripped == "" or stripped.lower() in {"none", "null"}:
        return None
    return stripped

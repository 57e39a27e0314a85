"""The options every stack command shares (--stack, --driver, --gateway, --config, --json...)
and the one place they are checked. typer and the config models only: no Prefect, so a
command that reads (``status``) starts fast."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from kongstack.cli.exits import BAD_INPUT, fail
from kongstack.cli.views import StackOptions
from kongstack.core.errors import ConfigError
from tasks.tick.config import CONFIG_FILE_ENV


class Driver(StrEnum):
    auto = "auto"
    docker = "docker"
    process = "process"


class GatewayKind(StrEnum):
    auto = "auto"
    nginx = "nginx"
    kong = "kong"


_AS_CONFIGURED = " Default: the autoscale config's pool (see --config)."
StackOpt = Annotated[str | None, typer.Option(
    "--stack", envvar="KONGSTACK_STACK",
    help="Stack name (the owner label's value)." + _AS_CONFIGURED)]
DriverOpt = Annotated[Driver | None, typer.Option(
    "--driver", envvar="KONGSTACK_DRIVER", help="Instance driver." + _AS_CONFIGURED)]
GatewayOpt = Annotated[GatewayKind | None, typer.Option(
    "--gateway", envvar="KONGSTACK_GATEWAY", help="Gateway." + _AS_CONFIGURED)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (for scripts).")]
ReadyOpt = Annotated[float, typer.Option("--ready-timeout", min=1, max=600,
                                         help="Seconds a new instance may take to be ready.")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help=f"Autoscale config file (the autoscale flow's). Default: ${CONFIG_FILE_ENV}, "
    "else deployments/autoscale.yaml; KONGSTACK_AUTOSCALE_<FIELD> variables override it.")]


def options(stack: str | None, driver: Driver | None, gateway: GatewayKind | None,
            config: Path | None = None, ready_timeout: float = 60.0,
            as_json: bool = False) -> StackOptions:
    """The stack the command acts on; typer has checked the choices, the config is checked
    here (exit 2 naming the field) before anything is touched."""
    if config is not None and config.is_dir():
        raise typer.BadParameter(f"{config} is a directory: give the autoscale config file "
                                 "(e.g. deployments/autoscale.yaml)", param_hint="--config")
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"{config}: no such file", param_hint="--config")
    opts = StackOptions(stack=stack, driver=None if driver is None else driver.value,
                        gateway=None if gateway is None else gateway.value,
                        config_file=config, ready_timeout=ready_timeout)
    try:
        opts.pool()  # the config is read (and checked) once, before anything else
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc), BAD_INPUT, as_json=as_json) from None
    return opts

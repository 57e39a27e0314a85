"""``kongstack up`` / ``kongstack down``: the whole local demo stack in one command.

``up`` = the Prefect server (its Secret blocks keep the API keys), deploy-stack on the local
default (Redis, the embedded store with seed data, Prometheus, Alertmanager, exporters, the
nginx gateway with a key per consumer, 3 stock API instances), then the process that serves
the four deployments (autoscale every 30 s) and the Alertmanager webhook of the autoscale fast
path (a warm process that executes the autoscale deployment's alert runs itself); last, how
to use the keys (never a key itself). Every part is idempotent: a second ``up`` finds
everything running and says so.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from kongstack.cli.localprefect import (
    api_url,
    local_server_settings,
    prefect_env,
    start_server,
    stop_server,
    ui_url,
)
from kongstack.core import prefectdb
from kongstack.core.errors import ConfigError, StackError
from kongstack.core.procs import Daemon, port_open
from kongstack.core.settings import REPO_ROOT, LocalSettings, load_settings

UP_HELP = (
    "Bring up the whole local stack and the autoscaler (no cloud account needed): the Prefect "
    "server and UI, deploy-stack with the local provider (an API key per consumer, created "
    "in a Secret block when missing), the deployments served from one process (autoscale "
    "every 30 s, maintenance daily, deploy-stack and cleanup on demand) and the alert fast "
    "path. Prints where each part answers and how to use the keys. Safe to run again."
)
DOWN_HELP = "Stop everything `kongstack up` started (containers, processes, services)."


def _serve_daemon(settings: LocalSettings) -> Daemon:
    return Daemon("prefect-serve", settings.run_dir)


def _fastpath_daemon(settings: LocalSettings) -> Daemon:
    return Daemon("fastpath", settings.run_dir)


def _deployment_registered(settings: LocalSettings, name: str) -> bool:
    try:
        r = httpx.get(f"{api_url(settings)}/deployments/name/{name}", timeout=2.0)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def start_prefect(settings: LocalSettings, console: Console) -> None:
    """The Prefect server first: deploy-stack keeps the API keys in its Secret blocks."""
    console.print(f"[bold]Prefect server[/bold] on {prefectdb.describe(settings)} (first start "
                  "runs migrations, ~20 s)", highlight=False)
    start_server(settings)


def start_orchestration(settings: LocalSettings, console: Console) -> None:
    """The serve process and the fast-path webhook (each idempotent); the server runs."""
    env = prefect_env(settings)
    console.print("[bold]serving deployments[/bold]: deploy-stack, autoscale, maintenance, cleanup")
    _serve_daemon(settings).start(
        [sys.executable, "-m", "kongstack.cli.serve"],
        ready=lambda: _deployment_registered(settings, "autoscale/autoscale"),
        log_file=settings.log_dir / "prefect-serve.log",
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    # After serve: the webhook runs the autoscale deployment's runs itself (warm process,
    # kongstack/cli/warmrun.py), so the deployment must be registered by then.
    console.print("[bold]alert fast path[/bold] (Alertmanager webhook → a run of the autoscale "
                  "deployment, executed in the webhook's warm process)")
    _fastpath_daemon(settings).start(
        [sys.executable, "-m", "kongstack.cli.fastpath", "--host", settings.host,
         "--port", str(settings.webhook_port)],
        ready=lambda: port_open(settings.host, settings.webhook_port),
        log_file=settings.log_dir / "fastpath.log",
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
    )


def _print_where(settings: LocalSettings, urls: dict[str, str], console: Console) -> None:
    table = Table(title="kongstack is up", show_header=True)
    table.add_column("part")
    table.add_column("answers at")
    for name, url in urls.items():
        table.add_row(name, url)
    table.add_row("Prefect UI", ui_url(settings))
    table.add_row("alert fast path", f"http://{settings.host}:{settings.webhook_port}/alerts")
    console.print(table)
    console.print(
        "Next: [bold]kongstack load --rps 400 --duration 300[/bold], then [bold]kongstack "
        "status[/bold] (the capacity the autoscaler learns per instance, and the pool it sizes "
        "from it: it grows when CPU or p95 latency say the load needs more), [bold]kongstack "
        "monitor[/bold]; stop with [bold]make stop[/bold]. Logs: var/log/."
    )


def _print_keys(config: Path | None, urls: dict[str, str], console: Console) -> None:
    """How to use the API keys: consumer names, Secret blocks and commands, never a key."""
    from kongstack.core.topology import load_topology
    from tasks.gateway.consumers import resolve_keys, usage_hint

    gateway = urls.get("stock API (gateway)", "").removesuffix("/api/stocks")
    keys = resolve_keys(load_topology(config), create=False)  # deploy-stack created them
    lines = usage_hint(keys, gateway, config=str(config) if config else None)
    console.print("\n".join(lines), markup=False, highlight=False)


def _up(config: Path | None, settings: LocalSettings, console: Console, *,
        autoscale: bool) -> None:
    from flows.deploy_stack import deploy

    console.print("[bold]deploy-stack[/bold] (local provider): provision → install → "
                  "register → verify")
    try:
        summary = deploy(
            config, settings=settings,
            # markup=False: step names are printed as "[install] ...", not rich tags.
            log=lambda line: console.print(f"  {line}", style="dim", markup=False,
                                           highlight=False),
        )
    except StackError as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {exc}", highlight=False)
        raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None
    console.print(summary.headline())
    if not summary.ok:
        console.print(summary.markdown(), highlight=False)
        raise typer.Exit(1)
    if autoscale:
        try:
            start_orchestration(settings, console)
        except StackError as exc:
            console.print(f"[red]{type(exc).__name__}:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    _print_where(settings, summary.urls, console)
    _print_keys(config, summary.urls, console)


def register(app: typer.Typer) -> None:
    @app.command("up", help=UP_HELP, short_help="Bring up the whole local stack and the "
                 "autoscaler (no cloud account needed).")
    def up(
        config: Annotated[Path | None, typer.Option("--config", "-c", help="stack file")] = None,
        no_autoscale: Annotated[
            bool, typer.Option("--no-autoscale", help="deploy the stack and the Prefect "
                               "server (which keeps the API keys) only: no autoscaler")
        ] = False,
    ) -> None:
        console = Console()
        try:
            settings = load_settings()
            # a bad database setting fails before anything starts (the server runs in both modes)
            prefectdb.check(settings)
        except ConfigError as exc:
            console.print(f"[red]ConfigError:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        logging.basicConfig(level=logging.WARNING)
        try:  # first: the API keys' Secret blocks live in its database
            start_prefect(settings, console)
        except StackError as exc:
            console.print(f"[red]{type(exc).__name__}:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
        with local_server_settings(settings):
            _up(config, settings, console, autoscale=not no_autoscale)

    @app.command("down", help=DOWN_HELP)
    def down(
        config: Annotated[Path | None, typer.Option("--config", "-c", help="stack file")] = None,
    ) -> None:
        from kongstack.core.topology import load_topology
        from tasks.providers.local.stack import LocalStack

        console = Console()
        settings = load_settings()
        stopped = []
        for daemon in (_fastpath_daemon(settings), _serve_daemon(settings)):
            if daemon.stop(grace=15.0):
                stopped.append(daemon.name)
        if stop_server(settings):
            stopped.append("prefect-server")
        stack = LocalStack(load_topology(config), settings)
        stopped += stack.stop()
        console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))

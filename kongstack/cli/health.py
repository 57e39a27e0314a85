"""Operator commands: ``logs`` (an instance's or a service's) and ``health`` (every component)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from kongstack.cli.exits import FAILED, OK, UNREACHABLE, exit_code_for, fail
from kongstack.cli.stackopts import (
    Driver,
    DriverOpt,
    GatewayKind,
    GatewayOpt,
    JsonOpt,
    StackOpt,
    options,
)
from kongstack.core.errors import StackError
from kongstack.core.procs import port_open
from kongstack.core.settings import LocalSettings
from tasks.tick.pool import build_driver, build_gateway

console = Console()


def service_logs(settings: LocalSettings) -> dict[str, Path]:
    """Service name → log file, for what writes under the local home."""
    found: dict[str, Path] = {
        "gateway": settings.home / "nginx" / "logs" / "access.log",
        "gateway-error": settings.home / "nginx" / "logs" / "error.log",
    }
    for directory in (settings.log_dir, settings.log_dir / "instances"):
        if directory.is_dir():
            for path in sorted(directory.glob("*.log")):
                found.setdefault(path.stem, path)
    return {name: path for name, path in found.items() if path.exists()}


def _tail_lines(path: Path, count: int) -> list[str]:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        block = min(size, max(65536, count * 400))
        handle.seek(size - block)
        lines = handle.read().decode(errors="replace").splitlines()
    return lines[-count:] if count else []


def _follow(path: Path, seconds: float | None) -> None:
    """Print lines appended to ``path`` until Ctrl-C (or ``seconds``, for scripts)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    with open(path, errors="replace") as handle:
        handle.seek(0, 2)
        try:
            while deadline is None or time.monotonic() < deadline:
                line = handle.readline()
                if line:
                    console.out(line.rstrip("\n"), highlight=False)
                else:
                    time.sleep(0.2)  # poll interval of a tail -f, not a readiness wait
        except KeyboardInterrupt:
            return


def logs(name: Annotated[str, typer.Argument(
            help="An instance (name, id, address, or api-PORT) or a service (gateway, "
                 "gateway-error, prefect-server, or any var/log/NAME.log).")],
         tail: Annotated[int, typer.Option("--tail", "-n", min=0, max=100000,
                                           help="Lines to show.")] = 100,
         follow: Annotated[bool, typer.Option("--follow", "-f",
                                              help="Keep printing new lines.")] = False,
         follow_seconds: Annotated[float | None, typer.Option(hidden=True)] = None,
         stack: StackOpt = None, driver: DriverOpt = None,
         gateway: GatewayOpt = None) -> None:
    """Show an instance's or a service's log."""
    opts = options(stack, driver, gateway)
    settings = opts.settings()
    services = service_logs(settings)
    if name in services:
        for line in _tail_lines(services[name], tail):
            console.out(line, highlight=False)
        if follow:
            _follow(services[name], follow_seconds)
        return
    try:
        instances = build_driver(opts.pool()).list()
    except StackError as exc:
        raise fail(exc) from None
    wanted = [i for i in instances if name in (i.id, i.name, i.address)
              or i.name.endswith(f"-{name}")]
    if not wanted:
        known = sorted(services) + sorted(i.name for i in instances)
        raise typer.BadParameter(f"{name!r} is neither an instance nor a service; known: "
                                 f"{', '.join(known) or '(none)'}", param_hint="NAME")
    inst = wanted[0]
    instance_log = services.get(inst.name)
    if follow and instance_log is not None:
        for line in _tail_lines(instance_log, tail):
            console.out(line, highlight=False)
        _follow(instance_log, follow_seconds)
        return
    try:
        text = build_driver(opts.pool()).logs(inst.id, tail=tail)
    except StackError as exc:
        raise fail(exc) from None
    console.out(text.rstrip("\n"), highlight=False)


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    detail: str
    core: bool = True
    answered: bool = True
    """False when the component did not answer at all (exit code 3 if it is a core one)."""


def _failed(component: str, exc: Exception, core: bool = True) -> Check:
    return Check(component, False, str(exc) or type(exc).__name__, core,
                 answered=exit_code_for(exc) != UNREACHABLE)


def _http(component: str, url: str, core: bool) -> Check:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        return Check(component, False, f"{url}: {type(exc).__name__}", core,
                     answered=not isinstance(exc, httpx.TransportError))
    return Check(component, response.status_code < 400, f"{url}: HTTP {response.status_code}",
                 core)


def _redis(url: str) -> Check:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        ok = bool(client.ping())
        client.close()
        return Check("redis", ok, "PONG" if ok else "no PONG")
    except redis.RedisError as exc:
        return Check("redis", False, f"{type(exc).__name__}: {exc}",
                     answered=not isinstance(exc, redis.ConnectionError | redis.TimeoutError))


def run_checks(stack: str | None, driver: Driver | None,
               gateway: GatewayKind | None) -> list[Check]:
    opts = options(stack, driver, gateway)
    settings, pool = opts.settings(), opts.pool()
    checks: list[Check] = []
    try:
        gw = build_gateway(pool)
        try:
            targets = gw.list_targets()
            status_url = getattr(gw, "status_url", None)
            if status_url:
                checks.append(_http("gateway", status_url, True))
            healthy = sum(1 for t in targets if str(t.health) == "HEALTHY")
            checks.append(Check("gateway targets", bool(targets) and healthy == len(targets),
                                f"{healthy}/{len(targets)} healthy"))
        finally:
            gw.close()
    except StackError as exc:
        checks.append(_failed("gateway", exc))
    try:
        instances = build_driver(pool).list()
        if not instances:
            checks.append(Check("instances", False, "no instances"))
        for inst in instances:
            checks.append(_http(f"instance {inst.name}", f"http://{inst.address}/ready", True))
    except StackError as exc:
        checks.append(_failed("instances", exc))
    checks.append(_redis(pool.redis_url or f"redis://{settings.host}:{settings.redis_port}/0"))
    base = f"http://{settings.host}"
    checks.append(_http("prometheus", f"{base}:{settings.prometheus_port}/-/ready", False))
    checks.append(_http("alertmanager", f"{base}:{settings.alertmanager_port}/-/ready", False))
    checks.append(_http("prefect server", f"{base}:{settings.prefect_port}/api/health", False))
    hook = port_open(settings.host, settings.webhook_port)
    checks.append(Check("autoscale webhook", hook,
                        f"{settings.host}:{settings.webhook_port} "
                        f"{'listening' if hook else 'closed'}", False))
    return checks


def health_exit_code(checks: list[Check]) -> int:
    """0 when every core component (gateway, instances, Redis) is healthy; 3 when one of them
    does not answer; 1 when one answers unhealthy."""
    down = [c for c in checks if c.core and not c.ok]
    if not down:
        return OK
    return UNREACHABLE if any(not c.answered for c in down) else FAILED


def health(stack: StackOpt = None, driver: DriverOpt = None,
           gateway: GatewayOpt = None, as_json: JsonOpt = False) -> None:
    """Check every component; exit 1 if the gateway, an instance or Redis is unhealthy, 3 if
    one does not answer."""
    name = options(stack, driver, gateway, as_json=as_json).name
    checks = run_checks(stack, driver, gateway)
    code = health_exit_code(checks)
    if as_json:
        typer.echo(json.dumps({"stack": name, "ok": code == OK, "exit_code": code,
                               "checks": [asdict(c) for c in checks]}, indent=1))
    else:
        table = Table(title=f"Health of {name}")
        for col in ("component", "status", "detail"):
            table.add_column(col)
        for c in checks:
            mark = "[green]ok[/]" if c.ok else ("[red]DOWN[/]" if c.core else "[yellow]down[/]")
            table.add_row(c.component, mark, c.detail)
        console.print(table)
    if code != OK:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(logs)
    app.command()(health)

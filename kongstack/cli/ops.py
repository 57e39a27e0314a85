"""Operator commands: status, scale, restart, logs, health, approve, deny.

Every command acts on the running stack through the same driver, gateway and scaling tasks
the autoscaler uses (``tasks.tick.act``); nothing here re-implements scaling.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from autoscaler.config import HARD_MAX_INSTANCES
from kongstack.cli.exits import BAD_INPUT, FAILED, UNREACHABLE, fail
from kongstack.cli.views import StackOptions, active, learned_target, read_cooldowns
from kongstack.core.errors import ConfigError, StackError
from tasks.instances.hosts import HOST_LABEL
from tasks.instances.multihost import MultiHostDriver
from tasks.tick.act import scale_down, scale_up
from tasks.tick.config import CONFIG_FILE_ENV, LoadedConfig
from tasks.tick.manual_scale import scale_by_hand
from tasks.tick.pool import build_driver, build_gateway
from tasks.tick.scaling_log import ScalingLogEntry
from tasks.tick.targets import publish_scrape_targets

if TYPE_CHECKING:
    from kongstack.cli.views import Cooldowns
    from tasks.gateway.protocol import Target
    from tasks.instances.base import Instance

console = Console()


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


def _decisions_shown(opts: StackOptions, count: int) -> list[ScalingLogEntry]:
    """The newest tick, then the last changes: 2,880 no-op ticks a day would hide them."""
    if not count:
        return []
    recent = opts.history().recent(500)
    return recent[:1] + [e for e in recent[1:]
                         if not (e.kind == "decision" and e.outcome == "noop")][:count - 1]


def status_document(opts: StackOptions, instances: list[Instance], targets: list[Target],
                    decisions: list[ScalingLogEntry], cooldowns: Cooldowns) -> dict[str, Any]:
    """What ``status --json`` prints: the same facts as the tables, machine-readable."""
    now = datetime.now(UTC)
    return {
        "stack": opts.name,
        "taken_at": now.isoformat(),
        "active_instances": len(active(instances)),
        "instances": [{"name": i.name, "id": i.id, "address": i.address, "state": str(i.state),
                       "started_at": i.started_at.isoformat(),
                       "up_seconds": round((now - i.started_at).total_seconds(), 1)}
                      for i in sorted(instances, key=lambda i: i.name)],
        "targets": [{"address": t.address, "weight": t.weight, "health": str(t.health)}
                    for t in targets],
        "decisions": [{"ts": e.ts.isoformat(), "kind": e.kind, "from": e.from_count,
                       "to": e.to_count, "outcome": e.outcome, "reason": e.reason,
                       "source": e.source} for e in decisions],
        "policy": {"file": str(opts.loaded.file) if opts.loaded.file else None,
                   "fields": {name: {"value": value, "from": origin}
                              for name, value, origin in opts.loaded.provenance()}},
        "cooldowns": {"scale_up_remaining_s": cooldowns.up_remaining,
                      "scale_down_remaining_s": cooldowns.down_remaining,
                      "note": cooldowns.note},
    }


def status(stack: StackOpt = None, driver: DriverOpt = None,
           gateway: GatewayOpt = None, config: ConfigOpt = None,
           decisions: Annotated[int, typer.Option(min=0, max=200,
                                                  help="History rows to show.")] = 5,
           as_json: JsonOpt = False) -> None:
    """Instances, gateway targets with health, the last decisions, cooldown remaining."""
    opts = options(stack, driver, gateway, config, as_json=as_json)
    pool = opts.pool()
    try:
        instance_driver = build_driver(pool)
        instances = instance_driver.list()
        gw = build_gateway(pool)
        try:
            targets = gw.list_targets()
        finally:
            gw.close()
    except StackError as exc:
        raise fail(exc, as_json=as_json) from None
    shown = _decisions_shown(opts, decisions)
    cd = read_cooldowns(opts.policy(), opts.loaded.config.memory_block)
    if as_json:
        typer.echo(json.dumps(status_document(opts, instances, targets, shown, cd), indent=1,
                              default=str))
        return
    table = Table(title=f"Instances of {opts.name} ({len(active(instances))} active)")
    multihost = isinstance(instance_driver, MultiHostDriver)
    for col in ("name", *(["host"] if multihost else []), "address", "state", "up for"):
        table.add_column(col)
    now = datetime.now(UTC)
    for inst in sorted(instances, key=lambda i: i.name):
        up = int((now - inst.started_at).total_seconds())
        host = [inst.labels.get(HOST_LABEL, "?")] if multihost else []
        table.add_row(inst.name, *host, inst.address, str(inst.state),
                      f"{up // 60}m{up % 60:02d}s")
    console.print(table)
    if isinstance(instance_driver, MultiHostDriver):
        for line in instance_driver.status():  # one line per host: up/down/unusable, why
            console.print(f"host {line.line()}")
        instance_driver.close()
    colour = {"HEALTHY": "green", "UNHEALTHY": "red", "DRAINING": "yellow"}
    ttable = Table(title="Gateway targets")
    for col in ("address", "weight", "health"):
        ttable.add_column(col)
    for t in targets:
        ttable.add_row(t.address, str(t.weight),
                       f"[{colour.get(str(t.health), 'white')}]{t.health}[/]")
    console.print(ttable)
    htable = Table(title="Last decisions")
    for col in ("time (UTC)", "kind", "from → to", "outcome"):
        htable.add_column(col, no_wrap=True)
    # The whole reason, wrapped within the terminal's width (fold: long tokens break too).
    htable.add_column("reason", overflow="fold", ratio=1)
    for e in shown:
        htable.add_row(f"{e.ts:%Y-%m-%d %H:%M:%S}", e.kind, f"{e.from_count} → {e.to_count}",
                       e.outcome, e.reason)
    console.print(htable)
    print_policy(opts.loaded, learned_target(opts.policy(), cd.capacity))

    def fmt(v: float | None) -> str:
        return "none" if v is None else ("ready" if v <= 0 else f"{v:.0f}s")

    console.print(f"Cooldown remaining: scale-up {fmt(cd.up_remaining)}, "
                  f"scale-down {fmt(cd.down_remaining)} ({cd.note})")


HEADLINE_FIELDS = ("strategy", "min_instances", "max_instances", "target_cpu_percent",
                   "target_memory_percent", "target_rps_per_instance", "victim_selection",
                   "dry_run")
"""Policy fields ``status`` always shows; any other field shows when it is not the default."""


def print_policy(loaded: LoadedConfig, learned: str | None = None) -> None:
    """The policy in force and where each value came from (file, environment, ...); with
    ``learned``, the request-rate target the autoscaler learned (``views.learned_target``)."""
    source = f"file {loaded.file}" if loaded.file else "no config file"
    console.print(f"Autoscale policy in force ({source}):", soft_wrap=True, highlight=False)
    table = Table()
    for col in ("field", "value", "from"):
        table.add_column(col)
    for field, value, origin in loaded.provenance():
        if field == "target_rps_per_instance" and value is None and learned is not None:
            table.add_row(field, learned, "learned")
        elif field in HEADLINE_FIELDS or origin != "default":
            table.add_row(field, "-" if value is None else str(value), origin)
    console.print(table)


def scale(count: Annotated[int, typer.Argument(
              min=0, max=HARD_MAX_INSTANCES,
              help=f"Target number of instances (never above {HARD_MAX_INSTANCES}).")],
          force: Annotated[bool, typer.Option(
              help="Ignore the policy's min/max (the hard cap still holds).")] = False,
          dry_run: Annotated[bool, typer.Option(help="Say what would happen only.")] = False,
          stack: StackOpt = None, driver: DriverOpt = None,
          gateway: GatewayOpt = None, config: ConfigOpt = None,
          ready_timeout: ReadyOpt = 60.0, as_json: JsonOpt = False) -> None:
    """Scale the pool to COUNT instances by hand (recorded in the history as "manual")."""
    opts = options(stack, driver, gateway, config, ready_timeout, as_json=as_json)
    try:
        pol = opts.policy()
    except ConfigError as exc:
        raise fail(exc, BAD_INPUT, as_json=as_json) from None
    if not force and not pol.min_instances <= count <= pol.max_instances:
        raise typer.BadParameter(
            f"{count} is outside min_instances..max_instances = {pol.min_instances}.."
            f"{pol.max_instances} (use --force to override)", param_hint="COUNT")
    started = time.monotonic()
    # --json keeps stdout for the document: the spinner goes to stderr then.
    progress = Console(stderr=True) if as_json else console
    try:
        with progress.status(f"scaling {opts.name} to {count}..."):
            record = scale_by_hand(
                opts.config(), count, dry_run=dry_run, source="cli",
                reason=f"manual scale to {count}{' (forced)' if force else ''}")
    except StackError as exc:
        raise fail(exc, as_json=as_json) from None
    if record is None:
        if as_json:
            typer.echo(json.dumps({"stack": opts.name, "from": count, "to": count,
                                   "outcome": "noop", "dry_run": dry_run, "forced": force,
                                   "reason": f"already at {count} instance(s)",
                                   "details": []}, indent=1))
        else:
            console.print(f"already at {count} instance(s): nothing to do")
        return
    if as_json:
        typer.echo(json.dumps({"stack": opts.name, "from": record.from_count,
                               "to": record.to_count, "outcome": record.outcome,
                               "dry_run": dry_run, "forced": force, "reason": record.reason,
                               "details": list(record.details),
                               "duration_s": round(time.monotonic() - started, 3)}, indent=1))
    else:
        for line in record.details:
            console.print(f"  {line}")
        console.print(f"{'would scale' if dry_run else 'scaled'} {record.from_count} → "
                      f"{record.to_count} ({record.outcome})")
    if record.outcome == "failed":
        raise typer.Exit(FAILED)


def restart(instance: Annotated[str | None, typer.Argument(
                help="Instance name, id or address; omit with --all for the pool.")] = None,
            all_: Annotated[bool, typer.Option("--all", help="Rolling restart of the pool.")]
            = False,
            stack: StackOpt = None, driver: DriverOpt = None,
            gateway: GatewayOpt = None, ready_timeout: ReadyOpt = 60.0) -> None:
    """Rolling restart: start a replacement, wait until it serves, then drain the old one."""
    if (instance is None) == (not all_):
        raise typer.BadParameter("give an INSTANCE or --all (not both)", param_hint="INSTANCE")
    opts = options(stack, driver, gateway, ready_timeout=ready_timeout)
    pool = opts.pool()
    try:
        current = active(build_driver(pool).list())
        chosen = current if all_ else [i for i in current if instance in (i.name, i.id,
                                                                          i.address)]
        if not chosen:
            raise typer.BadParameter(f"{instance!r}: no active instance with that name, id "
                                     "or address (see `kongstack status`)",
                                     param_hint="INSTANCE")
        started = time.monotonic()
        for n, old in enumerate(chosen, 1):
            with console.status(f"[{n}/{len(chosen)}] replacing {old.name}..."):
                up = scale_up.fn(pool, to_count=len(current) + 1)
                if up.outcome != "ok":
                    raise fail(f"replacement for {old.name} did not start: {up.reason}",
                               FAILED)
                scale_down.fn(pool, victim_ids=[old.id])
            console.print(f"[{n}/{len(chosen)}] {old.name} replaced ({up.details[-1]})")
        publish_scrape_targets(pool, [i.address for i in build_driver(pool).list()
                               if str(i.state) == "ready"])
    except StackError as exc:
        raise fail(exc) from None
    opts.history().append(ScalingLogEntry(
        ts=datetime.now(UTC), kind="manual", from_count=len(current), to_count=len(current),
        outcome="ok", source="cli", duration_s=time.monotonic() - started,
        reason=f"rolling restart of {', '.join(i.name for i in chosen)}"))


def _answer(run_id: str | None, latest: bool, approver: str, reason: str,
            approved: bool) -> None:
    from kongstack.cli.localprefect import use_local_server_if_running
    from kongstack.core.settings import LocalSettings
    from tasks.cleanup.approval import ApprovalError, answer, resolve_run

    if not approver.strip():
        raise typer.BadParameter("say who decides (a name or e-mail)", param_hint="--approver")
    if run_id and latest:
        raise typer.BadParameter("give a RUN_ID or --latest, not both", param_hint="RUN_ID")
    if not run_id and not latest:
        raise typer.BadParameter("give a RUN_ID or --latest", param_hint="RUN_ID")
    if not use_local_server_if_running(LocalSettings()):
        raise fail("no Prefect server: set PREFECT_API_URL or start the local one "
                   "(kongstack up)", UNREACHABLE)
    try:
        target = resolve_run(run_id, latest)
        decision = answer(target, approved=approved, approver=approver, reason=reason)
    except ApprovalError as exc:
        if "RUN_ID" in str(exc):
            raise typer.BadParameter(str(exc), param_hint="RUN_ID") from None
        raise fail(exc) from None
    verb = "approved" if decision.approved else "denied"
    console.print(f"cleanup run {target} {verb} by {decision.approver}")


RunIdArg = Annotated[str | None, typer.Argument(help="Flow run id of the waiting cleanup run.")]
LatestOpt = Annotated[bool, typer.Option("--latest", help="The newest waiting cleanup run.")]
ApproverOpt = Annotated[str, typer.Option("--approver", help="Who decides.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why.")]


def approve(run_id: RunIdArg = None, latest: LatestOpt = False, approver: ApproverOpt = "",
            reason: ReasonOpt = "") -> None:
    """Approve a cleanup run waiting for approval (removes exactly its plan)."""
    _answer(run_id, latest, approver, reason, approved=True)


def deny(run_id: RunIdArg = None, latest: LatestOpt = False, approver: ApproverOpt = "",
         reason: ReasonOpt = "") -> None:
    """Deny a cleanup run waiting for approval (nothing is removed)."""
    _answer(run_id, latest, approver, reason, approved=False)


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(scale)
    app.command()(restart)
    app.command()(approve)
    app.command()(deny)

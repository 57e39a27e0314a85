"""``kongstack status``: instances, gateway targets, the last decisions, the policy and the
cooldowns, as tables or as one JSON document.

Prefect-free on purpose (a test checks it): the config and the history are read through
models without Prefect tasks, the tick memory over the Prefect server's REST API
(views.read_cooldowns), so ``status --json`` is cheap enough to poll from a script.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from kongstack.cli.exits import fail
from kongstack.cli.stackopts import ConfigOpt, DriverOpt, GatewayOpt, JsonOpt, StackOpt, options
from kongstack.cli.views import StackOptions, active, learned_target, read_cooldowns
from kongstack.core.errors import StackError
from tasks.instances.added import added_host_lines
from tasks.instances.hosts import HOST_LABEL
from tasks.tick.config import LoadedConfig
from tasks.tick.pool import build_gateway, build_reader
from tasks.tick.scaling_log import ScalingLogEntry

if TYPE_CHECKING:
    from kongstack.cli.views import Cooldowns
    from tasks.gateway.protocol import Target
    from tasks.instances.base import Instance
    from tasks.instances.multihost import MultiHostDriver

console = Console()


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
        # First: a configured Prefect server that does not answer ends it (exit 3) quickly.
        cd = read_cooldowns(opts.policy(), opts.loaded.config.memory_block)
        instance_driver = build_reader(pool)  # no docker SDK for a local engine
        instances = instance_driver.list()
        gw = build_gateway(pool)
        try:
            targets = gw.list_targets()
        finally:
            gw.close()
    except StackError as exc:
        raise fail(exc, as_json=as_json) from None
    shown = _decisions_shown(opts, decisions)
    if as_json:
        typer.echo(json.dumps(status_document(opts, instances, targets, shown, cd), indent=1,
                              default=str))
        return
    table = Table(title=f"Instances of {opts.name} ({len(active(instances))} active)")
    multihost = bool(pool.hosts)  # build_driver gives the multi-host driver exactly then
    for col in ("name", *(["host"] if multihost else []), "address", "state", "up for"):
        table.add_column(col)
    now = datetime.now(UTC)
    for inst in sorted(instances, key=lambda i: i.name):
        up = int((now - inst.started_at).total_seconds())
        host = [inst.labels.get(HOST_LABEL, "?")] if multihost else []
        table.add_row(inst.name, *host, inst.address, str(inst.state),
                      f"{up // 60}m{up % 60:02d}s")
    console.print(table)
    if multihost:
        instance_driver = cast("MultiHostDriver", instance_driver)
        for line in instance_driver.status():  # one line per host: up/down/unusable, why
            console.print(f"host {line.line()}")
        for text in added_host_lines(pool.growth, pool.added_hosts_file()):
            console.print(f"host {text}")  # being made, being removed, or failed
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


def register(app: typer.Typer) -> None:
    app.command()(status)

"""Operator commands that change the stack: scale, restart, approve, deny.

Every command acts on the running stack through the same driver, gateway and scaling tasks
the autoscaler uses (``tasks.tick.act``); nothing here re-implements scaling. (``status``,
which only reads, is kongstack/cli/status.py: it starts without Prefect.)
"""

from __future__ import annotations

import json
import os
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from autoscaler.config import HARD_MAX_INSTANCES
from kongstack.cli.exits import BAD_INPUT, FAILED, UNREACHABLE, fail
from kongstack.cli.stackopts import (
    ConfigOpt,
    DriverOpt,
    GatewayOpt,
    JsonOpt,
    ReadyOpt,
    StackOpt,
    options,
)
from kongstack.cli.views import StackOptions, active
from kongstack.core.errors import ConfigError, StackError
from tasks.tick.act import scale_down, scale_up
from tasks.tick.manual_scale import held_by_hand, scale_by_hand
from tasks.tick.pool import build_driver
from tasks.tick.record import ActionRecord, record_manual
from tasks.tick.targets import publish_scrape_targets

console = Console()


def prefect_of(opts: StackOptions) -> AbstractContextManager[object]:
    """The Prefect API the stack's ticks use, for the pool lock ``scale`` takes: PREFECT_API_URL
    when set, else the stack's local server when it runs (none: the file lock alone)."""
    from kongstack.cli.localprefect import local_server_settings, server_daemon

    settings = opts.config().pool.settings()
    if os.environ.get("PREFECT_API_URL") or not server_daemon(settings).running():
        return nullcontext()
    return local_server_settings(settings)


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
        with progress.status(f"scaling {opts.name} to {count}..."), prefect_of(opts):
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
    pool, config = opts.pool(), opts.config()
    try:
        # Held as a tick holds the pool: no tick acts while instances are replaced.
        with prefect_of(opts), held_by_hand(config):
            current = active(build_driver(pool).list())
            chosen = current if all_ else [i for i in current if instance in (i.name, i.id,
                                                                              i.address)]
            if not chosen:
                raise typer.BadParameter(f"{instance!r}: no active instance with that name, id "
                                         "or address (see `kongstack status`)",
                                         param_hint="INSTANCE")
            began, started = datetime.now(UTC), time.monotonic()
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
    # The same "manual" row a `kongstack scale` writes (record_manual): the pool size is
    # unchanged, the instances are new.
    replaced = ActionRecord(kind="manual", from_count=len(current), to_count=len(current),
                            outcome="ok", reason=f"replaced {', '.join(i.name for i in chosen)}")
    record_manual(config.record, replaced, at=began, reason="rolling restart",
                  source="cli", duration_s=time.monotonic() - started)


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
    app.command()(scale)
    app.command()(restart)
    app.command()(approve)
    app.command()(deny)

"""What a deploy-stack run did, and where it stopped: the summary and the resume markers.

The markers live in ``<home>/deploy/<stack>/state.json``. A run that failed part-way leaves
its finished steps marked ``done`` under the configuration's fingerprint; the next run with
the same configuration skips them and starts at the failed step. A run that completed, or a
changed configuration, starts from the top (every step is idempotent anyway).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kongstack.core.files import write_atomic
from kongstack.core.topology import Host, Role
from tasks.providers.protocol import (
    STEPS,
    Component,
    DeployPlan,
    Installed,
    Provisioned,
    Registered,
    StepName,
    StepResult,
    Verified,
)


@dataclass
class StepRecord:
    name: str
    status: str = "pending"  # pending | done | skipped (resumed/until) | failed | planned
    seconds: float = 0.0
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # drift, substitutions: seen, not changed
    error: str = ""


@dataclass
class DeploySummary:
    stack: str
    provider: str
    fingerprint: str
    hosts: list[Host] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=lambda: {s: StepRecord(s) for s in STEPS})
    resumed_from: str | None = None
    dry_run: bool = False

    @classmethod
    def planned(cls, plan: DeployPlan, fingerprint: str) -> DeploySummary:
        """A dry run's summary: every step with the actions the plan says it would take."""
        summary = cls(stack=plan.stack, provider=plan.provider, fingerprint=fingerprint,
                      dry_run=True)
        for step in STEPS:
            summary.steps[step].changes = list(plan.actions(step))
            summary.steps[step].status = "planned"
        return summary

    def apply(self, step: StepName, result: StepResult) -> None:
        """Fold one step's result (complete, or what exists after a failure) in."""
        record = self.steps[step]
        record.changes, record.notes = list(result.changes), list(result.notes)
        if isinstance(result, Provisioned):
            self.hosts = list(result.hosts)
        if isinstance(result, Installed | Verified) and (result.components or result.ok):
            self.components = list(result.components)
        if isinstance(result, Registered | Verified):
            self.urls.update(result.urls)

    @property
    def ok(self) -> bool:
        return all(s.status in ("done", "skipped") for s in self.steps.values())

    @property
    def changes(self) -> list[str]:
        return [c for s in self.steps.values() for c in s.changes]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def failed_step(self) -> str | None:
        return next((s.name for s in self.steps.values() if s.status == "failed"), None)

    def headline(self) -> str:
        if self.dry_run:
            return f"dry run: {len(self.changes)} planned change(s), nothing was changed"
        if not self.ok:
            step = self.steps[self.failed_step or "provision"]
            return f"FAILED at step {step.name}: {step.error.splitlines()[0] if step.error else ''}"
        if not self.changed:
            return "no changes: everything was already in the desired state"
        return f"deployed: {len(self.changes)} change(s)"

    def markdown(self) -> str:
        lines = [f"# deploy-stack `{self.stack}` ({self.provider})", "", f"**{self.headline()}**"]
        if self.resumed_from:
            lines.append(f"\nResumed at step `{self.resumed_from}` (earlier steps were done).")
        lines += ["", "## Steps", "", "| step | status | seconds | changes |", "|---|---|---:|---|"]
        for s in self.steps.values():
            detail = "; ".join(s.changes) or ("—" if not s.error else s.error.splitlines()[0])
            lines.append(f"| {s.name} | {s.status} | {s.seconds:.2f} | {detail} |")
        if self.hosts:
            lines += ["", "## Hosts", "", "| host | address | private | roles | status |",
                      "|---|---|---|---|---|"]
        for h in self.hosts:
            roles = ", ".join(Role(r).value for r in h.roles)
            lines.append(f"| {h.vm} | {h.address} | {h.private_address or '—'} | {roles} "
                         f"| {h.status} |")
        if self.components:
            lines += ["", "## Components", "", "| component | role | status | address | detail |",
                      "|---|---|---|---|---|"]
            for c in self.components:
                lines.append(f"| {c.name} | {c.role} | {c.status} | {c.url or '—'} "
                             f"| {c.detail or ''} |")
        if self.urls:
            lines += ["", "## URLs", ""] + [f"- {k}: {v}" for k, v in self.urls.items()]
        notes = [f"- {s.name}: {n}" for s in self.steps.values() for n in s.notes]
        if notes:
            lines += ["", "## Notes (drift and substitutions: reported, not changed)", "", *notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ok=self.ok, changed=self.changed, headline=self.headline())
        return data


class ResumeMarkers:
    """Per-step completion markers keyed on the configuration fingerprint."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.data: dict[str, Any] = {"fingerprint": fingerprint, "complete": False, "steps": {}}
        try:
            saved = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            saved = None
        self.previous_incomplete = bool(
            saved and saved.get("fingerprint") == fingerprint and not saved.get("complete")
        )
        if self.previous_incomplete and saved is not None:
            self.data = saved

    def done(self, step: str) -> bool:
        return bool(self.previous_incomplete and
                    self.data["steps"].get(step, {}).get("status") == "done")

    def output(self, step: str) -> Any:
        return self.data["steps"].get(step, {}).get("output")

    def mark(self, step: str, status: str, output: Any = None, error: str = "") -> None:
        self.data["steps"][step] = {"status": status, "output": output, "error": error,
                                    "at": time.time()}
        self._save()

    def complete(self) -> None:
        self.data["complete"] = True
        self._save()

    def _save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str))


def hosts_to_json(hosts: list[Host]) -> list[dict[str, Any]]:
    return [{**asdict(h), "roles": [Role(r).value for r in h.roles]} for h in hosts]

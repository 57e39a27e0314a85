"""deploy-stack's run over any provider: typed results, what exists after a failure, resume
from typed markers, ``until`` (a provider double stands in for local/Azure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tasks.providers.deploy as deploy_module
from flows.deploy_stack import run_steps
from kongstack.core.settings import LocalSettings
from kongstack.core.topology import Host, Role, load_topology
from tasks.providers.protocol import (
    Component,
    DeployPlan,
    Installed,
    PlannedStep,
    Provisioned,
    Registered,
    Verified,
)
from tasks.providers.report import DeploySummary


@dataclass
class FakeProvider:
    fail_install: bool = False
    calls: list[str] = field(default_factory=list)

    def plan(self) -> DeployPlan:
        return DeployPlan(stack="s", provider="fake", steps=(
            PlannedStep(name="provision", actions=("ensure host h1",)),
            PlannedStep(name="install", actions=("start a",)),
            PlannedStep(name="register", actions=()), PlannedStep(name="verify", actions=())))

    def provision(self) -> Provisioned:
        self.calls.append("provision")
        return Provisioned(hosts=(Host("h1", (Role.REDIS,), "10.0.0.1"),), changes=("host h1",))

    def install(self, provisioned: Provisioned) -> Installed:
        self.calls.append(f"install on {provisioned.hosts[0].vm}")
        a = Component("a", "redis", "started")
        if self.fail_install:
            return Installed(components=(a,), changes=("started a",), error="b would not start")
        return Installed(components=(a, Component("b", "redis", "started")),
                         changes=("started a", "started b"))

    def register(self, provisioned: Provisioned, installed: Installed) -> Registered:
        self.calls.append("register")
        return Registered(urls={"api": "http://h1/api"})

    def verify(self, provisioned: Provisioned, installed: Installed) -> Verified:
        self.calls.append(f"verify {len(installed.components)} components")
        return Verified(components=installed.components)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    provider = FakeProvider()
    monkeypatch.setattr(deploy_module, "provider_for", lambda *a, **k: provider)
    return provider


def run(tmp_path: Path, *, dry_run: bool = False, until: str | None = None) -> DeploySummary:
    return run_steps(load_topology(), LocalSettings(home=tmp_path), dry_run=dry_run,
                     resume=True, until=until, log=lambda _: None)


def test_a_failed_step_reports_what_exists_and_the_next_run_resumes_there(
        fake: FakeProvider, tmp_path: Path) -> None:
    fake.fail_install = True
    failed = run(tmp_path)
    assert failed.failed_step == "install"
    assert [c.name for c in failed.components] == ["a"]
    assert failed.steps["install"].error == "b would not start"
    assert failed.steps["register"].status == "pending"

    fake.fail_install, fake.calls = False, []
    resumed = run(tmp_path)
    assert resumed.ok and resumed.resumed_from == "install"
    # provision is not run again: its typed result (hosts with roles) comes from the markers
    assert fake.calls == ["install on h1", "register", "verify 2 components"]
    assert resumed.hosts == [Host("h1", (Role.REDIS,), "10.0.0.1")]
    assert resumed.urls == {"api": "http://h1/api"}


def test_until_stops_after_the_step_and_dry_run_runs_nothing(
        fake: FakeProvider, tmp_path: Path) -> None:
    partial = run(tmp_path, until="provision")
    assert [s.status for s in partial.steps.values()] == [
        "done", "skipped", "skipped", "skipped"]
    fake.calls = []
    planned = run(tmp_path, dry_run=True)
    assert fake.calls == [] and planned.dry_run
    assert planned.steps["provision"].changes == ["ensure host h1"]

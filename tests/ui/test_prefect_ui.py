"""What an operator sees in the Prefect UI, checked in Chromium: the four deployments with their
schedules; an autoscale run with its decision artifact and instance/gateway log lines; a cleanup
run waiting for approval whose form shows the plan, where approving removes exactly that and
denying removes nothing. Every step waits for page state (Playwright's auto-waiting locators
and ``expect``), never for time."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows.cleanup import cleanup
from kongstack.core.procs import http_ok
from tasks.cleanup.approval import WaitingRun, waiting_runs
from tasks.tick.pool import build_driver, build_gateway
from tests.support.autoscale_stack import Stack, autoscale_stack
from tests.support.ops_stack import LocalStack, local_stack

pytestmark = pytest.mark.slow


def off_the_browser_loop(call: Callable[[], Any]) -> Any:
    """Run a Prefect call in a thread of its own (with this test's settings): Playwright's sync
    API keeps an event loop in this thread, where Prefect would hand back coroutines."""
    context = contextvars.copy_context()
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = context.run(call)
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=300)
    if "error" in out:
        raise out["error"]
    assert not thread.is_alive(), "a Prefect call did not finish in 300 s"
    return out.get("value")


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _shot(page: Any, where: Path, name: str) -> None:
    page.screenshot(path=str(where / f"{name}.png"))


def test_the_four_deployments_are_listed_with_their_schedules(
        ui_api: str, page: Any, screenshots: Path) -> None:
    from kongstack.cli.serve import build_deployments

    off_the_browser_loop(lambda: [d.apply() for d in build_deployments()])
    expect = _expect()
    page.goto(f"{ui_api}/deployments")
    rows = page.locator("tr", has=page.get_by_role("link"))
    for name, schedule in (("autoscale", "Every 30 seconds"),
                           ("maintenance", "At 03:15 AM every day"),
                           ("deploy-stack", None), ("cleanup", None)):
        row = page.locator("tr").filter(has=page.get_by_text(name, exact=True)).first
        expect(row).to_be_visible()
        if schedule:
            expect(row).to_contain_text(schedule)
    expect(page.get_by_text("4 Deployments")).to_be_visible()
    assert rows.count() >= 4
    _shot(page, screenshots, "ui-deployments")


@pytest.fixture()
def scaling_stack(tmp_path: Path, redis_url: str, ui_api: str) -> Iterator[Stack]:
    for binary in ("nginx", "prometheus"):
        if not any((Path(d) / binary).exists() for d in ("/usr/sbin", "/usr/bin")):
            pytest.skip(f"{binary} is not installed (run scripts/setup)")
    with autoscale_stack(tmp_path, driver="process", redis_url=redis_url) as stack:
        yield stack


def test_an_autoscale_run_shows_its_decision_artifact_and_instance_and_gateway_logs(
        scaling_stack: Stack, page: Any, screenshots: Path) -> None:
    expect = _expect()
    trigger = f"schedule-{scaling_stack.config.pool.stack}"
    result = off_the_browser_loop(lambda: scaling_stack.tick(trigger=trigger))
    assert (result["current"], result["after"]) == (0, 2), result
    name = f"autoscale-{trigger}-0to2"
    addresses = scaling_stack.ready()

    page.goto(f"{scaling_stack_ui(page)}/runs")
    page.get_by_role("link", name=name).click()  # the run list shows what each tick did
    expect(page.get_by_role("heading", name=name).or_(page.get_by_text(name).first)).to_be_visible()
    logs = page.get_by_role("tabpanel")
    for address in addresses:  # instance started, then registered at the gateway
        port = address.rsplit(":", 1)[1]
        expect(page.get_by_text(f"started process kongstack-api-{port}")).to_be_visible()
        expect(page.get_by_text(f"target {address} added (weight 100)")).to_be_visible()
    expect(logs.get_by_text("kongstack.instances").first).to_be_visible()
    page.get_by_text(f"target {addresses[-1]} added (weight 100)").scroll_into_view_if_needed()
    _shot(page, screenshots, "ui-autoscale-logs")

    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text("autoscale-scale-up").first.click()
    expect(page.get_by_text("scale_up: 0 → 2 (ok)")).to_be_visible()
    expect(page.get_by_text("raised to min_instances 2").first).to_be_visible()
    _shot(page, screenshots, "ui-autoscale-artifact")


def scaling_stack_ui(page: Any) -> str:
    """The UI's base URL from the Prefect settings in force (the ui_api fixture's)."""
    from prefect.settings import PREFECT_UI_URL

    return str(PREFECT_UI_URL.value())


# -- cleanup: approve and deny in the browser -------------------------------------------------

@pytest.fixture()
def owned_stack(tmp_path: Path, redis_url: str, ui_api: str) -> Iterator[LocalStack]:
    with local_stack(tmp_path, redis_url, instances=2) as stack:
        yield stack


def _inventory(stack: LocalStack) -> tuple[list[str], list[str], bool]:
    driver, gateway = build_driver(stack.config), build_gateway(stack.config)
    addresses = sorted(i.address for i in driver.list())
    targets = sorted(t.address for t in gateway.list_targets())
    return addresses, targets, getattr(gateway, "server").pid() is not None  # noqa: B009


def _start_cleanup(stack: LocalStack) -> tuple[threading.Thread, dict[str, Any]]:
    params = {"stack": stack.config.stack, "driver": "process", "gateway": "nginx",
              "local": {k: str(v) for k, v in stack.local.items()},
              "redis_url": stack.config.redis_url, "data_dir": str(stack.data_dir),
              "include_volumes": False, "poll_interval_seconds": 1,
              "approval_timeout_seconds": 600}
    out: dict[str, Any] = {}
    context = contextvars.copy_context()  # the thread talks to the UI's server too

    def run() -> None:
        out["state"] = context.run(lambda: cleanup(**params, return_state=True))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _wait_paused(name: str, timeout: float = 120.0) -> UUID:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: list[WaitingRun] = [r for r in off_the_browser_loop(waiting_runs)
                                   if r.name == name]
        if found:
            return found[0].id
        time.sleep(0.2)  # polling the API for a condition, with a deadline
    raise AssertionError(f"cleanup run {name} never paused for approval")


def _answer_in_the_browser(page: Any, base: str, run_id: UUID, stack: LocalStack,
                           decide: Callable[[Any], None], screenshots: Path,
                           shot: str) -> None:
    expect = _expect()
    page.goto(f"{base}/runs")
    page.get_by_role("link", name=f"cleanup-{stack.config.stack}").click()
    expect(page).to_have_url(f"{base}/runs/flow-run/{run_id}")
    expect(page.get_by_text("Paused").first).to_be_visible()
    page.get_by_role("button", name="Resume").click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text(f"Cleanup plan for stack {stack.config.stack}")).to_be_visible()
    addresses, targets, _ = _inventory(stack)
    for address in addresses:  # the plan names every instance and target it will remove
        expect(form.get_by_text(address).first).to_be_visible()
    expect(form.get_by_text(str(stack.data_dir))).to_be_visible()
    decide(form)
    _shot(page, screenshots, shot)
    page.keyboard.press("Tab")  # leave the last field: the form takes its value on blur
    submit = form.get_by_role("button", name="Submit")
    expect(submit).to_be_enabled()
    submit.click()
    expect(form).to_be_hidden()


def _finished(thread: threading.Thread, out: dict[str, Any],
              timeout: float = 300.0) -> dict[str, Any]:
    """The cleanup run's result once its thread ends (a deadline, not a pause: join returns
    as soon as the run does); a run still going says so instead of a KeyError."""
    thread.join(timeout=timeout)
    assert not thread.is_alive() and "state" in out, (
        f"the cleanup run did not finish within {timeout:g} s of the answer")
    result: dict[str, Any] = off_the_browser_loop(out["state"].result)
    return result


def _fill(form: Any, *, approve: bool, approver: str, reason: str) -> None:
    expect = _expect()
    switch = form.get_by_role("switch")
    if approve:
        switch.click()
    expect(switch).to_have_attribute("aria-checked", "true" if approve else "false")
    fields = form.locator("textarea")  # the Approval form's text fields, in schema order
    expect(fields).to_have_count(2)
    fields.nth(0).fill(approver)
    fields.nth(1).fill(reason)


def test_approving_in_the_browser_removes_exactly_the_plan(
        owned_stack: LocalStack, ui_api: str, page: Any, screenshots: Path) -> None:
    addresses, targets, nginx_up = _inventory(owned_stack)
    assert len(addresses) == 2 and targets == addresses and nginx_up
    thread, out = _start_cleanup(owned_stack)
    run_id = _wait_paused(f"cleanup-{owned_stack.config.stack}")
    _answer_in_the_browser(
        page, ui_api, run_id, owned_stack,
        lambda form: _fill(form, approve=True, approver="ops@example.com",
                           reason="decommission"), screenshots, "ui-cleanup-approval")
    result = _finished(thread, out)
    assert result["status"] == "removed", result
    assert result["approver"] == "ops@example.com" and result["still_present"] == []
    assert len(result["removed"]) == len(result["planned"]) and result["failed"] == []
    assert _inventory(owned_stack) == ([], [], False) and not owned_stack.data_dir.exists()
    assert not any(http_ok(f"http://{a}/health") for a in addresses)


def test_denying_in_the_browser_removes_nothing(
        owned_stack: LocalStack, ui_api: str, page: Any, screenshots: Path) -> None:
    before = _inventory(owned_stack)
    thread, out = _start_cleanup(owned_stack)
    run_id = _wait_paused(f"cleanup-{owned_stack.config.stack}")
    _answer_in_the_browser(
        page, ui_api, run_id, owned_stack,
        lambda form: _fill(form, approve=False, approver="lead", reason="still in use"),
        screenshots, "ui-cleanup-deny")
    result = _finished(thread, out)
    assert result["status"] == "denied" and result["reason"] == "still in use", result
    assert _inventory(owned_stack) == before and owned_stack.data_dir.exists()

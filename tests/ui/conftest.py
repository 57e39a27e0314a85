"""The Prefect UI in a real browser: a real ``prefect server start`` (its bundled UI, a temporary
SQLite home) on a free loopback port, and Debian's Chromium driven by Playwright
(``executable_path=/usr/bin/chromium``: no browser download). scripts/setup installs chromium;
where it is missing these tests skip and say why.

Screenshots go to $KONGSTACK_UI_SCREENSHOTS (default: var/screenshots); the ones in docs/images
are refreshed with ``KONGSTACK_UI_SCREENSHOTS=docs/images .venv/bin/pytest tests/ui``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kongstack.core.procs import Daemon, free_port, http_ok
from kongstack.core.settings import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
STEP_TIMEOUT_MS = 60_000  # two shared cores: the UI's first render can take seconds


def _playwright_or_skip() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup installs Debian's chromium; "
                    "it could not be installed on this machine)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (the [dev] extra)")
    return sync_playwright


@pytest.fixture(scope="session")
def screenshots() -> Path:
    where = Path(os.environ.get("KONGSTACK_UI_SCREENSHOTS", REPO_ROOT / "var" / "screenshots"))
    where = where if where.is_absolute() else REPO_ROOT / where
    where.mkdir(parents=True, exist_ok=True)
    return where


# Package scope: the browser (Playwright's sync API keeps an event loop in this thread, where
# asyncio.run and Prefect's sync calls would fail) and its server end with tests/ui.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    sync_playwright = _playwright_or_skip()
    from playwright.sync_api import expect

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    manager = sync_playwright().start()
    try:
        # --no-sandbox: tests run as root (CI too), where Chromium's sandbox refuses to start.
        chromium = manager.chromium.launch(executable_path=str(CHROMIUM),
                                           args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        manager.stop()


@pytest.fixture(scope="package")
def prefect_ui(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[str]:
    """``prefect server start`` with its UI; yields the UI's base URL."""
    home = tmp_path_factory.mktemp("prefect-ui")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    prefect_bin = shutil.which("prefect", path=str(Path(sys.executable).parent))
    assert prefect_bin is not None, "the prefect CLI is missing from the venv"
    env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"{base}/api",
           "PREFECT_UI_API_URL": f"{base}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1"}
    daemon = Daemon("prefect-ui-server", home)
    daemon.start([prefect_bin, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 ready=lambda: http_ok(f"{base}/api/health", timeout=2.0),
                 log_file=home / "server.log", env=env, timeout=180)
    try:
        yield base
    finally:
        daemon.stop(grace=15.0)


@pytest.fixture()
def ui_api(prefect_ui: str) -> Iterator[str]:
    """This process's Prefect client points at the UI's server for the test."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: f"{prefect_ui}/api",
                                     PREFECT_UI_URL: prefect_ui}):
        yield prefect_ui


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()

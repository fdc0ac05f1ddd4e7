"""Headless Chromium (Debian's, driven by Playwright) against real servers.

Playwright never downloads a browser here: it launches the system chromium
(``PROGRESSCAST_CHROMIUM``, else ``chromium`` on the PATH, else
/usr/bin/chromium). Missing chromium or playwright skips locally and fails
under CI=true (``require_component``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from tests.harness import ROOT, ServerProcess, require_component, token_for

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: every Playwright wait in these tests is bounded by this (ms) unless it says otherwise
TIMEOUT_MS = 15_000


def chromium_path() -> str | None:
    for candidate in (
        os.environ.get("PROGRESSCAST_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def browser():
    require_component(importlib.util.find_spec("playwright") is not None, "playwright (pip)")
    executable = chromium_path()
    require_component(executable is not None, "chromium")
    require_component(
        (ROOT / "node_modules" / "socket.io-client" / "dist").is_dir(),
        "node_modules/socket.io-client (npm ci)",
    )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    """A fresh browser profile (cookies, sessionStorage) per test."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """One real server per test module (a server's graceful stop takes seconds);
    the tests keep apart by each signing in as its own ``user``."""
    srv = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


@pytest.fixture
def user(request) -> str:
    """A user of this test alone: its dashboard shows only its own jobs."""
    return request.node.name[:100]


class PageErrors(list):
    """Uncaught exceptions of the pages a test opened; the test fails on any."""


@pytest.fixture
def page_errors():
    errors = PageErrors()
    yield errors
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def new_page(context, page_errors):
    """Open pages that report uncaught exceptions to ``page_errors``."""

    def make():
        page = context.new_page()
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        return page

    return make


@pytest.fixture
def page(new_page):
    return new_page()


def dashboard_url(server, user: str, path: str = "/") -> str:
    """A page of ``server`` signed in as ``user`` (the token rides in the fragment)."""
    return f"{server.url}{path}#token={token_for(user)}"

"""Fixtures of the security tests (the real-server fixtures `server` and
`clients` come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from config import TestConfig
from tests.harness import SECRET, ServerProcess
from web import create_app

from .support import RAISED_LIMITS, running_server

#: handler-level apps answer thousands of requests a second from one client
HANDLER_LIMITS = {
    "SOCKET_RATE": 1e9,
    "SOCKET_BURST": 1e9,
    "HTTP_RATE": 1e9,
    "HTTP_BURST": 1e9,
}


def build_app(**overrides: Any):
    """An isolated app as tests/handlers/conftest.py builds them: TestConfig
    (threading mode, in-memory SQLite, no background tasks) plus overrides,
    signing tokens with the harness secret (so harness.token_for works)."""
    base = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    return create_app({**base, "SECRET_KEY": SECRET, **HANDLER_LIMITS, **overrides})


@pytest.fixture(scope="module")
def handler_app() -> Iterator[Any]:
    """One app for a whole fuzz module (hypothesis runs many examples per test)."""
    app = build_app()
    yield app
    app.extensions["progresscast"].store.close()


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """A real server with raised rate limits, shared by one module's tests."""
    with running_server(tmp_path_factory.mktemp("fast-server"), **RAISED_LIMITS) as srv:
        yield srv

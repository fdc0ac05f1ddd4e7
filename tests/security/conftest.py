"""Fixtures of the security tests (the real-server fixtures `server` and
`clients` come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import ServerProcess

from .support import RAISED_LIMITS, build_app, running_server


@pytest.fixture(scope="module")
def handler_app() -> Iterator[Any]:
    """One app for a whole fuzz module (hypothesis runs many examples per test)."""
    app = build_app()
    yield app
    app.extensions["progresscast"].tracker.store.close()


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """A real server with raised rate limits, shared by one module's tests."""
    with running_server(tmp_path_factory.mktemp("fast-server"), **RAISED_LIMITS) as srv:
        yield srv

"""Fixtures for the tests that cross the wire: a real gunicorn+eventlet server
and python-socketio clients (see tests/harness.py)."""

from __future__ import annotations

import pytest

from tests.harness import RedisServer, ServerProcess, SocketClient


@pytest.fixture
def server(tmp_path):
    """A fresh gunicorn+eventlet server with its own store; stopped after the test."""
    srv = ServerProcess(tmp_path).start()
    yield srv
    srv.stop()
    assert srv.proc is None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session; tests use their own key prefixes or flush."""
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv
    srv.stop()


@pytest.fixture
def clients():
    """Factory of socket clients, all disconnected after the test."""
    made: list[SocketClient] = []

    def make(url: str, user: str = "alice") -> SocketClient:
        client = SocketClient(url, user)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()

"""Fixtures for the handler tests: one isolated app per test (threading mode,
in-memory SQLite), Socket.IO test clients on ``/progress`` and Flask's HTTP
test client. See helpers.py for how the tests wait."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config import TestConfig  # the project root is on sys.path (pyproject: pythonpath)
from progresscast import ProgressTracker
from web import create_app

from .helpers import NS, TEST_SECRET, Peer, token_for


def config_dict(**overrides: Any) -> dict[str, Any]:
    """TestConfig as a dict, plus overrides. ``create_app(dict)`` starts from
    the production config, so every TestConfig setting is spelled out."""
    base = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    return {**base, "SECRET_KEY": TEST_SECRET, **overrides}


@pytest.fixture
def make_app() -> Iterator[Callable[..., Any]]:
    """``make_app(**overrides)``: another fresh app (TestConfig plus overrides)."""
    apps = []

    def make(**overrides: Any):
        app = create_app(config_dict(**overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["progresscast"].tracker.store.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def socketio(app):
    return app.extensions["socketio"]


@pytest.fixture
def tracker(app) -> ProgressTracker:
    return app.extensions["progresscast"].tracker


@pytest.fixture
def http(app):
    return app.test_client()


_USER_AUTH = object()


@pytest.fixture
def connect(app) -> Iterator[Callable[..., Peer]]:
    """``connect(user)``: a Socket.IO client on ``/progress`` with a token for ``user``.

    ``auth=`` sends that auth payload instead (``None``: no auth at all);
    ``app=`` connects to another app built by ``make_app``.
    """
    peers: list[Peer] = []

    def connect_(user: str = "alice", *, auth: Any = _USER_AUTH, app=app, **claims) -> Peer:
        if auth is _USER_AUTH:
            auth = {"token": token_for(user, **claims)}
        socketio = app.extensions["socketio"]
        peer = Peer(socketio.test_client(app, namespace=NS, auth=auth))
        peers.append(peer)
        return peer

    yield connect_
    for peer in peers:
        if peer.connected:
            peer.raw.disconnect(NS)


@pytest.fixture
def alice(connect) -> Peer:
    peer = connect("alice")
    assert peer.connected
    return peer


@pytest.fixture
def bob(connect) -> Peer:
    peer = connect("bob")
    assert peer.connected
    return peer

"""Limits at the handler level (the real-server versions are in tests/security)."""

from __future__ import annotations

import time

from .helpers import assert_error_ack


def test_requests_beyond_the_rate_are_refused_then_a_flood_is_disconnected(make_app, connect):
    app = make_app(
        SOCKET_RATE=0.001, SOCKET_BURST=2, SOCKET_STRIKES_RATE=0.001, SOCKET_STRIKES_BURST=3
    )
    peer = connect("alice", app=app)
    other = connect("bob", app=app)

    assert peer.ok("ping") and peer.ok("ping")
    for _ in range(3):  # refused, but still connected
        assert_error_ack(peer.request("ping"), "rate_limited")
        assert peer.connected
    # one refusal too many: a flood. Its ack still arrives, then the connection closes.
    assert_error_ack(peer.request("ping"), "rate_limited")
    deadline = time.monotonic() + 2
    while peer.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not peer.connected
    assert other.ok("ping")  # others are served as before


def test_connections_per_user_and_in_total(make_app, connect):
    app = make_app(MAX_CONNECTIONS_PER_USER=2, MAX_CONNECTIONS=3)
    first, second = connect("alice", app=app), connect("alice", app=app)
    assert first.connected and second.connected
    assert not connect("alice", app=app).connected  # the user's third
    assert connect("bob", app=app).connected  # the instance's third
    assert not connect("carol", app=app).connected  # the instance's fourth
    first.raw.disconnect(namespace="/progress")
    assert connect("alice", app=app).connected  # a slot came free

"""Token expiry on a live connection, and CORS, on real servers.

- sweeping server (EXPIRY_SWEEP_SECONDS=0.5, default CORS): a connection
  whose token expires gets ``session_expired`` and is closed within a
  bounded time; browsers from another origin are refused;
- lazy server (EXPIRY_SWEEP_SECONDS=3600, so the sweep never comes in
  time): a request sent after expiry but before any sweep acks
  ``unauthorized`` (and the connection is then closed);
- CORS server (CORS_ALLOWED_ORIGINS=["http://good.example"]): the
  configured origin is accepted, any other refused.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
import requests
import socketio

from tests.harness import NAMESPACE, SocketClient, token_for, wait_until

from .support import (
    DROPPED,
    bearer,
    call_or_drop,
    check_error_body,
    discard,
    running_server,
    token_exp,
)

pytestmark = pytest.mark.server

SWEEP = 0.5
GOOD = "http://good.example"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def sweeping_server(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("sweeping"), PROGRESSCAST_EXPIRY_SWEEP_SECONDS=str(SWEEP)
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def lazy_server(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("lazy"), PROGRESSCAST_EXPIRY_SWEEP_SECONDS="3600"
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("cors"), PROGRESSCAST_CORS_ALLOWED_ORIGINS=f'["{GOOD}"]'
    ) as srv:
        yield srv


def next_other(client: SocketClient, name: str, timeout: float) -> tuple[str, Any]:
    """The next non-job event called ``name`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {name!r} within {timeout}s")
        try:
            event, data = client.other.get(timeout=left)
        except queue.Empty:
            continue
        if event == name:
            return event, data


def gone(client: SocketClient) -> bool:
    return not client.sio.connected or NAMESPACE not in client.sio.namespaces


# ------------------------------------------------------------------ expiry


def test_expired_token_gets_session_expired_and_is_disconnected(sweeping_server):
    token = token_for("alice-x", ttl=2)
    exp = token_exp(token)
    client = SocketClient(sweeping_server.url, token=token)
    try:
        job = requests.post(
            sweeping_server.url + "/api/jobs",
            json={"name": "j", "stages": ["a"], "start": True},
            headers=bearer(token_for("alice-x")),
            timeout=10,
        ).json()
        assert client.call("join_job", {"job_id": job["job_id"]})["ok"] is True

        _, data = next_other(client, "session_expired", timeout=exp - time.time() + SWEEP + 3)
        received = time.time()
        assert check_error_body(data, {"unauthorized"}) == data
        assert received >= exp - 0.05, (received, exp)  # not before the token expired
        assert received <= exp + SWEEP + 2, (received, exp)
        wait_until(lambda: gone(client), timeout=3, what="the server closing the connection")

        # once expired, the same token can neither reconnect nor call the API
        with pytest.raises(socketio.exceptions.ConnectionError):
            SocketClient(sweeping_server.url, token=token)
        r = requests.get(sweeping_server.url + "/api/jobs", headers=bearer(token), timeout=10)
        assert r.status_code == 401 and check_error_body(r.json())["code"] == "unauthorized"
    finally:
        discard(client)


def expired_connection(server) -> SocketClient:
    """A connection whose token (ttl 2 s) has just expired, before any sweep."""
    token = token_for("bob-x", ttl=2)
    exp = token_exp(token)
    client = SocketClient(server.url, token=token)
    assert client.call("ping")["ok"] is True
    wait_until(lambda: time.time() > exp + 0.05, timeout=5, what="the token's expiry")
    assert not gone(client)  # no sweep has run: still connected
    return client


def test_request_after_expiry_before_the_sweep_closes_the_connection(lazy_server):
    client = expired_connection(lazy_server)
    try:
        ack = call_or_drop(client, "ping", {}, timeout=5)
        # the sweep may close the connection before the request is read
        if ack != DROPPED:
            assert ack["ok"] is False and ack["error"]["code"] == "unauthorized", ack
        _, data = next_other(client, "session_expired", timeout=3)
        assert check_error_body(data, {"unauthorized"}) == data
        wait_until(lambda: gone(client), timeout=3, what="the server closing the connection")
    finally:
        discard(client)


def test_request_after_expiry_before_the_sweep_acks_unauthorized(lazy_server):
    client = expired_connection(lazy_server)
    try:
        ack = call_or_drop(client, "ping", {}, timeout=5)
        assert ack != DROPPED, "disconnected without an ack"
        assert set(ack) == {"ok", "error"} and ack["ok"] is False, ack
        assert check_error_body(ack["error"])["code"] == "unauthorized"
    finally:
        discard(client)


# -------------------------------------------------------------------- CORS


def socket_from(url: str, origin: str, transport: str) -> bool:
    """Whether a Socket.IO connection from ``origin`` is accepted."""
    # websocket-client sends its own Origin header unless told which: set it
    # there (an extra header would make a second Origin); polling uses headers
    websocket = transport == "websocket"
    options = {"websocket_extra_options": {"origin": origin}} if websocket else {}
    sio = socketio.Client(reconnection=False, **options)
    try:
        sio.connect(
            url,
            namespaces=[NAMESPACE],
            auth={"token": token_for("carol-x")},
            transports=[transport],
            headers={} if websocket else {"Origin": origin},
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError:
        return False
    finally:
        sio.shutdown()
    return True


def rest_from(url: str, origin: str) -> tuple[requests.Response, requests.Response]:
    """A simple GET and a preflight OPTIONS from ``origin``."""
    get = requests.get(
        url + "/api/jobs",
        headers={"Origin": origin, **bearer(token_for("carol-x"))},
        timeout=10,
    )
    preflight = requests.options(
        url + "/api/jobs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=10,
    )
    return get, preflight


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_default_cors_refuses_other_origins(sweeping_server, transport):
    assert not socket_from(sweeping_server.url, EVIL, transport)
    assert socket_from(sweeping_server.url, sweeping_server.url, transport)  # same origin
    get, preflight = rest_from(sweeping_server.url, EVIL)
    assert get.status_code == 200  # answered, but a browser may not read it
    for r in (get, preflight):
        assert "Access-Control-Allow-Origin" not in r.headers, r.headers
        assert "Access-Control-Allow-Credentials" not in r.headers, r.headers


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_configured_origin_is_accepted_and_only_it(cors_server, transport):
    assert socket_from(cors_server.url, GOOD, transport)
    assert not socket_from(cors_server.url, EVIL, transport)

    get, preflight = rest_from(cors_server.url, GOOD)
    assert get.status_code == 200
    assert get.headers.get("Access-Control-Allow-Origin") == GOOD, get.headers
    assert preflight.headers.get("Access-Control-Allow-Origin") == GOOD, preflight.headers
    allowed = preflight.headers.get("Access-Control-Allow-Headers", "").lower()
    assert "authorization" in allowed, preflight.headers

    get, preflight = rest_from(cors_server.url, EVIL)
    for r in (get, preflight):
        assert "Access-Control-Allow-Origin" not in r.headers, r.headers


def test_configured_origins_still_accept_the_same_origin(cors_server):
    assert socket_from(cors_server.url, GOOD, "websocket")  # the list works ...
    assert socket_from(cors_server.url, cors_server.url, "websocket")  # ... and same origin?

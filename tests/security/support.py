"""Shared pieces of the security tests: servers with other settings, error
shapes, and socket calls that may legitimately end in a dropped connection."""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import socketio

from config import TestConfig
from tests.harness import NAMESPACE, SECRET, ServerProcess, SocketClient, token_for
from web import create_app

#: every code an error ack or an HTTP error body may carry (DESIGN §4, protocol.md)
SOCKET_CODES = {
    "invalid_payload",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limited",
    "too_many_connections",
    "internal",
    "unavailable",  # extension: the store cannot be reached (503)
}
#: REST adds the two codes for errors raised below the API layer (protocol.md)
HTTP_CODES = SOCKET_CODES | {"method_not_allowed", "payload_too_large"}

#: limits high enough that a test's own request rate never trips them
RAISED_LIMITS = {
    "PROGRESSCAST_SOCKET_RATE": "100000",
    "PROGRESSCAST_SOCKET_BURST": "100000",
    "PROGRESSCAST_HTTP_RATE": "100000",
    "PROGRESSCAST_HTTP_BURST": "100000",
}

DROPPED = "dropped"  # what call_or_drop returns when the server closed the connection


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


@contextlib.contextmanager
def running_server(workdir: Path, **env: str) -> Iterator[ServerProcess]:
    """A gunicorn+eventlet server with extra ``PROGRESSCAST_*`` settings,
    stopped (quick shutdown) when the block ends, whatever happens."""
    workdir.mkdir(parents=True, exist_ok=True)
    srv = ServerProcess(workdir, env=env)
    try:
        yield srv.start()
    finally:
        srv.stop(signal.SIGINT)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_exp(token: str) -> int:
    """The ``exp`` claim of a token (read without verifying it)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]


def check_error_body(body: Any, codes: set[str] = HTTP_CODES) -> dict[str, Any]:
    """``body`` is ``{code, message, details?}`` with a known code; returns it."""
    assert isinstance(body, dict), body
    assert set(body) <= {"code", "message", "details"}, body
    assert body.get("code") in codes, body
    assert isinstance(body.get("message"), str) and body["message"], body
    if "details" in body:
        assert isinstance(body["details"], (dict, list)), body
    return body


def check_ack(ack: Any) -> dict[str, Any]:
    """A request's ack: ``{ok: true, ...}`` or ``{ok: false, error}`` with a known code."""
    assert isinstance(ack, dict), ack
    if ack.get("ok") is True:
        return ack
    assert ack.get("ok") is False and set(ack) == {"ok", "error"}, ack
    check_error_body(ack["error"], SOCKET_CODES)
    return ack


def call_or_drop(client: SocketClient, event: Any, *args: Any, timeout: float = 10) -> Any:
    """Send one request; return its ack, or :data:`DROPPED` if the server
    closed the connection instead. Fails if neither happens within ``timeout``."""
    acks: queue.Queue = queue.Queue()
    client.sio.emit(
        event,
        args[0] if len(args) == 1 else args,
        namespace=NAMESPACE,
        callback=lambda *ack: acks.put(ack),
    )
    return wait_ack_or_drop(client, acks, timeout)


def raw_call(client: SocketClient, data_json: str, timeout: float = 10) -> Any:
    """Send a hand-made EVENT packet whose data is ``data_json`` (any text,
    valid JSON or not) with an ack id; return the ack or :data:`DROPPED`."""
    acks: queue.Queue = queue.Queue()
    ack_id = client.sio._generate_ack_id(NAMESPACE, lambda *ack: acks.put(ack))
    client.sio.eio.send(f"2{NAMESPACE},{ack_id}{data_json}")
    return wait_ack_or_drop(client, acks, timeout)


def wait_ack_or_drop(client: SocketClient, acks: queue.Queue, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ack = acks.get(timeout=0.02)
        except queue.Empty:
            if not client.sio.connected or NAMESPACE not in client.sio.namespaces:
                return DROPPED
            continue
        return ack[0] if len(ack) == 1 else list(ack)
    raise AssertionError(f"neither an ack nor a disconnect within {timeout}s")


def discard(client: SocketClient) -> None:
    """Close a client, including a websocket the server has already dropped
    (python-engineio leaves that socket open, which would warn later)."""
    ws = getattr(client.sio.eio, "ws", None)
    client.close()
    if ws is not None:
        with contextlib.suppress(Exception):
            ws.shutdown()  # close() does nothing once the peer has closed


def refused_connect(url: str, token: str | None, **connect: Any) -> Any:
    """Try to connect on ``/progress``; return the connect_error data, or
    None if the connection was accepted (it is closed again at once)."""
    sio = socketio.Client(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", errors.append, namespace=NAMESPACE)
    auth = {"token": token} if token is not None else None
    try:
        sio.connect(
            url,
            namespaces=[NAMESPACE],
            auth=auth,
            transports=connect.pop("transports", ["websocket"]),
            wait_timeout=10,
            **connect,
        )
    except socketio.exceptions.ConnectionError as exc:
        sio.shutdown()
        return errors[0] if errors else {"transport_error": str(exc)}
    sio.shutdown()
    return None


__all__ = [
    "DROPPED",
    "HANDLER_LIMITS",
    "HTTP_CODES",
    "RAISED_LIMITS",
    "SOCKET_CODES",
    "bearer",
    "build_app",
    "call_or_drop",
    "check_ack",
    "check_error_body",
    "discard",
    "raw_call",
    "refused_connect",
    "running_server",
    "token_exp",
    "token_for",
]

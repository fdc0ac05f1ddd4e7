"""transport.install: what it puts in place for each async mode, and that
it puts nothing in place when DIRECT_WEBSOCKET is off or a dependency is in
a version the transport was not tested with (one warning)."""

from __future__ import annotations

import logging

import engineio
import pytest

from progresscast.flask import transport
from progresscast.flask.transport import hooks
from progresscast.flask.transport.connection import DirectSockets
from progresscast.flask.transport.handshake import SOCKET, SocketInput


def wsgi_app(environ, start_response):
    return []


def server(mode: str) -> engineio.Server:
    return engineio.Server(async_mode=mode, monitor_clients=False)


@pytest.mark.parametrize("mode", ["eventlet", "gevent"])
def test_each_loop_gets_our_websocket_class_on_this_server_only(mode):
    eio, other = server(mode), server(mode)
    shared = other._async["websocket"]
    app = transport.install(eio, mode, wsgi_app)
    assert isinstance(app, SocketInput) and app.app is wsgi_app
    assert transport.is_installed(eio) and eio.sockets.driver.name == mode
    assert eio._async["websocket"] is not shared  # ours, falling back to shared
    assert other._async["websocket"] is shared  # python-engineio's module dict untouched


def test_threading_keeps_python_engineios_websockets_with_the_shared_pinger():
    eio = server("threading")
    assert transport.install(eio, "threading", wsgi_app) is wsgi_app
    assert transport.is_installed(eio) and eio.sockets.driver is None


@pytest.mark.parametrize("mode", ["eventlet", "gevent", "threading"])
def test_direct_websocket_false_turns_all_of_it_off(mode):
    eio = server(mode)
    websocket = eio._async["websocket"]
    assert transport.install(eio, mode, wsgi_app, enabled=False) is wsgi_app  # no SocketInput
    assert type(eio.sockets) is dict and eio._async["websocket"] is websocket


@pytest.mark.parametrize(
    ("mode", "distribution"),
    [
        ("eventlet", "python-engineio"),
        ("gevent", "python-socketio"),
        ("eventlet", "eventlet"),
        ("gevent", "gevent"),
    ],
)
def test_an_untested_version_falls_back_with_one_warning(monkeypatch, caplog, mode, distribution):
    tested = hooks.installed_version
    monkeypatch.setattr(
        hooks,
        "installed_version",
        lambda name: "99.0.0" if name == distribution else tested(name),
    )
    eio = server(mode)
    websocket = eio._async["websocket"]
    with caplog.at_level(logging.WARNING):
        assert transport.install(eio, mode, wsgi_app) is wsgi_app
    assert type(eio.sockets) is dict and eio._async["websocket"] is websocket
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"{distribution} 99.0.0" in warning.getMessage()
    assert "python-engineio's own path" in warning.getMessage()


def test_the_other_loops_version_does_not_matter(monkeypatch):
    tested = hooks.installed_version
    monkeypatch.setattr(
        hooks, "installed_version", lambda name: None if name == "gevent" else tested(name)
    )
    assert hooks.untested_versions("eventlet") == []
    assert hooks.untested_versions("gevent") == ["gevent None (tested: 26.9.x)"]


def test_the_installed_versions_are_the_tested_ones():
    """CI runs what hooks.TESTED names: a dependency bump shows up here first."""
    for mode in ("eventlet", "gevent", "threading"):
        assert hooks.untested_versions(mode) == [], "widen hooks.TESTED after testing"


def test_the_extension_wires_it_off_too(tmp_path):
    from tests.extension.conftest import build_app

    app = build_app(tmp_path, PROGRESSCAST_DIRECT_WEBSOCKET=False)
    try:
        eio = app.extensions["progresscast"].socketio.server.eio
        assert type(eio.sockets) is dict
    finally:
        app.extensions["progresscast"].close()
    app = build_app(tmp_path / "on")
    try:
        assert isinstance(app.extensions["progresscast"].socketio.server.eio.sockets, DirectSockets)
    finally:
        app.extensions["progresscast"].close()


def test_socket_input_moves_only_engineio_requests_socket():
    seen = []
    app = SocketInput(lambda environ, start_response: seen.append(dict(environ)) or [])
    sock = object()
    app({"QUERY_STRING": "EIO=4&transport=websocket", "gunicorn.socket": sock}, None)
    app({"QUERY_STRING": "", "gunicorn.socket": sock}, None)  # an SSE stream reads it there
    assert seen[0] == {"QUERY_STRING": "EIO=4&transport=websocket", SOCKET: sock}
    assert seen[1] == {"QUERY_STRING": "", "gunicorn.socket": sock}


def test_our_websocket_answers_the_handshake_on_gunicorns_plain_socket():
    import socket
    from types import SimpleNamespace

    from progresscast.flask.transport.handshake import ServerWebSocket, WebSocketWSGI

    fallbacks = []

    def fallback(handler, server):
        def app(environ, start_response):
            sock = environ.get("gunicorn.socket")
            fallbacks.append(sock)
            if sock is not None:  # eventlet's websocket finds it here
                assert environ["eventlet.input"].get_socket() is sock
            return []

        return app

    handled = []
    server = SimpleNamespace(max_http_buffer_size=1000)
    websocket = WebSocketWSGI(handled.append, server, fallback)
    ours, client = socket.socketpair()
    try:
        environ = {
            SOCKET: ours,
            "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",  # RFC 6455 §1.3's example
            "HTTP_SEC_WEBSOCKET_VERSION": "13",
        }
        with pytest.raises(StopIteration):  # gunicorn: no response, close the connection
            websocket(environ, None)
        (ws,) = handled
        assert isinstance(ws, ServerWebSocket) and ws.socket is ours
        client.settimeout(5)
        answer = client.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
        assert answer.endswith(b"\r\n\r\n\x88\x02\x03\xe8")  # not parked: closed, status 1000
        # where it cannot park, python-engineio's own class serves, with the socket
        # where simple-websocket looks for it
        for extra in ({"HTTP_SEC_WEBSOCKET_EXTENSIONS": "permessage-deflate"}, {}):
            websocket({**environ, **extra, SOCKET: object() if extra else None}, None)
        tls = SimpleNamespace(getpeercert=lambda: None)
        websocket({**environ, SOCKET: None, "gunicorn.socket": tls}, None)
        assert fallbacks[0] is not None and fallbacks[1:] == [None, tls]
        # refusals: tuples (a list on an upgrade from polling is taken for packets)
        statuses = []

        def start_response(status, headers):
            statuses.append((status, dict(headers).get("Sec-WebSocket-Version")))

        for bad, status in (
            ({"HTTP_SEC_WEBSOCKET_VERSION": "8"}, ("426 Upgrade Required", "13")),
            ({"HTTP_SEC_WEBSOCKET_KEY": "not base64 but 24 chars!"}, ("400 Bad Request", None)),
            ({"HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="}, ("400 Bad Request", None)),  # 5 bytes
        ):
            body = websocket({**environ, **bad}, start_response)
            assert type(body) is tuple and statuses.pop() == status
        assert len(handled) == 1  # no handler ran for them
    finally:
        ours.close()
        client.close()


def test_receivers_hand_on_when_a_handler_ends_a_receiver_with_more_than_an_exception():
    # A Timeout or GreenletExit leaking out of a handler ended the shared
    # receiver and stranded the sockets behind it (found in review).
    from types import SimpleNamespace

    from progresscast.flask.transport.connection import Receivers

    spawned = []
    receivers = Receivers(SimpleNamespace(spawn=spawned.append))

    class Stop(BaseException):
        pass

    handled = []

    def socket(name, fails=False):
        def receive_inbox():
            handled.append(name)
            if fails:
                raise Stop

        return SimpleNamespace(sid=name, _receive_inbox=receive_inbox)

    receivers.add(socket("a", fails=True))
    receivers.add(socket("b"))
    assert spawned == [receivers._run]  # one receiver for both
    with pytest.raises(Stop):
        spawned.pop()()
    assert handled == ["a"] and spawned == [receivers._run]  # handed on to a new one
    spawned.pop()()
    assert handled == ["a", "b"] and not receivers.ready and spawned == []

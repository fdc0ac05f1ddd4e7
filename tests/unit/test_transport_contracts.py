"""Contract tests: one per private hook of python-engineio, python-socketio,
eventlet, gevent and gunicorn that the transport uses
(progresscast/flask/transport/hooks.py lists them). Each is named after its
hook and, when an upgrade changes it, fails saying which hook broke and
what the transport does with it. Real objects throughout: an Engine.IO
server in threading mode fed WSGI environs, socket pairs in each hub."""

from __future__ import annotations

import inspect
import logging
import socket
import time

import engineio
import pytest
import socketio
from engineio import packet as eio_packet

from progresscast.flask.transport.hooks import HOOKS

BY_NAME = {hook.name: hook for hook in HOOKS}


def check(name: str, ok: object, detail: str) -> None:
    """Fail, naming the hook, unless ``ok``."""
    if not ok:
        hook = BY_NAME[name]
        pytest.fail(
            f"private hook {name!r} of {hook.package} changed: {detail}\n"
            f"  relied on: {hook.where}\n"
            f"  for: {hook.use}\n"
            "  (progresscast/flask/transport/hooks.py; until the transport is adapted,"
            " DIRECT_WEBSOCKET=false or the version check keeps python-engineio's own path)",
            pytrace=False,
        )


def test_every_hook_has_its_contract_test():
    tests = {name[5:] for name in globals() if name.startswith("test_")}
    missing = set(BY_NAME) - tests
    assert not missing, f"hooks without a contract test: {sorted(missing)}"


# -- python-engineio --------------------------------------------------------


class QuietSocket(engineio.socket.Socket):
    """A socket whose pings are not scheduled (no thread left behind)."""

    pings = 0
    sent: list

    def schedule_ping(self):
        self.pings += 1

    def send(self, pkt):
        self.sent.append(pkt.encode())
        super().send(pkt)


class SwappingSockets(dict):
    """As DirectSockets: every new socket becomes a QuietSocket."""

    stored: list

    def __setitem__(self, sid, sock):
        self.stored.append(type(sock))
        if type(sock) is engineio.socket.Socket:
            sock.__class__ = QuietSocket
            sock.sent = []
        super().__setitem__(sid, sock)


def eio_server(**handlers) -> engineio.Server:
    eio = engineio.Server(async_mode="threading", monitor_clients=False)
    for event, handler in handlers.items():
        eio.on(event, handler)
    eio.sockets = SwappingSockets()
    eio.sockets.stored = []
    return eio


def environ(query: str, **extra) -> dict:
    return {"REQUEST_METHOD": "GET", "QUERY_STRING": query, "PATH_INFO": "/engine.io/", **extra}


def responses():
    got = []
    return got, lambda status, headers: got.append(status)


def connect_polling(eio: engineio.Server) -> QuietSocket:
    _, start_response = responses()
    eio.handle_request(environ("EIO=4&transport=polling"), start_response)
    (sock,) = eio.sockets.values()
    return sock


def test_engineio_sockets_dict():
    eio = eio_server()
    sock = connect_polling(eio)
    check(
        "engineio_sockets_dict",
        eio.sockets.stored == [engineio.socket.Socket],
        f"a new connection stored {eio.sockets.stored} in Server.sockets, not one Socket",
    )
    check(
        "engineio_sockets_dict",
        type(sock) is QuietSocket and eio._get_socket(sock.sid) is sock,
        "the socket whose __class__ was swapped is not the one the server uses",
    )


def test_engineio_socket_state():
    eio = eio_server()
    sock = engineio.socket.Socket(eio, "sid")
    for attr in ("queue", "connected", "upgraded", "upgrading", "closing", "closed", "last_ping"):
        check("engineio_socket_state", hasattr(sock, attr), f"Socket has no {attr!r}")
    check(
        "engineio_socket_state",
        list(inspect.signature(sock.check_ping_timeout).parameters) == [],
        "check_ping_timeout() takes arguments",
    )
    check("engineio_socket_state", sock.check_ping_timeout() is True, "a fresh socket timed out")
    for reason in ("TRANSPORT_CLOSE", "SERVER_DISCONNECT"):
        check("engineio_socket_state", hasattr(eio.reason, reason), f"no reason {reason}")


def test_engineio_websocket_handler():
    eio = eio_server()
    handlers = []

    class Recorder:
        def __init__(self, handler, server):
            handlers.append(handler)

        def __call__(self, environ, start_response):
            return []

    eio._async = {**eio._async, "websocket": Recorder}
    _, start_response = responses()
    eio.handle_request(
        environ("EIO=4&transport=websocket", HTTP_UPGRADE="websocket", HTTP_CONNECTION="Upgrade"),
        start_response,
    )
    check("engineio_websocket_handler", len(handlers) == 1, "no websocket handler was built")
    handler = handlers[0]
    check(
        "engineio_websocket_handler",
        getattr(handler, "__func__", None) is QuietSocket._websocket_handler
        and isinstance(handler.__self__, QuietSocket),
        f"the websocket handler is {handler!r}, not the (swapped) socket's _websocket_handler",
    )
    check(
        "engineio_websocket_handler",
        list(inspect.signature(handler).parameters) == ["ws"],
        "_websocket_handler does not take (ws)",
    )


def test_engineio_schedule_ping():
    eio = eio_server()
    sock = connect_polling(eio)
    check("engineio_schedule_ping", sock.pings == 1, "the connect did not call schedule_ping()")
    sock.receive(eio_packet.Packet(eio_packet.PONG))
    check("engineio_schedule_ping", sock.pings == 2, "a PONG did not call schedule_ping()")


def test_engineio_send():
    eio = eio_server()
    sock = connect_polling(eio)
    sock.sent.clear()
    eio.send_packet(sock.sid, eio_packet.Packet(eio_packet.MESSAGE, "hi"))
    eio.send(sock.sid, "there")
    check(
        "engineio_send",
        sock.sent == ["4hi", "4there"],
        f"Server.send/send_packet did not go through Socket.send: {sock.sent}",
    )


def test_engineio_message_handler():
    got, raised = [], []

    class Stop(BaseException):
        pass

    def on_message(sid, data):
        got.append((sid, data))
        if data == "boom":
            raise RuntimeError("boom")
        if data == "stop":  # as a green thread's Timeout leaking out of a handler
            raise Stop

    eio = eio_server(message=on_message)
    eio.async_handlers = False
    eio.logger = logging.getLogger("contract")
    eio.logger.exception = lambda message, *args: raised.append(message)
    sock = connect_polling(eio)
    sock.receive(eio_packet.Packet(encoded_packet="4hello"))
    sock.receive(eio_packet.Packet(encoded_packet="4boom"))
    sock.receive(eio_packet.Packet(encoded_packet="4stop"))
    check(
        "engineio_message_handler",
        eio.handlers.get("message") is on_message
        and got == [(sock.sid, "hello"), (sock.sid, "boom"), (sock.sid, "stop")],
        f"a MESSAGE did not reach handlers['message'](sid, data) at once: {got}",
    )
    check(
        "engineio_message_handler",
        raised == ["message handler error"] * 2 and not sock.closed,
        f"what the message handler raises is no longer logged and passed over: {raised}",
    )


def test_engineio_close_abort():
    disconnects = []
    eio = eio_server(disconnect=lambda sid, reason: disconnects.append((sid, reason)))
    sock = connect_polling(eio)
    while not sock.queue.empty():
        sock.queue.get_nowait()
    sock.close(wait=False, abort=True, reason=eio.reason.TRANSPORT_CLOSE)
    check(
        "engineio_close_abort",
        disconnects == [(sock.sid, eio.reason.TRANSPORT_CLOSE)],
        f"the disconnect event came as {disconnects}",
    )
    check("engineio_close_abort", sock.closed, "the socket is not closed")
    queued = []
    while not sock.queue.empty():
        queued.append(sock.queue.get_nowait())
    check("engineio_close_abort", queued == [None], f"close(abort=True) queued {queued}")


def test_engineio_upgrade_probe():
    """python-engineio's own exchange, which DirectSocket._upgrade copies."""
    eio = eio_server()
    sock = connect_polling(eio)
    sock.connected = True
    while not sock.queue.empty():
        sock.queue.get_nowait()

    class ScriptedWebsocket:  # the client's side of the exchange
        def __init__(self):
            self.incoming = ["2probe", "5"]
            self.sent = []
            self.queued_at_upgrade = None

        def wait(self):
            if self.incoming == ["5"]:
                self.queued_at_upgrade = [p.encode() for p in list(sock.queue.queue)]
            return self.incoming.pop(0) if self.incoming else None

        def send(self, message):
            self.sent.append(message)

        def close(self):
            pass

    ws = ScriptedWebsocket()
    engineio.socket.Socket._websocket_handler(sock, ws)
    check(
        "engineio_upgrade_probe",
        ws.sent[:1] == ["3probe"],
        f"the answer to the probe was {ws.sent[:1]}, not 3probe",
    )
    check(
        "engineio_upgrade_probe",
        ws.queued_at_upgrade == ["6"],
        f"the pending poll got {ws.queued_at_upgrade}, not a NOOP",
    )
    check("engineio_upgrade_probe", sock.upgraded, "UPGRADE did not upgrade the socket")


def test_engineio_socket_queue():
    class NoReads:
        def __getattr__(self, name):
            check("engineio_socket_queue", False, f"an upgraded socket's poll used queue.{name}")

    eio = eio_server()
    sock = connect_polling(eio)
    sock.connected = sock.upgraded = True
    sock.queue = NoReads()
    _, start_response = responses()
    got = sock.handle_get_request(
        environ(f"EIO=4&transport=polling&sid={sock.sid}"), start_response
    )
    check(
        "engineio_socket_queue",
        [p.packet_type for p in got] == [eio_packet.NOOP],
        f"a poll on an upgraded socket returned {got}",
    )
    source = inspect.getsource(engineio.socket)
    check(
        "engineio_socket_queue",
        source.count("self.queue.get(") == 2 and "def poll(self)" in source,
        "engineio.socket reads its queue somewhere new (not only in poll())",
    )


def test_engineio_eventlet_input():
    from engineio.async_drivers import eventlet as driver

    source = inspect.getsource(driver.WebSocketWSGI.__call__)
    check(
        "engineio_eventlet_input",
        "environ['eventlet.input'].get_socket()" in source
        or 'environ["eventlet.input"].get_socket()' in source,
        "python-engineio's eventlet websocket no longer reads environ['eventlet.input']",
    )


def test_engineio_async_websocket():
    eio = eio_server()
    calls = []

    def websocket(handler, server):
        calls.append(server)
        return lambda environ, start_response: calls.append(environ["QUERY_STRING"]) or []

    shared = eio._async
    eio._async = {**eio._async, "websocket": websocket}
    _, start_response = responses()
    query = "EIO=4&transport=websocket"
    eio.handle_request(
        environ(query, HTTP_UPGRADE="websocket", HTTP_CONNECTION="Upgrade"), start_response
    )
    check(
        "engineio_async_websocket",
        calls == [eio, query],
        f"_async['websocket'](handler, server)(environ, start_response) was not called: {calls}",
    )
    check(
        "engineio_async_websocket",
        isinstance(shared, dict) and "websocket" in shared,
        "Server._async is not a dict with a 'websocket' entry",
    )


# -- python-socketio ---------------------------------------------------------


class RecordingPubSub(socketio.PubSubManager):
    def __init__(self):
        super().__init__(channel="test")
        self.published = []
        self.handled = []
        self.incoming = []

    def _publish(self, data):
        self.published.append(data)

    def _handle_emit(self, message):
        self.handled.append(message)

    def _listen(self):
        yield from self.incoming


def test_socketio_pubsub_handle_emit():
    manager = RecordingPubSub()
    socketio.Server(async_mode="threading", client_manager=manager)
    manager.emit("progress", {"seq": 1}, namespace="/progress", room=["job:1"])
    expected = {
        "method": "emit",
        "event": "progress",
        "data": [{"seq": 1}],
        "binary": False,
        "namespace": "/progress",
        "room": ["job:1"],
        "skip_sid": None,
        "callback": None,
        "host_id": manager.host_id,
    }
    check(
        "socketio_pubsub_handle_emit",
        manager.handled == [expected] and manager.published == [expected],
        f"emit handled {manager.handled} here and published {manager.published}",
    )
    # a message from another server reaches _handle_emit from the listener
    manager.handled.clear()
    theirs = {**expected, "host_id": "another"}
    manager.incoming = [theirs]
    manager._thread()  # returns when _listen ends
    check("socketio_pubsub_handle_emit", manager.handled == [theirs], "queue emits not handled")
    data, attachments = socketio.packet.Packet.deconstruct_binary([{"b": b"\x00"}])
    check(
        "socketio_pubsub_handle_emit",
        socketio.packet.Packet.reconstruct_binary(data, attachments) == [{"b": b"\x00"}],
        "Packet.reconstruct_binary does not undo deconstruct_binary",
    )


def test_socketio_pubsub_return_callback():
    manager = RecordingPubSub()
    socketio.Server(async_mode="threading", client_manager=manager)
    params = list(inspect.signature(manager._return_callback).parameters)
    check(
        "socketio_pubsub_return_callback",
        params == ["host_id", "sid", "namespace", "callback_id", "args"],
        f"_return_callback takes {params}",
    )
    manager._return_callback("another", "sid1", "/progress", 7, "ok")
    check(
        "socketio_pubsub_return_callback",
        manager.published
        == [
            {
                "method": "callback",
                "host_id": "another",
                "sid": "sid1",
                "namespace": "/progress",
                "id": 7,
                "args": ("ok",),
            }
        ],
        f"an ack for another server published {manager.published}",
    )


def test_socketio_send_eio_packet():
    server = socketio.Server(async_mode="threading")
    sent = []
    server._send_eio_packet = lambda eio_sid, pkt: sent.append((eio_sid, pkt.encode()))
    sid = server.manager.connect("eio1", "/")
    server.manager.emit("hello", {"n": 1}, "/", room=sid)
    check(
        "socketio_send_eio_packet",
        sent == [("eio1", '42["hello",{"n":1}]')],
        f"Manager.emit did not send through Server._send_eio_packet: {sent}",
    )


def test_socketio_manager_rooms():
    server = socketio.Server(async_mode="threading")
    manager = server.manager
    sid = manager.connect("eio1", "/progress")
    manager.enter_room(sid, "/progress", "job:1")
    check(
        "socketio_manager_rooms",
        manager.rooms["/progress"]["job:1"] == {sid: "eio1"},
        f"rooms is not rooms[namespace][room][sid] = eio_sid: {manager.rooms}",
    )
    check(
        "socketio_manager_rooms",
        list(manager.get_participants("/progress", "job:1")) == [(sid, "eio1")]
        and list(manager.get_participants("/progress", ["job:1", "job:2"])) == [(sid, "eio1")],
        "get_participants(namespace, room or rooms) does not yield (sid, eio_sid)",
    )


def test_socketio_handle_eio_message():
    server = socketio.Server(async_mode="threading")
    check(
        "socketio_handle_eio_message",
        server.eio.handlers.get("message") == server._handle_eio_message,
        "python-socketio no longer registers _handle_eio_message as Engine.IO's message handler",
    )
    check(
        "socketio_handle_eio_message",
        list(inspect.signature(server._handle_eio_message).parameters) == ["eio_sid", "data"],
        "_handle_eio_message does not take (eio_sid, data)",
    )
    for attr, kind in [
        ("_binary_packet", dict),
        ("handlers", dict),
        ("namespace_handlers", dict),
        ("async_handlers", bool),
    ]:
        check(
            "socketio_handle_eio_message",
            isinstance(getattr(server, attr, None), kind),
            f"Server.{attr} is not a {kind.__name__}",
        )
    check("socketio_handle_eio_message", hasattr(server, "not_handled"), "no Server.not_handled")
    # What the lane does for a plain EVENT, python-socketio must do too: the
    # namespace handler's trigger_event(event, sid, *args), then an ACK.
    calls, sent = [], []

    class Recorder(socketio.Namespace):
        def trigger_event(self, event, *args):
            calls.append((event, *args))
            return {"ok": True}

    server.register_namespace(Recorder("/progress"))
    server._send_packet = lambda eio_sid, pkt: sent.append(pkt.encode())
    sid = server.manager.connect("eio1", "/progress")
    server._handle_eio_message("eio1", '2/progress,7["ping",{}]')
    check(
        "socketio_handle_eio_message",
        calls == [("ping", sid, {})] and sent == ['3/progress,7[{"ok":true}]'],
        f"an EVENT reached the namespace as {calls} and was acked as {sent}",
    )


# -- eventlet and gevent: real hubs on a socket pair ---------------------------


def full_socket_pair():
    """A connected pair whose first end cannot take another byte."""
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        while True:
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    return a, b


def test_eventlet_hub_listeners():
    import eventlet
    from eventlet import hubs

    a, b = socket.socketpair()
    full, drain = full_socket_pair()
    try:
        hub = hubs.get_hub()
        seen, lost = [], []
        listener = hub.add(
            hub.READ, a.fileno(), lambda fd: seen.append(a.recv(16)), seen.append, lost.clear
        )
        b.send(b"!")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            eventlet.sleep(0.01)
        check("eventlet_hub_listeners", seen == [b"!"], f"the READ listener got {seen}")
        hub.remove(listener)
        # notify_opened: the hub drops a listener on a reused number and says so
        hub.add(hub.READ, b.fileno(), seen.append, seen.append, lambda: lost.append(1))
        hubs.notify_opened(b.fileno())
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            eventlet.sleep(0.01)
        check("eventlet_hub_listeners", lost == [1], "notify_opened did not call mark_as_closed")
        hubs.trampoline(a.fileno(), write=True, timeout=1, timeout_exc=TimeoutError)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            hubs.trampoline(full.fileno(), write=True, timeout=0.05, timeout_exc=TimeoutError)
        check("eventlet_hub_listeners", time.monotonic() - started < 2, "trampoline's timeout")
    finally:
        for s in (a, b, full, drain):
            s.close()


def test_gevent_io_watcher():
    import gevent
    from gevent.socket import wait_write

    a, b = socket.socketpair()
    full, drain = full_socket_pair()
    try:
        seen = []
        watcher = gevent.get_hub().loop.io(a.fileno(), 1)
        watcher.start(lambda: seen.append(1))
        b.send(b"!")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            gevent.sleep(0.01)
        check("gevent_io_watcher", seen, "loop.io(fd, 1) did not call back on a readable fd")
        watcher.stop()
        watcher.close()
        wait_write(a.fileno(), timeout=1, timeout_exc=TimeoutError("timed out"))
        with pytest.raises(TimeoutError):
            wait_write(full.fileno(), timeout=0.05, timeout_exc=TimeoutError("timed out"))
    finally:
        for s in (a, b, full, drain):
            s.close()


# -- gunicorn ----------------------------------------------------------------


def test_gunicorn_socket():
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.workers import base_async

    request = SimpleNamespace(body=None, method="GET", query="", uri="/", version=(1, 1))
    sock = object()
    check(
        "gunicorn_socket",
        wsgi.default_environ(request, sock, Config()).get("gunicorn.socket") is sock
        and "default_environ(" in inspect.getsource(wsgi.create),
        "gunicorn's environ no longer holds the connection's socket in 'gunicorn.socket'",
    )
    handle = inspect.getsource(base_async.AsyncWorker.handle)
    handle_request = inspect.getsource(base_async.AsyncWorker.handle_request)
    check(
        "gunicorn_socket",
        "except StopIteration" in handle
        and "except StopIteration:\n            raise" in handle_request,
        "an app's StopIteration no longer ends the connection without a response",
    )

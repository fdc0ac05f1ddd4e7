"""The gevent driver: libev ``io`` watchers, ``wait_write``, ``spawn_raw``.

Under gevent python-engineio's websocket is simple-websocket, which starts a
reader thread of its own for every connection. Under gunicorn's gevent
worker (``environ["gunicorn.socket"]``, a plain socket, no compression),
:class:`WebSocketWSGI` answers the handshake itself instead and hands the
handler a :class:`GeventWebSocket`, which :meth:`GeventDriver.park` turns
into a watched file descriptor; every other case (TLS, compression,
gevent's own server) keeps simple-websocket.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Callable
from typing import Any

import gevent
from gevent.socket import wait_write

from ..frames import CLOSE_FRAME, FrameReader, text_frame
from . import Driver, Parked

READ = 1  # libev's EV_READ
#: RFC 6455 §1.3: the key's answer is SHA-1(key + this), base64
HANDSHAKE_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class GeventDriver(Driver):
    name = "gevent"

    def install(self, eio: Any) -> None:
        # python-engineio builds ``_async["websocket"](handler, server)`` for
        # every websocket; ``_async`` is its driver module's dict, shared by
        # every server, so this server gets a copy of its own.
        fallback = eio._async["websocket"]
        eio._async = {
            **eio._async,
            "websocket": lambda handler, server: WebSocketWSGI(handler, server, fallback),
        }

    def parkable(self, ws: Any) -> bool:
        return isinstance(ws, GeventWebSocket) and not ws.parked

    def wrap_app(self, wsgi_app: Callable) -> Callable:
        return GeventInput(wsgi_app)

    def park(self, ws: Any) -> Parked:
        ws.parked = True  # the connection goes on: no closing frame
        return Parked(os.dup(ws.socket.fileno()), ws.frames, ws.messages)

    def watch_readable(
        self, fd: int, callback: Callable[[], None], lost: Callable[[], None]
    ) -> Any:
        watcher = gevent.get_hub().loop.io(fd, READ)
        watcher.start(callback)
        return watcher

    def unwatch(self, handle: Any) -> None:
        handle.stop()
        handle.close()

    def wait_writable(self, fd: int, timeout: float) -> None:
        wait_write(fd, timeout=timeout, timeout_exc=TimeoutError("timed out"))

    def spawn(self, fn: Callable[[], Any]) -> None:
        gevent.spawn_raw(fn)


#: where :class:`GeventInput` puts gunicorn's socket of an Engine.IO request
SOCKET = "progresscast.socket"


class GeventInput:
    """WSGI middleware: keeps gunicorn's socket of Engine.IO requests away
    from python-engineio's middleware.

    Seeing ``environ["gunicorn.socket"]``, python-engineio defines a class
    inside the request to hand the socket to eventlet's websocket code, and
    python-socketio keeps the connect request's environ (with that class)
    for the connection's life; :class:`WebSocketWSGI` finds the socket here
    instead. Other requests (SSE streams read the socket) keep it.
    """

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable):
        if "EIO=" in environ.get("QUERY_STRING", "") and "gunicorn.socket" in environ:
            environ[SOCKET] = environ.pop("gunicorn.socket")
        return self.app(environ, start_response)


class WebSocketWSGI:
    """python-engineio's ``_async["websocket"]`` under gevent.

    On gunicorn's plain socket it answers the handshake (no extension is
    offered, so no compression) and runs the handler with a
    :class:`GeventWebSocket`; then it raises ``StopIteration``, as
    simple-websocket's wrapper does, so gunicorn writes no response and
    closes its copy of the socket. Anything else goes to ``fallback``
    (python-engineio's own class).
    """

    def __init__(self, handler: Callable, server: Any, fallback: Callable) -> None:
        self.handler = handler
        self.server = server
        self.fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: Callable):
        sock = environ.get(SOCKET) or environ.get("gunicorn.socket")
        if (
            sock is None
            or hasattr(sock, "getpeercert")  # TLS (the stdlib's or gevent's SSLSocket)
            or "HTTP_SEC_WEBSOCKET_EXTENSIONS" in environ  # compression wanted
        ):
            if sock is not None:  # where simple-websocket looks for it
                environ["gunicorn.socket"] = sock
            return self.fallback(self.handler, self.server)(environ, start_response)
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
        if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13" or len(key) != 24:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"Not a websocket handshake"]
        accept = base64.b64encode(hashlib.sha1(key.encode() + HANDSHAKE_GUID).digest())
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        ws = GeventWebSocket(sock, environ, int(self.server.max_http_buffer_size))
        try:
            self.handler(ws)
        finally:
            ws.close()
        raise StopIteration


class GeventWebSocket:
    """A server websocket on a gevent socket, blocking (cooperatively) on
    reads: the interface python-engineio's handlers use (``wait``, ``send``,
    ``close``) until the transport parks the connection."""

    def __init__(self, sock: Any, environ: dict[str, Any], max_message: int) -> None:
        self.socket = sock
        self.environ = environ
        self.frames = FrameReader(max_message)
        self.messages: list = []  # whole messages read but not returned yet
        self.parked = False
        self.closed = False

    def wait(self) -> str | bytes | None:
        """The next message; None when the connection ended."""
        while not self.messages:
            if self.closed or self.frames.closed:
                self.closed = True
                return None
            try:
                data = self.socket.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return None
            messages, replies = self.frames.feed(data)
            for reply in replies:
                self.socket.sendall(reply)
            self.messages.extend(messages)
        return self.messages.pop(0)

    def send(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.socket.sendall(text_frame(message, 0x2))
        else:
            self.socket.sendall(text_frame(message.encode()))

    def close(self) -> None:
        if not self.parked and not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.socket.sendall(CLOSE_FRAME)

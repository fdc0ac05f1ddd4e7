"""The websocket handshake, answered by the transport under either loop.

Under gunicorn (``environ["gunicorn.socket"]``, a plain socket, no
compression asked for), :class:`WebSocketWSGI` answers the handshake itself
and hands python-engineio's handler a :class:`ServerWebSocket`, which the
loop's driver then parks. It replaces python-engineio's
``_async["websocket"]`` (:func:`install`): eventlet's ``WebSocketWSGI`` and
gevent's simple-websocket did the same handshake at several times the
cost, and kept objects the parked connection no longer needs. Everything
else (TLS, compression, a server that is not gunicorn) goes to them.

Nothing here calls a hub: the socket is gunicorn's, green under either loop.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

from .frames import FrameReader, packet_frame

#: RFC 6455 §1.3: the key's answer is SHA-1(key + this), base64
HANDSHAKE_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def install(eio: Any) -> None:
    """Serve ``eio``'s websockets with :class:`WebSocketWSGI`.

    python-engineio builds ``_async["websocket"](handler, server)`` for
    every websocket; ``_async`` is its driver module's dict, shared by every
    server, so this server gets a copy of its own.
    """
    fallback = eio._async["websocket"]
    eio._async = {
        **eio._async,
        "websocket": lambda handler, server: WebSocketWSGI(handler, server, fallback),
    }


#: where :class:`SocketInput` puts gunicorn's socket of an Engine.IO request
SOCKET = "progresscast.socket"


class SocketInput:
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


class SocketHolder:
    """``environ["eventlet.input"]`` for eventlet's websocket: it asks for
    the socket with ``get_socket()``. python-engineio's middleware defines
    such a class inside every request; this is one class for all."""

    __slots__ = ("socket",)

    def __init__(self, sock: Any) -> None:
        self.socket = sock

    def get_socket(self) -> Any:
        return self.socket


class WebSocketWSGI:
    """python-engineio's ``_async["websocket"]`` under eventlet and gevent.

    On gunicorn's plain socket it answers the handshake (no extension is
    offered, so no compression) and runs the handler with a
    :class:`ServerWebSocket`; then it raises ``StopIteration``, as
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
            if sock is not None:
                # Where python-engineio's middleware would have put it for
                # simple-websocket and for eventlet's websocket.
                environ["gunicorn.socket"] = sock
                environ.setdefault("eventlet.input", SocketHolder(sock))
            return self.fallback(self.handler, self.server)(environ, start_response)
        # python-engineio checked the method and the Upgrade header already.
        # Tuples, not lists: on an upgrade from long-polling python-engineio
        # takes a list for packets of its own to encode.
        if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":  # RFC 6455 §4.4
            start_response(
                "426 Upgrade Required",
                [("Content-Type", "text/plain"), ("Sec-WebSocket-Version", "13")],
            )
            return (b"websocket version 13 only",)
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
        if not _valid_key(key):
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return (b"Not a websocket handshake: Sec-WebSocket-Key",)
        accept = base64.b64encode(hashlib.sha1(key.encode() + HANDSHAKE_GUID).digest())
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        ws = ServerWebSocket(sock, environ, int(self.server.max_http_buffer_size))
        try:
            self.handler(ws)
        finally:
            ws.close()
        raise StopIteration


def _valid_key(key: str) -> bool:
    """RFC 6455 §4.1: the client's key is 16 bytes, base64."""
    try:
        return len(key) == 24 and len(base64.b64decode(key, validate=True)) == 16
    except ValueError:  # binascii.Error
        return False


class ServerWebSocket:
    """A server websocket on gunicorn's (green) socket, blocking
    cooperatively on reads: the interface python-engineio's handlers use (``wait``, ``send``,
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
        self.socket.sendall(packet_frame(message))

    def close(self) -> None:
        if not self.parked and not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.socket.sendall(self.frames.closing_frame())

"""The eventlet driver: hub listeners, ``trampoline``, ``spawn_n``.

Under gunicorn's eventlet worker, :class:`EventletInput` hands python-engineio
the request's socket; eventlet's ``WebSocketWSGI`` does the handshake and
gives the websocket handler an ``RFC6455WebSocket``, whose socket
:meth:`EventletDriver.park` copies before the request ends.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

import eventlet
from eventlet import hubs

from . import Driver, Parked

#: set in the environ by :class:`EventletInput`: the request came from
#: gunicorn, which only closes its copy of the socket when the request ends
#: (eventlet's own server, ``socketio.run``, shuts the connection down)
PARKABLE = "progresscast.parkable"


class EventletDriver(Driver):
    name = "eventlet"

    def wrap_app(self, wsgi_app: Callable) -> Callable:
        return EventletInput(wsgi_app)

    def parkable(self, ws: Any) -> bool:
        module = sys.modules.get("eventlet.websocket")
        return bool(
            module is not None
            and isinstance(ws, module.RFC6455WebSocket)
            and ws.environ.get(PARKABLE, False)
            and getattr(ws.socket, "fd", None) is not None  # GreenSSLSocket has none
            and not ws.extensions  # permessage-deflate: frames differ per connection
        )

    def park(self, ws: Any) -> Parked:
        fd = os.dup(ws.socket.fileno())
        hubs.notify_opened(fd)  # forget listeners of a recycled fd number
        ws.websocket_closed = True  # the connection goes on: no closing frame
        return Parked(fd)

    def watch_readable(
        self, fd: int, callback: Callable[[], None], lost: Callable[[], None]
    ) -> Any:
        hub = hubs.get_hub()
        # The hub passes the fd (or the error) along: the callbacks take and ignore it.
        return hub.add(hub.READ, fd, callback, callback, lost)

    def unwatch(self, handle: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            hubs.get_hub().remove(handle)

    def wait_writable(self, fd: int, timeout: float) -> None:
        hubs.trampoline(fd, write=True, timeout=timeout, timeout_exc=TimeoutError)

    def spawn(self, fn: Callable[[], Any]) -> None:
        eventlet.spawn_n(fn)


class EventletInput:
    """WSGI middleware: hands gunicorn's socket to eventlet's websocket code.

    python-engineio does this itself by defining a class inside every request
    (a new class object per connection, kept for the connection's life, and
    garbage the cyclic collector must walk); this does it with one class.
    """

    class _Input:
        __slots__ = ("socket",)

        def __init__(self, sock: Any) -> None:
            self.socket = sock

        def get_socket(self) -> Any:
            return self.socket

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable):
        sock = environ.pop("gunicorn.socket", None)
        if sock is not None and "eventlet.input" not in environ:
            environ["eventlet.input"] = self._Input(sock)
            environ[PARKABLE] = True
        return self.app(environ, start_response)

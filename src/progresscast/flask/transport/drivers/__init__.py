"""One small driver per event loop: the only code of the transport that
calls a hub.

connection.py holds the protocol (framing, backlog, parked readers, pings)
and asks its driver for what depends on the loop: a callback when a file
descriptor can be read, a wait until one can be written, a green thread.
Each loop gets a module here, in the manner of python-engineio's
``async_drivers``; :func:`driver_for` picks one by async mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..handshake import ServerWebSocket, SocketInput
from ..handshake import install as install_handshake


class Parked:
    """What a driver hands over when a websocket leaves its request: the
    file descriptor of the connection (a copy the transport owns) and what
    the websocket library had already read past the handshake."""

    __slots__ = ("fd", "frames", "messages")

    def __init__(self, fd: int, frames: Any = None, messages: list | None = None) -> None:
        self.fd = fd
        #: the ``FrameReader`` already fed with the client's bytes (it holds
        #: the start of a frame or message not complete yet), or None
        self.frames = frames
        #: whole messages read but not handled yet, in order
        self.messages = messages or []


class Driver:
    """The hub calls of one event loop (a base class: every method raises)."""

    name = ""

    def install(self, eio: Any) -> None:
        """Prepare ``eio`` (python-engineio's server) for parked websockets:
        the transport answers the handshake (handshake.py)."""
        install_handshake(eio)

    def wrap_app(self, wsgi_app: Callable) -> Callable:
        """The WSGI app, wrapped in the middleware the handshake needs."""
        return SocketInput(wsgi_app)

    def parkable(self, ws: Any) -> bool:
        """Whether the connection of ``ws`` (what python-engineio gives a
        socket's websocket handler) can leave its request: the transport
        answered its handshake (gunicorn, no TLS, no compression).
        Otherwise python-engineio's own path serves it."""
        return isinstance(ws, ServerWebSocket) and not ws.parked

    def park(self, ws: Any) -> Parked:
        """Take the connection of a :meth:`parkable` ``ws`` away from its
        request; ``ws`` must not touch it any more."""
        raise NotImplementedError

    def watch_readable(
        self, fd: int, callback: Callable[[], None], lost: Callable[[], None]
    ) -> Any:
        """Call ``callback(*ignored)`` in the hub whenever ``fd`` can be read (or
        broke), ``lost()`` if the hub itself drops the watch (eventlet does
        when it sees the number of ``fd`` reused); returns a handle for
        :meth:`unwatch`. The callbacks run in the hub: they must not block."""
        raise NotImplementedError

    def unwatch(self, handle: Any) -> None:
        """Stop a :meth:`watch_readable` (safe to call twice)."""
        raise NotImplementedError

    def wait_writable(self, fd: int, timeout: float) -> None:
        """Block this green thread until ``fd`` can be written;
        ``TimeoutError`` after ``timeout`` seconds."""
        raise NotImplementedError

    def spawn(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` in a new green thread (fire and forget)."""
        raise NotImplementedError


def driver_for(async_mode: str) -> Driver | None:
    """The driver of an async mode, or None: that mode keeps python-engineio's path."""
    if async_mode == "eventlet":
        from .eventlet import EventletDriver

        return EventletDriver()
    if async_mode == "gevent":
        from .gevent import GeventDriver

        return GeventDriver()
    return None

"""The eventlet driver: hub listeners, ``trampoline``, ``spawn_n``.

Under gunicorn's eventlet worker the transport answers the websocket
handshake itself (handshake.py) and this driver parks the connection;
under ``socketio.run`` (eventlet's own server, which shuts the connection
down when the request ends), TLS or compression, python-engineio serves it
with eventlet's websocket and a writer thread per connection.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import eventlet
from eventlet import hubs

from . import Driver, Parked


class EventletDriver(Driver):
    name = "eventlet"

    def park(self, ws: Any) -> Parked:
        fd = os.dup(ws.socket.fileno())
        hubs.notify_opened(fd)  # forget listeners of a recycled fd number
        ws.parked = True  # the connection goes on: no closing frame
        return Parked(fd, ws.frames, ws.messages)

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

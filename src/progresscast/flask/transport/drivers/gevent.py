"""The gevent driver: libev ``io`` watchers, ``wait_write``, ``spawn_raw``.

Under gunicorn's gevent worker the transport answers the websocket
handshake itself (handshake.py) and this driver parks the connection;
without gunicorn (gevent's own server), under TLS or with compression,
python-engineio serves it with simple-websocket, a reader thread per
connection.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import gevent
from gevent.socket import wait_write

from . import Driver, Parked

READ = 1  # libev's EV_READ


class GeventDriver(Driver):
    name = "gevent"

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

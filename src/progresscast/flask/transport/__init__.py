"""The fast websocket path: Engine.IO connections with no green thread of
their own, under eventlet and gevent.

* connection.py: the protocol (framing, backlog, parked readers, pinger,
  broadcast), which does not know the event loop;
* drivers/: one small module per loop (eventlet, gevent) with its hub calls;
* hooks.py: every private part of python-engineio, python-socketio,
  eventlet and gevent this relies on, and the versions tested with;
* frames.py: websocket frames.

:func:`install` puts it in place for one app, or leaves python-engineio's
own path when ``DIRECT_WEBSOCKET`` is off or a dependency has a version it
was not tested with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .connection import DEFAULT_MAX_BACKLOG, DirectSocket, DirectSockets, broadcast
from .drivers import driver_for
from .frames import packet_frame, text_frame
from .hooks import untested_versions

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "DirectSocket",
    "DirectSockets",
    "broadcast",
    "install",
    "is_installed",
    "packet_frame",
    "text_frame",
]

log = logging.getLogger(__name__)


def install(
    eio: Any,
    async_mode: str,
    wsgi_app: Callable,
    *,
    enabled: bool = True,
    max_backlog: int = DEFAULT_MAX_BACKLOG,
) -> Callable:
    """Give ``eio`` (``SocketIO().server.eio``) the fast websocket path;
    returns ``wsgi_app``, wrapped in what the loop's driver needs.

    Under eventlet and gevent websockets are parked and written directly;
    in every mode one pinger sends every connection's pings. Nothing is
    installed when ``enabled`` is false (``DIRECT_WEBSOCKET``), nor, with one
    warning, when a dependency's version was not tested (hooks.py).
    """
    if not enabled:
        return wsgi_app
    untested = untested_versions(async_mode)
    if untested:
        log.warning(
            "progresscast: the fast websocket path is off, python-engineio's own path"
            " serves websockets: untested versions: %s",
            ", ".join(untested),
        )
        return wsgi_app
    if eio.sockets:
        raise RuntimeError("install the transport before the first connection")
    driver = driver_for(async_mode)
    eio.sockets = DirectSockets(eio, max_backlog, driver)
    if driver is None:
        return wsgi_app
    driver.install(eio)
    return driver.wrap_app(wsgi_app)


def is_installed(eio: Any) -> bool:
    """Whether ``eio`` has the transport (its sockets may write directly)."""
    return isinstance(eio.sockets, DirectSockets)

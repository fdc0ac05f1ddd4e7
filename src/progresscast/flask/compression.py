"""Turn off websocket compression (permessage-deflate) unless configured.

Browsers and socket.io-client offer permessage-deflate on every websocket;
eventlet accepts the offer and then deflates each message separately for
each client. For progress events (a few hundred bytes of JSON) that costs
more CPU than every other step of a delivery together: bench/ measured p99
213 ms with it and 36 ms without at 1,000 clients and 10,000 deliveries/s
(docs/benchmarks.md). The Node.js socket.io server has it off by default
for the same reason. Dropping the client's offer before the handshake means
the server never negotiates it, whatever the async mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class NoWebsocketCompression:
    """WSGI middleware: removes ``Sec-WebSocket-Extensions`` from requests."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        return self.app(environ, start_response)

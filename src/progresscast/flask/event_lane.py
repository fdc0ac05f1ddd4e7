"""A client's Socket.IO request handled in one pass (issue 16, request floods).

For every request python-socketio builds a Packet to decode the message,
logs it, looks for the handler through two tables, builds a second Packet
for the ack (walking its data for bytes) and hands the text to Engine.IO,
which wraps it in a third. When 19,000 clients ping within one second,
that was a third of each request's CPU.

:class:`EventLane` takes python-socketio's place as python-engineio's
``message`` handler. It serves the common case in one pass and hands every
other message to python-socketio's own ``_handle_eio_message``
unchanged. The common case is a text EVENT to a namespace that a
class-based namespace serves, with a valid JSON array, from a connected
client, with handlers run inline (``async_handlers`` off) and info logging
off. So the lane can be faster than python-socketio but never answer
differently (tests/unit/test_event_lane.py compares them message by message).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import socketio

from .jsonutil import SocketJSON, TolerantPacket

#: python-socketio's methods that the lane does the work of: when one is
#: replaced (on the instance or in a subclass), the lane stands aside
_WRAPPABLE = frozenset(
    {
        "_handle_eio_message",
        "_handle_event",
        "_handle_event_internal",
        "_trigger_event",
        "_send_packet",
    }
)
_LOGGERS = (logging.Logger, logging.LoggerAdapter)

#: an ack id as python-socketio reads it (at most 99 ASCII digits here),
#: then the JSON array of the event
_ACK_ID = re.compile(r"[0-9]{0,99}(?=\[)")


class EventLane:
    """python-engineio's ``message`` handler for a python-socketio server.

    Falls back to ``server._handle_eio_message`` for anything but the common
    case above. Install it with :func:`install`.
    """

    def __init__(self, server: socketio.Server) -> None:
        self.server = server
        self.fallback = server._handle_eio_message
        self.loads = server.packet_class.json.loads
        self.dumps = server.packet_class.json.dumps

    def __call__(self, eio_sid: str, data: Any) -> None:
        server = self.server
        logger = server.logger
        if (
            type(data) is not str
            or data[:2] != "2/"  # an EVENT to a namespace other than "/"
            or server.async_handlers
            or eio_sid in server._binary_packet  # the attachments of a binary event
            # Wrapped on the instance: Flask-SocketIO's test client listens
            # on _send_packet, the Admin UI's development mode on _trigger_event.
            or not _WRAPPABLE.isdisjoint(vars(server))
            # python-socketio logs each event (and takes any object as logger)
            or not isinstance(logger, _LOGGERS)
            or logger.isEnabledFor(logging.INFO)
        ):
            return self.fallback(eio_sid, data)
        comma = data.find(",", 2)
        namespace = data[1:comma]
        handler = server.namespace_handlers.get(namespace)
        if (
            comma < 0
            or handler is None
            or namespace == "/"  # its ACK is written without the namespace
            or namespace in server.handlers
            or "*" in server.handlers
            or "?" in namespace
        ):
            return self.fallback(eio_sid, data)
        ack_id = _ACK_ID.match(data, comma + 1)
        if ack_id is None:
            return self.fallback(eio_sid, data)
        try:
            event = self.loads(data[ack_id.end() :])
        except (ValueError, RecursionError):
            return self.fallback(eio_sid, data)  # TolerantPacket's answer to bad JSON
        if not (type(event) is list and event and type(event[0]) is str):
            return self.fallback(eio_sid, data)
        manager = server.manager
        sid = manager.sid_from_eio_sid(eio_sid, namespace)
        if not manager.is_connected(sid, namespace):
            return self.fallback(eio_sid, data)  # python-socketio warns and drops it
        result = handler.trigger_event(event[0], sid, *event[1:])
        if result != server.not_handled and ack_id.end() > comma + 1:
            self._ack(eio_sid, namespace, data[comma + 1 : ack_id.end()], result)

    def _ack(self, eio_sid: str, namespace: str, ack_id: str, result: Any) -> None:
        # What _handle_event_internal answers, and ACK Packet.encode() gives.
        args = [] if result is None else list(result) if isinstance(result, tuple) else [result]
        server = self.server
        try:
            body = self.dumps(args, separators=(",", ":"))
        except TypeError:  # bytes in the answer: a binary ack with attachments
            server._send_packet(
                eio_sid,
                server.packet_class(
                    socketio.packet.ACK, namespace=namespace, id=int(ack_id), data=args
                ),
            )
            return
        text = f"3{namespace},{int(ack_id)}{body}"
        sock = server.eio.sockets.get(eio_sid)
        if getattr(sock, "direct", False):  # the transport's socket, writing directly
            sock.send_message(text)
        else:
            server.eio.send(eio_sid, text)


def install(server: socketio.Server) -> EventLane | None:
    """Make an :class:`EventLane` ``server``'s Engine.IO message handler.

    Only with progresscast's packet class (jsonutil.TolerantPacket and its
    JSON): its JSON refuses bytes with a TypeError, which is how the lane
    spots a binary ack. Returns None, installing nothing, for another packet
    class or a server class that replaces python-socketio's dispatch.
    """
    packet_class = server.packet_class
    if not (issubclass(packet_class, TolerantPacket) and packet_class.json is SocketJSON):
        return None
    if any(
        getattr(type(server), name) is not getattr(socketio.Server, name) for name in _WRAPPABLE
    ):
        return None  # a subclass does its own dispatch
    lane = EventLane(server)
    server.eio.on("message", lane)
    return lane

"""Engine.IO websocket connections with no green thread of their own.

python-engineio gives every websocket connection three green threads: the
reader (the WSGI request), a writer that takes packets off a queue and a
pinger that sleeps ``ping_interval`` between pings. Every delivery goes
through the queue and wakes the writer, which then frames the text again for
that one client. At 1,000 clients and 10,000 deliveries a second that hop was
most of the server's time, and at 10,000 connections the green threads (each
with its own stack and Python data stack) were most of the memory
(bench/memory_probe.py; docs/benchmarks.md).

With eventlet, once the websocket is open, :class:`DirectSocket` does it all
without a green thread of its own:

* a packet is framed once and written straight to the (non-blocking) socket;
  a broadcast (:func:`broadcast`) frames its packet once for all clients;
* what the kernel does not take at once waits in a per-connection backlog
  that a short-lived green thread drains; a client whose backlog passes
  ``max_backlog`` bytes is disconnected (it resumes from its last ``seq``
  when it reconnects) instead of growing the server without bound;
* the reader is parked in eventlet's hub (:meth:`DirectSocket._park`); what
  the client sends is parsed by wsproto and handled, in order, by a green
  thread that lives only while there is something to handle;
* one :class:`Pinger` per server sends every connection's pings.

Other async modes (gevent, threading), eventlet's own server (``socketio.run``
shuts the connection down when the request ends), TLS terminated by gunicorn
itself, websocket compression and long-polling keep python-engineio's own
path; the pinger serves them all. Frames stay in order: once a backlog exists, every
later frame queues behind it.
"""

from __future__ import annotations

import contextlib
import logging
import socket as _socket
import struct
import sys
import time
import weakref
from collections import deque
from typing import Any

import engineio
from engineio import packet as eio_packet

log = logging.getLogger(__name__)

#: bytes a slow client may have waiting before it is disconnected
DEFAULT_MAX_BACKLOG = 4 * 2**20
#: the pinger sends due pings in rounds at most this far apart (seconds)
PING_ROUND = 0.25


def text_frame(data: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, final websocket frame (RFC 6455 §5.2) holding ``data``:
    text by default, ``opcode=0x2`` for binary."""
    n = len(data)
    first = 0x80 | opcode
    if n <= 125:
        return struct.pack("!BB", first, n) + data
    if n <= 0xFFFF:
        return struct.pack("!BBH", first, 126, n) + data
    return struct.pack("!BBQ", first, 127, n) + data


def packet_frame(encoded: str | bytes) -> bytes:
    """The websocket frame of an encoded Engine.IO packet (binary ones are bytes)."""
    if isinstance(encoded, bytes):
        return text_frame(encoded, 0x2)
    return text_frame(encoded.encode())


CLOSE_FRAME = b"\x88\x02\x03\xe8"  # websocket close, status 1000


#: set in the environ by :class:`EventletInput`: the request came from
#: gunicorn, which only closes its copy of the socket when the request ends
#: (eventlet's own server, ``socketio.run``, shuts the connection down)
PARKABLE = "progresscast.parkable"


def _plain_eventlet_websocket(ws: Any) -> bool:
    """eventlet's RFC 6455 websocket on a plain (not TLS) socket, no
    compression, served by gunicorn."""
    module = sys.modules.get("eventlet.websocket")
    return (
        module is not None
        and isinstance(ws, module.RFC6455WebSocket)
        and ws.environ.get(PARKABLE, False)
        and getattr(ws.socket, "fd", None) is not None  # GreenSSLSocket has none
        and not ws.extensions  # permessage-deflate: frames differ per connection
    )


class DirectSocket(engineio.socket.Socket):
    """An Engine.IO socket that reads and writes its websocket itself (eventlet).

    Instances start as python-engineio sockets (see :class:`DirectSockets`);
    the class-level defaults below are their state until the websocket opens.
    """

    direct = False  # frames go straight to the socket
    max_backlog = DEFAULT_MAX_BACKLOG
    _sock: Any = None  # our green socket (a dup of the request's)
    _raw: Any = None  # the non-blocking OS socket under it
    _backlog: deque | None = None
    _backlog_bytes = 0
    _sock_closed = False
    _listener: Any = None  # the hub's READ listener
    _frames: Any = None  # wsproto's frame parser
    _message_parts: list | None = None  # a message arriving in parts
    _message_bytes = 0
    _inbox: deque | None = None  # complete messages waiting for the receiver
    _pinger: Pinger | None = None
    #: why the server cut the connection, when it did (metrics.py counts it)
    cut_reason: str | None = None

    # -- sending -------------------------------------------------------------

    def send(self, pkt: eio_packet.Packet) -> None:
        if not self.direct:
            return super().send(pkt)
        if not self.check_ping_timeout():
            return
        self._write(packet_frame(pkt.encode()))

    def write_frame(self, frame: bytes) -> None:
        """Send one websocket frame already built (a broadcast builds it once)."""
        self._write(frame)

    def _write(self, frame: bytes) -> None:
        if self._backlog:
            self._backlog.append(frame)
            self._backlog_bytes += len(frame)
            if self._backlog_bytes > self.max_backlog:
                log.warning(
                    "%s: client reads too slowly (%d bytes waiting), disconnecting",
                    self.sid,
                    self._backlog_bytes,
                )
                self.cut_reason = "slow_reader"
                self._abort()
            return
        try:
            sent = self._raw.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:  # the client is gone; the hub sees it and we close
            self._abort()
            return
        if sent < len(frame):
            rest = memoryview(frame)[sent:]
            self._backlog = deque([rest])
            self._backlog_bytes = len(rest)
            self.server.start_background_task(self._drain)

    def _drain(self) -> None:
        """Write the backlog as the client reads it (a green thread that
        lives only while there is a backlog; the socket's timeout bounds each
        wait)."""
        backlog = self._backlog
        try:
            while backlog:
                self._sock.sendall(backlog[0])
                self._backlog_bytes -= len(backlog.popleft())
        except OSError as exc:  # includes the timeout
            if isinstance(exc, TimeoutError):
                self.cut_reason = "slow_reader"
            self._abort()
        finally:
            self._backlog = None
            self._backlog_bytes = 0
            if self.closed:
                self._close_sock()

    def _abort(self) -> None:
        """Cut the connection without blocking the caller (often a broadcast):
        the hub sees the socket end and the Engine.IO socket closes as usual."""
        self.direct = False
        self._backlog = None
        with contextlib.suppress(OSError):
            self._raw.shutdown(_socket.SHUT_RDWR)

    def _close_sock(self) -> None:
        if self._sock_closed:
            return
        self._sock_closed = True
        self._unlisten()
        with contextlib.suppress(OSError):
            self._raw.send(CLOSE_FRAME)  # if the socket takes it now
        with contextlib.suppress(OSError):
            self._sock.close()

    # -- life cycle ----------------------------------------------------------

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        if self._raw is None:  # not (yet) our websocket: python-engineio's close
            return super().close(wait=wait, abort=abort, reason=reason)
        if self.closed or self.closing:
            return
        self.closing = True
        self.server._trigger_event(
            "disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT, run_async=False
        )
        if not abort and self.direct:
            self.send(eio_packet.Packet(eio_packet.CLOSE))
        self.closed = True
        self.direct = False
        if not self._backlog:  # otherwise the drainer closes after the last frame
            self._close_sock()

    def schedule_ping(self) -> None:
        # As python-engineio: a new ping only after the last one was answered.
        if self.last_ping:
            self.last_ping = None
            self._pinger.add(self)

    def ping_now(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(eio_packet.Packet(eio_packet.PING))

    def _websocket_handler(self, ws: Any) -> list:
        if not _plain_eventlet_websocket(ws):
            return super()._websocket_handler(ws)  # python-engineio's own path
        if self.connected:  # an upgrade from long-polling
            if not self._upgrade(ws) or self.closed:
                return []
        else:
            self.connected = True
            self.upgraded = True
        self._park(ws)
        # What was queued before the websocket opened (OPEN, the connect
        # ack...) goes first; nothing can switch green threads in between.
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is not None:
                self._write(packet_frame(pkt.encode()))
        self.direct = not self.closed
        self.server.logger.info("%s: websocket open, direct writes, reader parked", self.sid)
        return []

    def _upgrade(self, ws: Any) -> bool:
        """The probe exchange of an upgrade from long-polling (as python-engineio)."""
        self.upgrading = True  # sends wait in the queue meanwhile
        try:
            ws.socket.settimeout(self.server.ping_interval + self.server.ping_timeout)
            probe = eio_packet.Packet(encoded_packet=ws.wait())
            if probe.packet_type != eio_packet.PING or probe.data != "probe":
                return False
            ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            upgrade = eio_packet.Packet(encoded_packet=ws.wait())
            if upgrade.packet_type != eio_packet.UPGRADE:
                return False
            self.upgraded = True
            return True
        except Exception:
            return False
        finally:
            self.upgrading = False

    # -- reading: parked in the hub, no green thread while the client is quiet

    def _park(self, ws: Any) -> None:
        """Hand the connection from its request green thread to eventlet's hub.

        A copy of the socket (``dup``) outlives the WSGI request, which then
        ends: gunicorn closes its copy, eventlet's websocket object is let go
        without a closing frame, and the green thread with its stacks is
        freed. The hub calls :meth:`_on_readable` when the client sends
        something; wsproto turns the bytes into websocket messages.
        """
        from eventlet import hubs
        from wsproto.connection import Connection, ConnectionType

        raw = ws.socket.fd.dup()
        hubs.notify_opened(raw.fileno())  # forget listeners of a recycled fd number
        green = type(ws.socket)(raw)
        # Bounds the drainer's waits on a client that stopped reading.
        green.settimeout(self.server.ping_interval + self.server.ping_timeout)
        self._sock, self._raw = green, green.fd
        self._frames = Connection(ConnectionType.SERVER)
        self._message_parts = []
        self._inbox = deque()
        hub = hubs.get_hub()
        self._listener = hub.add(
            hub.READ, raw.fileno(), self._on_readable, self._on_read_error, self._on_fd_reused
        )
        ws.websocket_closed = True  # the connection goes on: no closing frame

    def _on_readable(self, fileno: int) -> None:
        # Runs in the hub: nothing here may block; the work is handed on.
        try:
            ended = self._read_parked()
        except Exception:  # never let one connection's bytes upset the hub
            self.server.logger.exception("%s: websocket read failed", self.sid)
            ended = True
        if ended:
            self._unlisten()
        if self._inbox or ended:
            if ended:
                self._inbox.append(None)  # after what came before it
            self._start_receiver()

    def _read_parked(self) -> bool:
        """Read what the client sent; queue its messages. True when the
        connection ends (closed by the client, broken, over-size)."""
        try:
            data = self._raw.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not data:
            return True
        self._frames.receive_data(data)
        for event in self._frames.events():
            kind = type(event).__name__
            if kind in ("TextMessage", "BytesMessage"):
                self._message_parts.append(event.data)
                self._message_bytes += len(event.data)
                if self._message_bytes > self.server.max_http_buffer_size:
                    self.server.logger.info("%s: packet over max_http_buffer_size", self.sid)
                    self.cut_reason = "too_large"
                    return True
                if event.message_finished:
                    parts, self._message_parts, self._message_bytes = self._message_parts, [], 0
                    self._inbox.append(parts[0] if len(parts) == 1 else parts[0][:0].join(parts))
            elif kind == "Ping":
                self._write(self._frames.send(event.response()))
            elif kind == "CloseConnection":
                return True
        return False

    def _on_read_error(self, exc: BaseException) -> None:
        self._on_readable(-1)

    def _on_fd_reused(self) -> None:
        # The hub dropped our listener itself: the fd number now belongs to
        # another socket, so ours must not be written to or closed again.
        self._listener = None
        self._sock_closed = True
        self.direct = False
        self._inbox.append(None)
        self._start_receiver()

    def _unlisten(self) -> None:
        if self._listener is not None:
            from eventlet import hubs

            listener, self._listener = self._listener, None
            with contextlib.suppress(KeyError, ValueError):
                hubs.get_hub().remove(listener)

    _receiving = False

    def _start_receiver(self) -> None:
        # One receiver at a time, so messages are handled in the order sent.
        if not self._receiving:
            self._receiving = True
            self.server.start_background_task(self._receive_inbox)

    def _receive_inbox(self) -> None:
        """Hand queued messages to Engine.IO in order; ``None`` means the
        connection ended."""
        try:
            while self._inbox:
                data = self._inbox.popleft()
                if data is None or not self._receive_one(data):
                    self._inbox.clear()
                    self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
                    return
        finally:
            self._receiving = False

    def _receive_one(self, data: str | bytes) -> bool:
        if self.closed:
            return False
        try:
            self.receive(eio_packet.Packet(encoded_packet=data))
        except engineio.exceptions.UnknownPacketError:
            pass
        except engineio.exceptions.SocketIsClosedError:
            return False
        except Exception:
            self.server.logger.exception("%s: receive error", self.sid)
            return False
        return True


class Pinger:
    """Sends every connection's pings from one green thread.

    All sockets share one ``ping_interval``, so the order they ask in is the
    order they fall due: a deque is the whole schedule. It holds weak
    references, so a client that left is freed at once, not at its next ping.
    """

    def __init__(self, server: engineio.Server) -> None:
        self.server = server
        self.due: deque[tuple[float, weakref.ref[DirectSocket]]] = deque()
        self.running = False

    def add(self, sock: DirectSocket) -> None:
        self.due.append((time.monotonic() + self.server.ping_interval, weakref.ref(sock)))
        if not self.running:
            self.running = True
            self.server.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, ref = self.due.popleft()
                sock = ref()
                if sock is None:
                    continue
                try:
                    sock.ping_now()
                except Exception:  # one broken socket must not stop the pings
                    self.server.logger.exception("ping failed")
            wait = self.due[0][0] - now if self.due else self.server.ping_interval
            self.server.sleep(min(max(wait, PING_ROUND / 10), PING_ROUND))


class DirectSockets(dict):
    """``engineio.Server.sockets``, turning each new socket into a DirectSocket.

    python-engineio has no hook for its socket class, and builds the socket
    just before storing it here, so this is where it is swapped.
    """

    def __init__(self, server: engineio.Server, max_backlog: int) -> None:
        super().__init__()
        self.pinger = Pinger(server)
        self.max_backlog = max_backlog

    def __setitem__(self, sid: str, sock: Any) -> None:
        if type(sock) is engineio.socket.Socket:
            sock.__class__ = DirectSocket
            sock.max_backlog = self.max_backlog
            sock._pinger = self.pinger
        super().__setitem__(sid, sock)


def install_direct_websockets(eio: engineio.Server, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
    """Give ``eio`` (``SocketIO().server.eio``) direct websocket sockets."""
    if eio.sockets:
        raise RuntimeError("install direct websockets before the first connection")
    eio.sockets = DirectSockets(eio, max_backlog)


def broadcast(eio: engineio.Server, eio_sids, text: str, fallback) -> None:
    """Send one encoded Engine.IO packet to many sockets, framed once.

    ``fallback(eio_sid)`` sends to a socket that is not writing directly
    (long-polling, upgrading, another async mode, gone).
    """
    frame = None
    sockets = eio.sockets
    for eio_sid in eio_sids:
        sock = sockets.get(eio_sid)
        if sock is not None and sock.direct:
            if frame is None:
                frame = packet_frame(text)
            sock.write_frame(frame)
        else:
            fallback(eio_sid)


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

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response):
        sock = environ.pop("gunicorn.socket", None)
        if sock is not None and "eventlet.input" not in environ:
            environ["eventlet.input"] = self._Input(sock)
            environ[PARKABLE] = True
        return self.app(environ, start_response)

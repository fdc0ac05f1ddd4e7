"""Engine.IO websocket connections that cost one greenlet and write directly.

python-engineio gives every websocket connection three green threads: the
reader (the WSGI request), a writer that takes packets off a queue and a
pinger that sleeps ``ping_interval`` between pings. Every delivery goes
through the queue and wakes the writer, which then frames the text again for
that one client. At 1,000 clients and 10,000 deliveries a second that hop is
most of the server's time, and at 10,000 connections the two extra green
threads (each with its own stack and Python data stack) are most of the
memory (bench/memory_probe.py; docs/benchmarks.md).

With eventlet, :class:`DirectSocket` keeps the reader and drops the rest:

* a packet is framed once and written straight to the (non-blocking) socket;
  a broadcast (:func:`broadcast`) frames its packet once for all clients;
* what the kernel does not take at once waits in a per-connection backlog
  that a short-lived green thread drains; a client whose backlog passes
  ``max_backlog`` bytes is disconnected (it resumes from its last ``seq``
  when it reconnects) instead of growing the server without bound;
* one :class:`Pinger` per server sends every connection's pings.

Other async modes (gevent, threading) and long-polling keep python-engineio's
own path; the pinger serves them all. Frames stay in order: once a backlog
exists, every later frame queues behind it.
"""

from __future__ import annotations

import contextlib
import logging
import socket as _socket
import struct
import time
from collections import deque
from typing import Any

import engineio
from engineio import packet as eio_packet

log = logging.getLogger(__name__)

#: bytes a slow client may have waiting before it is disconnected
DEFAULT_MAX_BACKLOG = 4 * 2**20
#: the pinger sends due pings in rounds at most this far apart (seconds)
PING_ROUND = 0.25


def text_frame(data: bytes) -> bytes:
    """An unmasked, final websocket text frame (RFC 6455 §5.2) holding ``data``."""
    n = len(data)
    if n <= 125:
        return struct.pack("!BB", 0x81, n) + data
    if n <= 0xFFFF:
        return struct.pack("!BBH", 0x81, 126, n) + data
    return struct.pack("!BBQ", 0x81, 127, n) + data


class DirectSocket(engineio.socket.Socket):
    """An Engine.IO socket that writes its websocket frames itself (eventlet).

    Instances start as python-engineio sockets (see :class:`DirectSockets`);
    the class-level defaults below are their state until the websocket opens.
    """

    direct = False  # frames go straight to the socket
    max_backlog = DEFAULT_MAX_BACKLOG
    _ws: Any = None
    _sock: Any = None  # the green socket, for the backlog drainer
    _raw: Any = None  # the non-blocking OS socket under it
    _backlog: deque | None = None
    _backlog_bytes = 0
    _compressed = False  # permessage-deflate: frames are per connection
    _ws_closed = False
    park = True  # readers parked in the hub (see _park)
    _listener: Any = None
    _frames: Any = None  # wsproto's frame parser, when parked
    _message_parts: list | None = None  # a message arriving in parts, when parked
    _message_bytes = 0
    _pinger: Pinger | None = None

    # -- sending -------------------------------------------------------------

    def send(self, pkt: eio_packet.Packet) -> None:
        if not self.direct:
            return super().send(pkt)
        if not self.check_ping_timeout():
            return
        self.write_text(pkt.encode())

    def write_text(self, text: str, frame: bytes | None = None) -> None:
        """Send one Engine.IO packet, already encoded; ``frame`` is its
        websocket frame when the caller has it (a broadcast)."""
        if self._compressed:
            frame = self._ws._pack_message(text)
        elif frame is None:
            frame = text_frame(text.encode())
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
                self._abort()
            return
        try:
            sent = self._raw.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:  # the client is gone; the reader sees it and closes
            self._abort()
            return
        if sent < len(frame):
            rest = memoryview(frame)[sent:]
            self._backlog = deque([rest])
            self._backlog_bytes = len(rest)
            self.server.start_background_task(self._drain)

    def _drain(self) -> None:
        """Write the backlog as the client reads it (a green thread that
        lives only while there is a backlog)."""
        backlog = self._backlog
        try:
            while backlog:
                self._sock.sendall(backlog[0])
                self._backlog_bytes -= len(backlog.popleft())
        except OSError:
            self._abort()
        finally:
            self._backlog = None
            self._backlog_bytes = 0
            if self.closed:
                self._close_ws()

    def _abort(self) -> None:
        """Cut the connection without blocking the caller (often a broadcast):
        the reader wakes up and closes the Engine.IO socket as usual."""
        self.direct = False
        self._backlog = None
        with contextlib.suppress(OSError):
            self._raw.shutdown(_socket.SHUT_RDWR)

    def _close_ws(self) -> None:
        if self._ws_closed:
            return
        self._ws_closed = True
        if self._ws is None:  # parked
            self._unlisten()
            with contextlib.suppress(OSError):
                self._write_close_frame()
                self._sock.close()
            return
        with contextlib.suppress(OSError):
            self._ws.close()

    def _write_close_frame(self) -> None:
        # A websocket close frame (1000), if the socket takes it now.
        with contextlib.suppress(BlockingIOError):
            self._raw.send(b"\x88\x02\x03\xe8")

    # -- life cycle ----------------------------------------------------------

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        if not self.direct:
            return super().close(wait=wait, abort=abort, reason=reason)
        if self.closed or self.closing:
            return
        self.closing = True
        self.server._trigger_event(
            "disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT, run_async=False
        )
        if not abort:
            self.send(eio_packet.Packet(eio_packet.CLOSE))
        self.closed = True
        self.direct = False
        if not self._backlog:  # otherwise the drainer closes after the last frame
            self._close_ws()

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
        raw = getattr(getattr(ws, "socket", None), "fd", None)
        if raw is None or not hasattr(ws, "_pack_message"):
            return super()._websocket_handler(ws)  # not eventlet: the stock path
        ws.socket.settimeout(self.server.ping_interval + self.server.ping_timeout)
        if self.connected:  # an upgrade from long-polling
            if not self._upgrade(ws):
                return []
        else:
            self.connected = True
            self.upgraded = True
        self._ws, self._sock, self._raw = ws, ws.socket, raw
        self._compressed = bool(getattr(ws, "extensions", None))
        # What was queued before the websocket opened (OPEN, the connect
        # ack...) goes first; nothing can switch green threads in between.
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is not None:
                self.write_text(pkt.encode())
        self.direct = not self.closed
        self.server.logger.info("%s: websocket open, direct writes", self.sid)
        if self.direct and self.park and not self._compressed:
            self._park(ws)
            return []
        try:
            self._read(ws)
        finally:
            self.direct = False
            if not self._backlog:
                self._close_ws()
            self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        return []

    # -- parked: no green thread while the client is quiet ---------------------

    def _park(self, ws: Any) -> None:
        """Hand the connection from its green thread to eventlet's hub.

        A copy of the socket (``dup``) outlives the WSGI request, which then
        ends: gunicorn closes its copy, eventlet's websocket object is let go
        without a closing frame, and the green thread with its stacks is
        freed. The hub calls :meth:`_on_readable` when the client sends
        something; wsproto turns the bytes into websocket messages.
        """
        from eventlet import hubs
        from wsproto.connection import Connection, ConnectionType

        green = type(ws.socket)(self._raw.dup())
        self._sock, self._raw = green, green.fd
        self._frames = Connection(ConnectionType.SERVER)
        self._message_parts = []
        hub = hubs.get_hub()
        self._listener = hub.add(
            hub.READ, self._raw.fileno(), self._on_readable, self._on_read_error, self._hangup
        )
        ws.websocket_closed = True  # the connection goes on: no closing frame
        self._ws = None

    def _on_readable(self, fileno: int) -> None:
        # Runs in the hub: nothing here may block; the work is handed on.
        try:
            self._read_parked()
        except Exception:  # never let one connection's bytes upset the hub
            self.server.logger.exception("%s: websocket read failed", self.sid)
            self._hangup()

    def _read_parked(self) -> None:
        try:
            data = self._raw.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self._hangup()
        self._frames.receive_data(data)
        messages = []
        for event in self._frames.events():
            kind = type(event).__name__
            if kind in ("TextMessage", "BytesMessage"):
                self._message_parts.append(event.data)
                self._message_bytes += len(event.data)
                if self._message_bytes > self.server.max_http_buffer_size:
                    self.server.logger.info("%s: packet over max_http_buffer_size", self.sid)
                    return self._hangup()
                if event.message_finished:
                    parts, self._message_parts, self._message_bytes = self._message_parts, [], 0
                    messages.append(parts[0] if len(parts) == 1 else parts[0][:0].join(parts))
            elif kind == "Ping":
                self._write(self._frames.send(event.response()))
            elif kind == "CloseConnection":
                return self._hangup()
        if messages:
            self.server.start_background_task(self._receive_all, messages)
        return None

    def _on_read_error(self, exc: BaseException) -> None:
        self._hangup()

    def _hangup(self, *args: Any) -> None:
        """The client left (or broke the protocol): close, off the hub."""
        self._unlisten()
        if not self.closed:
            self.server.start_background_task(
                self.close, wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE
            )

    def _unlisten(self) -> None:
        if self._listener is not None:
            from eventlet import hubs

            hubs.get_hub().remove(self._listener)
            self._listener = None

    def _receive_all(self, messages: list) -> None:
        for data in messages:
            if self.closed:
                return
            if not self._receive_one(data):
                self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
                return

    def _receive_one(self, data: str | bytes) -> bool:
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

    def _read(self, ws: Any) -> None:
        limit = self.server.max_http_buffer_size
        while True:
            try:
                data = ws.wait()
            except Exception as exc:
                if not self.closed:
                    self.server.logger.info("%s: websocket error %r, closing", self.sid, exc)
                return
            if data is None:  # the client closed it
                return
            if len(data) > limit:
                self.server.logger.info("%s: packet over max_http_buffer_size", self.sid)
                return
            try:
                self.receive(eio_packet.Packet(encoded_packet=data))
            except engineio.exceptions.UnknownPacketError:
                pass
            except engineio.exceptions.SocketIsClosedError:
                return
            except Exception:
                self.server.logger.exception("%s: receive error", self.sid)
                return

    def _upgrade(self, ws: Any) -> bool:
        """The probe exchange of an upgrade from long-polling (as python-engineio)."""
        self.upgrading = True  # sends wait in the queue meanwhile
        try:
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


class Pinger:
    """Sends every connection's pings from one green thread.

    All sockets share one ``ping_interval``, so the order they ask in is the
    order they fall due: a deque is the whole schedule.
    """

    def __init__(self, server: engineio.Server) -> None:
        self.server = server
        self.due: deque[tuple[float, DirectSocket]] = deque()
        self.running = False

    def add(self, sock: DirectSocket) -> None:
        self.due.append((time.monotonic() + self.server.ping_interval, sock))
        if not self.running:
            self.running = True
            self.server.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, sock = self.due.popleft()
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
                frame = text_frame(text.encode())
            sock.write_text(text, frame)
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
        return self.app(environ, start_response)

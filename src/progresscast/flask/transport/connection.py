"""Engine.IO websocket connections with no green thread of their own.

python-engineio gives every websocket connection three green threads: the
reader (the WSGI request), a writer that takes packets off a queue and a
pinger that sleeps ``ping_interval`` between pings. Every delivery goes
through the queue and wakes the writer, which then frames the text again for
that one client. At 1,000 clients and 10,000 deliveries a second that hop was
most of the server's time, and at 10,000 connections the green threads (each
with its own stack and Python data stack) were most of the memory
(bench/memory_probe.py; docs/benchmarks.md).

Once the websocket is open, :class:`DirectSocket` does it all without a
green thread of its own, under any loop that has a driver (drivers/):

* a packet is framed once and written straight to the (non-blocking) socket;
  a broadcast (:func:`broadcast`) frames its packet once for all clients;
* what the kernel does not take at once waits in a per-connection backlog
  that a short-lived green thread drains; a client whose backlog passes
  ``max_backlog`` bytes is disconnected (it resumes from its last ``seq``
  when it reconnects) instead of growing the server without bound;
* the reader is parked in the hub (:meth:`DirectSocket._park`): the driver
  calls back when the client sends something, :class:`FrameReader` parses it, and a
  green thread that lives only while there is something to handle hands
  the messages to Engine.IO in order;
* one :class:`Pinger` per server sends every connection's pings.

Nothing here calls a hub: that is the driver's part. Async modes without a
driver (threading), servers that shut the connection down when the request
ends (``socketio.run``), TLS terminated by gunicorn itself, websocket
compression and long-polling keep python-engineio's own path; the pinger
serves them all. Frames stay in order: once a backlog exists, every later
frame queues behind it.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import queue
import socket as _socket_module
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

import engineio
from engineio import packet as eio_packet

from .frames import FrameReader, MessageTooLarge, packet_frame

if TYPE_CHECKING:
    from .drivers import Driver

log = logging.getLogger(__name__)

#: bytes a slow client may have waiting before it is disconnected
DEFAULT_MAX_BACKLOG = 4 * 2**20
#: the pinger sends due pings in rounds at most this far apart (seconds)
PING_ROUND = 0.25
#: complete messages a connection may have waiting for its handler (which
#: may block, e.g. on the store) before it is cut off as a flood
MAX_INBOX = 1000
CLOSE_PACKET_FRAME = packet_frame(eio_packet.Packet(eio_packet.CLOSE).encode())


class _Discard:
    """The queue of every parked socket: what is put there has no reader
    (sends once the socket stopped writing directly, the closing ``None``)."""

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise queue.Empty  # what eventlet's and gevent's queues raise too

    get_nowait = get

    def task_done(self) -> None:
        pass

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def join(self) -> None:
        pass


DISCARD = _Discard()


class DirectSocket(engineio.socket.Socket):
    """An Engine.IO socket that reads and writes its websocket itself.

    Instances start as python-engineio sockets (see :class:`DirectSockets`);
    the class-level defaults below are their state until the websocket opens.
    """

    direct = False  # frames go straight to the socket
    max_backlog = DEFAULT_MAX_BACKLOG
    _driver: Driver | None = None  # None: python-engineio's path only (threading)
    _raw: Any = None  # our non-blocking OS socket (a copy of the request's)
    _fd = -1
    _backlog: deque | None = None
    _backlog_bytes = 0
    _sock_closed = False
    _watch: Any = None  # the driver's read watch
    _frames: FrameReader | None = None  # the client's frames
    _inbox: deque | None = None  # complete messages waiting for the receiver
    _receiving = False
    _pinger: Pinger | None = None
    _receivers: Receivers | None = None
    #: python-engineio's "message" handler, when it runs in the receiving
    #: green thread (``async_handlers`` off): MESSAGE packets go straight to it
    _on_message: Any = None
    #: why the server cut the connection, when it did (metrics.py counts it)
    cut_reason: str | None = None

    # -- sending -------------------------------------------------------------

    def send(self, pkt: eio_packet.Packet) -> None:
        if not self.direct:
            return super().send(pkt)
        if not self.check_ping_timeout():
            return
        self._write(packet_frame(pkt.encode()))

    def send_message(self, text: str) -> None:
        """Send ``text`` as an Engine.IO MESSAGE: what ``send(Packet(MESSAGE,
        data=text))`` does, without building the packet."""
        if not self.direct:
            return super().send(eio_packet.Packet(eio_packet.MESSAGE, data=text))
        if not self.check_ping_timeout():
            return
        self._write(packet_frame("4" + text))

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
            self._driver.spawn(self._drain)

    def _drain(self) -> None:
        """Write the backlog as the client reads it (a green thread that
        lives only while there is a backlog; each wait is bounded by
        ``ping_interval + ping_timeout``)."""
        backlog = self._backlog
        timeout = self.server.ping_interval + self.server.ping_timeout
        try:
            while backlog:
                frame = backlog[0]
                try:
                    sent = self._raw.send(frame)
                except BlockingIOError:
                    sent = 0
                self._backlog_bytes -= sent
                if sent == len(frame):
                    backlog.popleft()
                else:
                    backlog[0] = memoryview(frame)[sent:]
                    self._driver.wait_writable(self._fd, timeout)
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
            self._raw.shutdown(_socket_module.SHUT_RDWR)

    def _close_sock(self) -> None:
        if self._sock_closed:
            return
        self._sock_closed = True
        self._unwatch()
        with contextlib.suppress(OSError):
            self._raw.send(self._frames.closing_frame())  # if the socket takes it now
        with contextlib.suppress(OSError):
            self._raw.close()

    # -- life cycle ----------------------------------------------------------

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        if self._raw is None:  # not (yet) our websocket: python-engineio's close
            return super().close(wait=wait, abort=abort, reason=reason)
        if self.closed or self.closing:
            return
        say_goodbye = not abort and self.direct
        # python-engineio's close with abort: the disconnect event, then
        # closed; it writes nothing (its queue has no reader any more).
        super().close(wait=False, abort=True, reason=reason)
        if say_goodbye:
            self._write(CLOSE_PACKET_FRAME)
        self.direct = False
        if not self._backlog:  # otherwise the drainer closes after the last frame
            self._close_sock()

    def schedule_ping(self) -> None:
        # As python-engineio: a new ping only after the last one was answered.
        if self.last_ping:
            self.last_ping = None
            self._pinger.add(self)

    def ping_now(self) -> None:
        """Send the ping that has fallen due (the pinger calls this)."""
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(eio_packet.Packet(eio_packet.PING))

    def _websocket_handler(self, ws: Any) -> list:
        driver = self._driver
        if driver is None or not driver.parkable(ws):
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
        # Nothing reads the queue of a parked socket (no writer thread; a
        # polling request is refused once upgraded): one shared sink instead
        # of a queue per connection.
        self.queue = DISCARD
        self.direct = not self.closed
        if self._inbox:  # sent by the client while the request still read
            self._start_receiver()
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
        """Hand the connection from its request green thread to the hub.

        The driver gives us a copy of the socket (``dup``) that outlives the
        WSGI request, which then ends: the server closes its copy, the
        websocket object is let go without a closing frame, and the green
        thread with its stacks is freed. The driver calls
        :meth:`_on_readable` when the client sends something; a
        :class:`FrameReader` turns the bytes into websocket messages.
        """
        parked = self._driver.park(ws)
        # The C socket type: the same under every loop's monkey patching.
        raw = _socket.socket(fileno=parked.fd)
        raw.setblocking(False)
        self._raw, self._fd = raw, parked.fd
        self._frames = parked.frames or FrameReader(int(self.server.max_http_buffer_size))
        self._inbox = deque(parked.messages)
        if not self.server.async_handlers:
            self._on_message = self.server.handlers.get("message")
        self._watch = self._driver.watch_readable(parked.fd, self._on_readable, self._on_fd_lost)

    def _on_readable(self, *_: Any) -> None:
        # Runs in the hub: nothing here may block; the work is handed on.
        try:
            ended = self._read_parked()
        except Exception:  # never let one connection's bytes upset the hub
            self.server.logger.exception("%s: websocket read failed", self.sid)
            ended = True
        if ended:
            self._unwatch()
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
        frames = self._frames
        messages, replies = frames.feed(data)
        for reply in replies:
            self._write(reply)
        self._inbox.extend(messages)
        if isinstance(frames.error, MessageTooLarge):
            self.server.logger.info("%s: packet over max_http_buffer_size", self.sid)
            self.cut_reason = "too_large"
        elif frames.error is not None:
            self.server.logger.info("%s: websocket protocol error: %s", self.sid, frames.error)
        elif len(self._inbox) > MAX_INBOX:
            self.server.logger.info("%s: over %d messages waiting", self.sid, MAX_INBOX)
            self.cut_reason = "flood"
            return True
        return frames.closed

    def _on_fd_lost(self) -> None:
        # The hub dropped our watch itself: the fd number now belongs to
        # another socket, so ours must not be written to or closed again.
        self._watch = None
        self._sock_closed = True
        self.direct = False
        self._inbox.append(None)
        self._start_receiver()

    def _unwatch(self) -> None:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            self._driver.unwatch(watch)

    def _start_receiver(self) -> None:
        # One receiver at a time, so messages are handled in the order sent.
        if not self._receiving:
            self._receiving = True
            self._receivers.add(self)

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
        on_message = self._on_message
        if on_message is not None and type(data) is str and data[:1] == "4":
            # A MESSAGE, nearly every packet a client sends: what
            # Socket.receive and Server._trigger_event would do with it,
            # without building an Engine.IO packet and a closure for it.
            try:
                on_message(self.sid, data[1:])
            except BaseException:  # as _trigger_event (a bare except): logged, the connection stays
                self.server.logger.exception("message handler error")
            return True
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
    It runs in every async mode (python-engineio's own ``sleep`` and
    background task), threads included.
    """

    def __init__(self, server: engineio.Server) -> None:
        self.server = server
        # (when it falls due, the socket), in that order
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


class Receivers:
    """Green threads that hand parked sockets' messages to Engine.IO.

    A green thread per message cost a spawn, a timer and two switches each
    (a request flood: 19,000 at once). Instead the sockets with something
    to handle wait in one deque, and a green thread is started only when
    none is about to run: the hub calls :meth:`add` only while every
    receiver is either done or blocked in a handler (the store, Redis), so
    one that blocks never holds up the sockets behind it; the next one
    takes them. Each socket is in the deque at most once (its
    ``_receiving`` flag), so its messages keep their order.
    """

    def __init__(self, driver: Driver | None) -> None:
        self.driver = driver
        self.ready: deque[DirectSocket] = deque()
        self.starting = False  # a receiver was spawned and has not run yet

    def add(self, sock: DirectSocket) -> None:
        self.ready.append(sock)
        if not self.starting:
            self.starting = True
            self.driver.spawn(self._run)

    def _run(self) -> None:
        self.starting = False
        ready = self.ready
        try:
            while ready:
                sock = ready.popleft()
                try:
                    sock._receive_inbox()
                except Exception:  # one socket's failure must not strand the others
                    log.exception("%s: receive failed", sock.sid)
        finally:
            if ready and not self.starting:  # ended by more than an Exception: hand on
                self.starting = True
                self.driver.spawn(self._run)


class DirectSockets(dict):
    """``engineio.Server.sockets``, turning each new socket into a DirectSocket.

    python-engineio has no hook for its socket class, and builds the socket
    just before storing it here, so this is where it is swapped.
    """

    def __init__(self, server: engineio.Server, max_backlog: int, driver: Driver | None) -> None:
        super().__init__()
        self.pinger = Pinger(server)
        self.receivers = Receivers(driver)
        self.max_backlog = max_backlog
        self.driver = driver

    def __setitem__(self, sid: str, sock: Any) -> None:
        if type(sock) is engineio.socket.Socket:
            sock.__class__ = DirectSocket
            sock.max_backlog = self.max_backlog
            sock._pinger = self.pinger
            sock._receivers = self.receivers
            sock._driver = self.driver
        super().__setitem__(sid, sock)


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

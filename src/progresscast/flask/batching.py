"""Batched delivery for dashboards: ``watch_jobs {batch: true}``.

A dashboard watching 100 jobs that update 10 times a second would get 1,000
frames a second. A batching watcher joins ``<room>#batch`` instead of the
room itself; every ``BATCH_INTERVAL`` it gets one ``job_events`` frame,
``{events: [...]}``, holding every event of that interval in the order they
were emitted (each still with its own ``seq``, so resume works unchanged).

It lives in the Socket.IO client manager, below the Redis pub/sub layer, so
events from worker processes and from other instances are batched too, once
per server.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
from functools import partial
from typing import Any

import redis
import socketio
from engineio import packet as eio_packet
from socketio import packet

from progresscast.protocol import BATCH_EVENT, NAMESPACE, batched, is_batchable

from . import transport
from .in_order import JobOrder, job_event

#: the event name under which an admin command travels to every server
#: (:meth:`_Ours.admin`); also the room it is addressed to, which no
#: connection is in, so a server that does not know it delivers it to nobody
ADMIN_COMMAND = "progresscast:admin"


class Delivery:
    """This server's delivery of an emit to its own clients: each room's
    packet encoded and framed once for its websocket clients (transport/),
    and job events queued for the batched rooms.

    A component of our client managers, which call :meth:`emit` for every
    emit this server delivers; python-socketio's ``Manager.emit`` stays the
    plain path, called by name (not through ``super()``), so the managers
    do not depend on the order of their base classes.

    Each event reaches a connection once, whatever mix of rooms it is in: a
    batched watcher that also joined the job (``job:<id>``) or watches
    unbatched too got the event directly, so its batch leaves it out; one in
    two batched rooms (``user:<id>#batch`` and ``jobs:all#batch``) gets one
    frame holding each event once.
    """

    def __init__(self, manager: socketio.Manager) -> None:
        self.manager = manager
        # Events since the last flush, in emission order:
        # (namespace, event, the batched rooms it goes to, sids that got it directly)
        self._pending: list[tuple[str, Any, tuple[str, ...], frozenset[str]]] = []
        self._lock = threading.Lock()
        self._flusher_started = False

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, **kwargs):
        """Deliver to this server's clients in ``room``; queue job events for
        the batched rooms."""
        self.fanout(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback)
        if not isinstance(room, list) or not isinstance(data, dict) or "seq" not in data:
            return  # not a job event
        manager = self.manager
        if manager.sse is not None and namespace == NAMESPACE:
            # SSE streams get what this server's rooms get, in the same order
            manager.sse.publish(data, room)
        rooms_here = manager.rooms.get(namespace, {})
        targets = tuple(batched(r) for r in room if is_batchable(r) and batched(r) in rooms_here)
        if not targets:
            return
        plain = [rooms_here[r] for r in room if r in rooms_here]
        direct = frozenset(
            sid
            for target in targets
            for sid in rooms_here.get(target, ())
            if any(sid in members for members in plain)
        )
        with self._lock:
            self._pending.append((namespace, data, targets, direct))
            if not self._flusher_started:
                self._flusher_started = True
                manager.server.start_background_task(self._flush_forever)

    def fanout(self, event, data, namespace, room=None, skip_sid=None, callback=None) -> None:
        """Room delivery that encodes and frames a packet once for all its
        websocket clients, when the server has the transport."""
        manager = self.manager
        metrics = manager.metrics if namespace == NAMESPACE else None
        eio = manager.server.eio
        if callback is not None or not transport.is_installed(eio):
            if metrics is not None:
                skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
                metrics.delivered(
                    sum(sid not in skip for sid, _ in manager.get_participants(namespace, room))
                )
            socketio.Manager.emit(
                manager, event, data, namespace, room=room, skip_sid=skip_sid, callback=callback
            )
            return
        if namespace not in manager.rooms:
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        try:
            # binary=False: no walk over the data looking for bytes (python-
            # socketio's default); JSON cannot encode bytes, so data holding
            # any raises here and takes python-socketio's binary path.
            encoded = manager.server.packet_class(
                packet.EVENT, namespace=namespace, data=[event, *args], binary=False
            ).encode()
        except TypeError:
            socketio.Manager.emit(manager, event, data, namespace, room=room, skip_sid=skip_sid)
            return
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        message = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        eio_sids = [
            eio_sid for sid, eio_sid in manager.get_participants(namespace, room) if sid not in skip
        ]
        # The fallback sends as python-socketio does (Flask-SocketIO's test
        # client listens there).
        server = manager.server
        transport.broadcast(
            eio,
            eio_sids,
            message.encode(),
            lambda eio_sid: server._send_eio_packet(eio_sid, message),
        )
        if metrics is not None:
            metrics.delivered(len(eio_sids))

    def _flush_forever(self) -> None:
        server = self.manager.server
        while True:
            server.sleep(self.manager.batch_interval)
            try:
                self.flush()
            except Exception:  # a flush must never kill the flusher
                self.manager._get_logger().exception("could not deliver a job_events batch")

    def flush(self) -> None:
        """Send every batched room its ``job_events`` frame for the events
        queued since the last flush."""
        manager = self.manager
        with self._lock:
            pending, self._pending = self._pending, []
        by_room: dict[tuple[str, str], list[Any]] = {}
        for namespace, event, targets, _ in pending:
            for target in targets:
                by_room.setdefault((namespace, target), []).append(event)
        # Connections in more than one of these rooms, or that got some of
        # these events directly, get a frame of their own; the rest share
        # one frame per room, encoded once.
        rooms_of: dict[tuple[str, str], list[str]] = {}
        for namespace, room in by_room:
            for sid in manager.rooms.get(namespace, {}).get(room, ()):
                rooms_of.setdefault((namespace, sid), []).append(room)
        own_frame = {key for key, rooms in rooms_of.items() if len(rooms) > 1}
        own_frame.update((ns, sid) for ns, _, _, direct in pending for sid in direct)
        # socketio.Manager.emit: deliver here only (no re-batching, no publishing)
        delivered = 0
        for (namespace, room), events in by_room.items():
            members = manager.rooms.get(namespace, {}).get(room, ())
            skip = [sid for sid in members if (namespace, sid) in own_frame]
            delivered += len(members) - len(skip)
            socketio.Manager.emit(
                manager, BATCH_EVENT, {"events": events}, namespace, room=room, skip_sid=skip
            )
        for namespace, sid in own_frame:
            rooms = rooms_of.get((namespace, sid))
            if not rooms:
                continue  # left meanwhile
            events = [
                event
                for ns, event, targets, direct in pending
                if ns == namespace and sid not in direct and any(t in rooms for t in targets)
            ]
            if events:
                delivered += 1
                socketio.Manager.emit(manager, BATCH_EVENT, {"events": events}, namespace, room=sid)
        if manager.metrics is not None:
            manager.metrics.delivered(delivered)


class _Ours:
    """What both our client managers have: the settings the extension sets,
    their :class:`Delivery`, and admin commands. Plain attributes and
    methods, no ``super()`` calls: the manager classes call python-socketio
    by name."""

    batch_interval = 0.1
    #: the app's metrics (metrics.py), set by the extension: deliveries on
    #: ``/progress`` are counted there
    metrics = None
    #: the app's SSE streams (sse.py), set by the extension: every job event
    #: delivered here is handed to them too
    sse = None
    #: ``handler(command) -> int``: carries out an admin command on this
    #: server's connections (the extension's namespace, sockets.py)
    admin_handler = None
    delivery: Delivery

    def admin(self, command: dict[str, Any]) -> tuple[int, bool]:
        """Carry out an admin command (a JSON object: a notice to deliver,
        connections to drop) on this server's connections and, with a
        message queue, on every other server's. Returns how many of this
        server's connections it reached, and whether it was handed to every
        server (this one alone has no other)."""
        return self._admin_here(command), True

    def _admin_here(self, command: dict[str, Any]) -> int:
        handler = self.admin_handler
        return handler(command) if handler is not None else 0

    def flush(self) -> None:
        """Send the batched rooms what is queued for them now (:meth:`Delivery.flush`)."""
        self.delivery.flush()


class BatchingManager(_Ours, socketio.Manager):
    """One server, no message queue."""

    subscribed = True

    def __init__(self) -> None:
        socketio.Manager.__init__(self)
        self.delivery = Delivery(self)

    def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        self.delivery.emit(
            event, data, namespace, room=to or room, skip_sid=skip_sid, callback=callback
        )

    def wait_subscribed(self, timeout: float) -> bool:
        """Always true: without a message queue every event is emitted here."""
        return True


class BatchingRedisManager(_Ours, socketio.RedisManager):
    """Several servers or workers on Redis pub/sub (Flask-SocketIO's message_queue).

    It knows whether it is subscribed to the channel. Events that other
    processes publish while it is not are lost *to this server*; they are in
    the store, so:

    * requests that read the store for a client (``join_job``,
      ``watch_jobs``) wait for the subscription (:meth:`wait_subscribed`),
      so an event stored after their read is always delivered live;
    * after the subscription was lost and is back (Redis restarted), every
      connection is closed, as a dropped transport: clients reconnect and
      resume with ``since``, which gives them what was missed.
    """

    #: set by the extension (``JobOrder`` over its store): without it,
    #: events are delivered in the order they arrive
    order: JobOrder | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        socketio.RedisManager.__init__(self, *args, **kwargs)
        self.delivery = Delivery(self)

    def initialize(self) -> None:
        self._subscribed = self.server.eio.create_event()
        self._was_subscribed = False
        socketio.RedisManager.initialize(self)

    def emit(
        self,
        event,
        data,
        namespace=None,
        room=None,
        skip_sid=None,
        callback=None,
        to=None,
        **kwargs,
    ):
        if kwargs.pop("ignore_queue", False):  # this server's clients only
            return self.delivery.emit(
                event, data, namespace, room=to or room, skip_sid=skip_sid, callback=callback
            )
        # Published on the queue, and delivered here through _handle_emit.
        return socketio.RedisManager.emit(
            self,
            event,
            data,
            namespace,
            room=room,
            skip_sid=skip_sid,
            callback=callback,
            to=to,
            **kwargs,
        )

    #: the key admin commands are signed with between servers (the
    #: extension's token secret): an app's own emit cannot pass for one
    admin_key: bytes | None = None

    def admin(self, command: dict[str, Any]) -> tuple[int, bool]:
        count = self._admin_here(command)
        if self.admin_key is None:
            return count, False  # nothing to sign with: this server only
        # As an emit to a room nobody is in: a server that runs another
        # manager, or an older progresscast, delivers it to nobody.
        published = self._publish(
            {
                "method": "emit",
                "event": ADMIN_COMMAND,
                "data": [command, _signature(self.admin_key, command)],
                "binary": False,
                "namespace": NAMESPACE,
                "room": ADMIN_COMMAND,
                "skip_sid": None,
                "callback": None,
                "host_id": self.host_id,
            }
        )
        return count, published is not None

    def _publish(self, data):
        # python-socketio's RedisManager logs a failed publish and returns
        # None; a publish that reached Redis returns its subscriber count.
        result = socketio.RedisManager._publish(self, data)
        if result is None and self.metrics is not None:
            self.metrics.publish_failed()
        return result

    def _handle_emit(self, message):
        if message.get("event") == ADMIN_COMMAND:
            self._admin_from_queue(message)
            return None
        # Every emit, this server's own and those from the queue, passes
        # here: the one place to put each job's events back in seq order.
        event = job_event(message) if self.order is not None else None
        if event is None:
            return self._deliver(message)

        def send(e):
            self._deliver(message if e is event else {**message, "event": e["type"], "data": [e]})

        self.order.deliver(event, send)
        return None

    def _deliver(self, message: dict[str, Any]) -> None:
        """Deliver an emit message to this server's clients: python-socketio's
        ``PubSubManager._handle_emit``, with our :class:`Delivery` in place of
        ``Manager.emit``."""
        remote_callback = message.get("callback")
        callback = None
        if remote_callback is not None and len(remote_callback) == 3:
            # an ack goes back to the server that asked for it
            callback = partial(self._return_callback, message.get("host_id"), *remote_callback)
        data = message["data"]
        if message.get("binary"):
            attachments = [base64.b64decode(a) for a in data[1:]]
            data = packet.Packet.reconstruct_binary(data[0], attachments)
        if isinstance(data, list):
            data = data[0] if len(data) == 1 else tuple(data)
        self.delivery.emit(
            message["event"],
            data,
            message.get("namespace"),
            room=message.get("room"),
            skip_sid=message.get("skip_sid"),
            callback=callback,
        )

    def _admin_from_queue(self, message: dict[str, Any]) -> None:
        """Carry out another server's admin command, if it is one: from
        another host, to the admin room, signed with our key. (This
        server's own emits of the name, an app's, are dropped.)"""
        data = message.get("data")
        if (
            self.admin_key is None
            or message.get("host_id") == self.host_id
            or message.get("namespace") != NAMESPACE
            or message.get("room") != ADMIN_COMMAND
            or not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], dict))
            or not isinstance(data[1], str)
            or not hmac.compare_digest(data[1], _signature(self.admin_key, data[0]))
        ):
            self._get_logger().warning("dropped an admin command that was not one of ours")
            return
        self._admin_here(data[0])

    def note_read(self, job_id: str, seq: int) -> None:
        """A client read ``job_id`` from the store up to ``seq`` (in_order.py)."""
        if self.order is not None:
            self.order.note_read(job_id, seq)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until subscribed to the channel; False after ``timeout`` seconds."""
        return self._subscribed.wait(timeout)

    def _listen(self):
        # PubSubManager's hook for subclasses: yield each message published
        # on the channel. python-socketio's own loop reconnects silently; this
        # one does the same on its own connection, and notes when the
        # subscription is confirmed and when it is lost.
        channel = self.channel.encode()
        backoff = 0.2
        while True:
            conn = pubsub = None
            try:
                conn = redis.Redis.from_url(self.redis_url, **self.redis_options)
                pubsub = conn.pubsub()
                pubsub.subscribe(self.channel)
                for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self._on_subscribed()
                        backoff = 0.2
                    elif message["type"] == "message" and message["channel"] == channel:
                        yield message["data"]
            except Exception as exc:
                self._subscribed.clear()
                self._get_logger().error(
                    "message queue subscription lost (%s); retrying in %.1f s", exc, backoff
                )
            finally:
                for closable in (pubsub, conn):
                    if closable is not None:
                        with contextlib.suppress(Exception):
                            closable.close()
            self.server.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _on_subscribed(self) -> None:
        if self._was_subscribed:
            # Events published while we were not subscribed never reached
            # this server's clients: make every one of them resume.
            sockets = list(self.server.eio.sockets.values())
            self._get_logger().warning(
                "message queue subscription restored; closing %d connections so they resume",
                len(sockets),
            )
            if self.order is not None:
                self.order.forget_all()  # every client starts over with a read
            if self.sse is not None:
                self.sse.cut_all("queue_lost")  # streams resume with Last-Event-ID
            for sock in sockets:
                sock.cut_reason = "queue_lost"  # for the metrics (sockets.py)
                with contextlib.suppress(Exception):
                    # abort: no Engine.IO CLOSE packet, so every client takes
                    # it for a dropped transport and reconnects by itself
                    sock.close(wait=False, abort=True)
                self.server.eio.sockets.pop(sock.sid, None)
        self._was_subscribed = True
        self._subscribed.set()


def _signature(key: bytes, command: dict[str, Any]) -> str:
    body = json.dumps(command, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def batches(manager: Any) -> bool:
    """Whether ``manager`` is one of ours, which delivers ``watch_jobs {batch:
    true}`` in batches (an app may run another client manager)."""
    return isinstance(manager, _Ours)


def client_manager(message_queue_url: str | None, channel: str, interval: float):
    """The Socket.IO client manager for the app's settings."""
    if message_queue_url:
        manager = BatchingRedisManager(
            message_queue_url,
            channel=channel,
            # bounded waits: a dead Redis is noticed, not waited on forever
            redis_options={"socket_connect_timeout": 2, "health_check_interval": 10},
        )
    else:
        manager = BatchingManager()
    manager.batch_interval = interval
    return manager

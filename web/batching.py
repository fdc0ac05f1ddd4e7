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

import threading
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet

from progresscast import ALL_JOBS_ROOM

from .direct_websocket import DirectSockets, broadcast

BATCH_EVENT = "job_events"
BATCH_SUFFIX = "#batch"


def batched(room: str) -> str:
    return room + BATCH_SUFFIX


def _batchable(room: str) -> bool:
    return room.startswith("user:") or room == ALL_JOBS_ROOM


class _Fanout(socketio.Manager):
    """Room delivery that encodes and frames a packet once for all its
    websocket clients (web/direct_websocket.py), when the server has them."""

    def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        room = to or room
        eio = self.server.eio
        if callback is not None or not isinstance(eio.sockets, DirectSockets):
            return super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
        if namespace not in self.rooms:
            return None
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        try:
            # binary=False: no walk over the data looking for bytes (python-
            # socketio's default); JSON cannot encode bytes, so data holding
            # any raises here and takes python-socketio's binary path.
            encoded = self.server.packet_class(
                packet.EVENT, namespace=namespace, data=[event, *args], binary=False
            ).encode()
        except TypeError:
            return super().emit(event, data, namespace, room=room, skip_sid=skip_sid, **kwargs)
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        message = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        broadcast(
            eio,
            [eio_sid for sid, eio_sid in self.get_participants(namespace, room) if sid not in skip],
            message.encode(),
            lambda eio_sid: self.server._send_eio_packet(eio_sid, message),
        )
        return None


class _Batching(_Fanout):
    """Delivers as usual, and queues job events for the batched rooms."""

    batch_interval = 0.1

    def initialize(self) -> None:
        super().initialize()
        # pending[(namespace, batched room)] = events since the last flush
        self._pending: dict[tuple[str, str], list[Any]] = {}
        self._lock = threading.Lock()
        self._flusher_started = False

    def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        room = to or room
        super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )
        if not isinstance(room, list) or not isinstance(data, dict) or "seq" not in data:
            return  # not a job event
        rooms_here = self.rooms.get(namespace, {})
        targets = [batched(r) for r in room if _batchable(r) and batched(r) in rooms_here]
        if not targets:
            return
        with self._lock:
            for target in targets:
                self._pending.setdefault((namespace, target), []).append(data)
            if not self._flusher_started:
                self._flusher_started = True
                self.server.start_background_task(self._flush_forever)

    def _flush_forever(self) -> None:
        while True:
            self.server.sleep(self.batch_interval)
            with self._lock:
                pending, self._pending = self._pending, {}
            for (namespace, room), events in pending.items():
                try:
                    # Manager.emit: deliver here only (no re-batching, no publishing)
                    socketio.Manager.emit(
                        self, BATCH_EVENT, {"events": events}, namespace, room=room
                    )
                except Exception:  # a flush must never kill the flusher
                    self._get_logger().exception("could not deliver a job_events batch")


class BatchingManager(_Batching):
    """One server, no message queue."""


class BatchingRedisManager(socketio.RedisManager, _Batching):
    """Several servers or workers on Redis pub/sub (Flask-SocketIO's message_queue)."""


def client_manager(message_queue_url: str | None, channel: str, interval: float):
    """The Socket.IO client manager for the app's settings."""
    if message_queue_url:
        manager = BatchingRedisManager(message_queue_url, channel=channel)
    else:
        manager = BatchingManager()
    manager.batch_interval = interval
    return manager

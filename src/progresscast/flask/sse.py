"""Live job events for Server-Sent Events streams, inside one server.

The client manager (batching.py) hands :meth:`SSEHub.publish` every job
event it delivers to this server's Socket.IO rooms, after the in-order
step (in_order.py): the tracker's own, workers' and other instances' alike,
each job's in ``seq`` order. The hub copies it to the queue of every open
stream that follows the job (one job, its owner's jobs, or all jobs) and
wakes the stream; the stream's response (streams.py) writes it out.

Publishing never blocks, so a stream never holds up Socket.IO delivery: each
stream's queue is bounded by ``SSE_MAX_BACKLOG`` events, and a stream whose
reader falls that far behind is cut (its socket is shut down, the response
ends, the client resumes with ``Last-Event-ID``) and counted as a
``slow_reader`` disconnect.

Only the server's own async primitives are used (``create_event`` of
python-engineio, a deque), so the hub works under eventlet, gevent and
threads alike.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections import Counter, deque
from typing import Any

from progresscast.protocol import USER_ROOM_PREFIX

#: an SSE message's fields, as the wire has them (docs/protocol.md, SSE streams)
PING = b": ping\n\n"


def message(data: Any, event: str | None = None, id: str | int | None = None) -> bytes:
    """One SSE message: ``id``, ``event``, then ``data`` as compact JSON
    (one line: JSON escapes the newlines inside strings)."""
    return framed(_json(data), event, id)


def framed(data: bytes, event: str | None = None, id: str | int | None = None) -> bytes:
    """One SSE message around ``data``, JSON already encoded (one line)."""
    head = b""
    if id is not None:
        head = b"id: %s\n" % str(id).encode()
    if event is not None:
        head += b"event: %s\n" % event.encode()
    return head + b"data: " + data + b"\n\n"


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class Queued:
    """A job event as the hub queues it for every stream that follows it:
    the same object for all of them, so its JSON is encoded once (and a job
    stream's whole message too), however many streams write it out."""

    __slots__ = ("_data", "_job_message", "event")

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self._data: bytes | None = None
        self._job_message: bytes | None = None

    def data(self) -> bytes:
        """The event's JSON (an SSE message's ``data``)."""
        if self._data is None:
            self._data = _json(self.event)
        return self._data

    def job_message(self) -> bytes:
        """The event's message on a job stream (``id`` is its ``seq``)."""
        if self._job_message is None:
            self._job_message = framed(self.data(), self.event["type"], self.event["seq"])
        return self._job_message


class Stream:
    """One open SSE stream: what it follows, and the events waiting for it."""

    def __init__(
        self, hub: SSEHub, user: str, job_id: str | None, owner: str | None, sock: Any
    ) -> None:
        self.hub = hub
        self.user = user  # who opened it (connection limits)
        self.job_id = job_id  # a job's stream ...
        self.owner = owner  # ... or a user's jobs; neither: every job (admins)
        self.sock = sock  # the client's socket, shut down to cut a stalled writer
        self.pending: deque[Queued] = deque()
        self.wake = hub.create_event()
        #: why the server ended it ("slow_reader"), None while it is fine
        self.cut: str | None = None

    def take(self, timeout: float) -> list[Queued]:
        """The events queued since the last call, waiting up to ``timeout``
        seconds for one; empty on timeout or when the stream was cut."""
        if not self.pending and self.cut is None:
            self.wake.wait(timeout)
        # clear before draining: an event queued meanwhile sets it again
        self.wake.clear()
        events = []
        while self.pending:
            events.append(self.pending.popleft())
        return events


class SSEHub:
    """The open SSE streams of one app, and the delivery of job events to them.

    ``create_event`` makes an event of the server's async mode
    (``socketio.server.eio.create_event``).
    """

    def __init__(self, create_event: Any, max_backlog: int, metrics: Any = None) -> None:
        self.create_event = create_event
        self.max_backlog = max_backlog
        self.metrics = metrics
        # by_job[job_id], by_owner[user_id] = {streams}; everyone = admins' streams
        self.by_job: dict[str, set[Stream]] = {}
        self.by_owner: dict[str, set[Stream]] = {}
        self.everyone: set[Stream] = set()
        #: open streams per user who opened them (connection limits)
        self.per_user: Counter[str] = Counter()
        self.count = 0
        self._lock = threading.Lock()

    def open(
        self,
        user: str,
        *,
        job_id: str | None = None,
        owner: str | None = None,
        sock: Any = None,
    ) -> Stream:
        """Register a stream before the store is read (join, then read)."""
        stream = Stream(self, user, job_id, owner, sock)
        with self._lock:
            if job_id is not None:
                self.by_job.setdefault(job_id, set()).add(stream)
            elif owner is not None:
                self.by_owner.setdefault(owner, set()).add(stream)
            else:
                self.everyone.add(stream)
            self.per_user[user] += 1
            self.count += 1
        if self.metrics is not None:
            self.metrics.sse_streams.inc()
        return stream

    def close(self, stream: Stream) -> None:
        """Forget a stream (idempotent); counted in the metrics once."""
        with self._lock:
            if not self._unlink(stream):
                return
            self.per_user[stream.user] -= 1
            if self.per_user[stream.user] <= 0:
                del self.per_user[stream.user]
            self.count -= 1
        if self.metrics is not None:
            self.metrics.sse_streams.dec()
            if stream.cut is not None:
                self.metrics.disconnected(stream.cut)

    def _unlink(self, stream: Stream) -> bool:
        if stream.job_id is not None:
            index, key = self.by_job, stream.job_id
        elif stream.owner is not None:
            index, key = self.by_owner, stream.owner
        else:
            return _discard(self.everyone, stream)
        members = index.get(key)
        if members is None or not _discard(members, stream):
            return False
        if not members:
            del index[key]
        return True

    def publish(self, event: dict[str, Any], rooms: list[str]) -> None:
        """Queue a job event for the streams that follow it; ``rooms`` are
        the Socket.IO rooms it was emitted to (the owner's names the owner)."""
        if not self.count:
            return
        owner = next(
            (r[len(USER_ROOM_PREFIX) :] for r in rooms if r.startswith(USER_ROOM_PREFIX)), None
        )
        queued = Queued(event)
        with self._lock:
            targets = [
                *self.by_job.get(event.get("job_id"), ()),
                *(self.by_owner.get(owner, ()) if owner is not None else ()),
                *self.everyone,
            ]
        for stream in targets:
            if stream.cut is not None:
                continue
            if len(stream.pending) >= self.max_backlog:
                self._cut(stream, "slow_reader")
                continue
            # Only the first event wakes the stream: later ones are drained
            # with it (take() drains after it clears the wake-up). Appended
            # first: woken before, a thread could drain nothing and wait again.
            first = not stream.pending
            stream.pending.append(queued)
            if first:
                stream.wake.set()

    def cut_all(self, reason: str, user: str | None = None) -> int:
        """End every open stream (of ``user``, if given): the client resumes
        with ``Last-Event-ID`` (after the queue subscription was lost: events
        published meanwhile never came; an admin's disconnect). Returns how
        many were cut."""
        with self._lock:
            streams = [*self.everyone, *(s for group in self.by_job.values() for s in group)]
            streams += [s for group in self.by_owner.values() for s in group]
        cut = 0
        for stream in streams:
            if stream.cut is None and (user is None or stream.user == user):
                self._cut(stream, reason)
                cut += 1
        return cut

    def _cut(self, stream: Stream, reason: str) -> None:
        """End a stream whose reader cannot keep up: its response may be
        stuck writing to a client that does not read, so the socket is shut
        down under it (the write fails, the response ends)."""
        stream.cut = reason
        stream.pending.clear()
        stream.wake.set()
        if stream.sock is not None:
            with contextlib.suppress(OSError):
                stream.sock.shutdown(socket.SHUT_RDWR)


def _discard(members: set[Stream], stream: Stream) -> bool:
    if stream in members:
        members.discard(stream)
        return True
    return False

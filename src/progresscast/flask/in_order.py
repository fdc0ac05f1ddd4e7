"""Each job's events reach this server's clients in ``seq`` order, whoever
published them.

Every process stores an event, then publishes it. Two processes writing the
same job (a group's parent, advanced by children that end in different
worker processes) can publish in the other order than they stored: seq 26
reaches the server before seq 25. A client that follows docs/protocol.md
drops whatever is not above the last seq it applied, so it would lose 25.

So the server keeps, per job, the highest seq it delivered:

* an event at or below it was delivered already (read from the store, see
  next): it is dropped;
* an event more than one above it means that the ones in between are still
  on their way. They are stored already (a seq is written only once the one
  before it is), so they are read from the store and delivered first.

A job the server has not delivered anything of starts from the seq a
``join_job`` or ``watch_jobs`` read (:meth:`JobOrder.note_read`), or from
its first event. Only the newest ``capacity`` jobs are remembered.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from progresscast.state import EventType

log = logging.getLogger(__name__)

#: the event names that carry a job's ``seq``
JOB_EVENTS = frozenset(t.value for t in EventType)

#: at most this many events are read from the store to fill one gap; a larger
#: one (a server that was not subscribed for long) is left to the clients,
#: which rejoin with ``since`` when they see it
MAX_FILL = 500

ReadEvents = Callable[[str, int, int], list[dict[str, Any]]]


def job_event(message: dict[str, Any]) -> dict[str, Any] | None:
    """The job event a python-socketio pub/sub ``emit`` message carries, or
    None for any other emit (a notice, an app's own event, a batch)."""
    data = message.get("data")
    if message.get("event") not in JOB_EVENTS or not isinstance(data, list) or len(data) != 1:
        return None
    event = data[0]
    if (
        isinstance(event, dict)
        and isinstance(event.get("job_id"), str)
        and type(event.get("seq")) is int
    ):
        return event
    return None


class JobOrder:
    """The highest ``seq`` delivered per job, and the rule above.

    ``read_events(job_id, since, limit)`` reads up to ``limit`` stored events
    with ``seq > since``, ascending (the tracker's ``events_page``).
    """

    def __init__(self, read_events: ReadEvents, capacity: int = 100_000) -> None:
        self._read = read_events
        self._capacity = capacity
        self._last: OrderedDict[str, int] = OrderedDict()
        # Held while delivering too: two callers (the queue listener and a
        # request emitting here) must not deliver a job's events interleaved.
        self._lock = threading.Lock()

    def note_read(self, job_id: str, seq: int) -> None:
        """A client read the job from the store up to ``seq``: a later event
        above ``seq + 1`` is a gap to fill. Ignored once the job has a
        delivered seq (events up to it may already be on their way)."""
        with self._lock:
            if job_id not in self._last:
                self._remember(job_id, seq)

    def deliver(self, event: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
        """Pass ``event`` and any stored events missing before it to ``send``,
        in order, unless it was delivered already."""
        job_id, seq = event["job_id"], event["seq"]
        with self._lock:
            last = self._last.get(job_id)
            if last is not None and seq <= last:
                return  # a late copy of an event delivered from the store
            missing: list[dict[str, Any]] = []
            if last is not None and 1 < seq - last <= MAX_FILL + 1:
                try:
                    stored = self._read(job_id, last, seq - last - 1)
                    missing = [e for e in stored if e["seq"] < seq]
                except Exception:
                    # Delivered anyway: a client that sees the gap rejoins
                    # with since (docs/protocol.md, Resume).
                    log.exception("could not read job %s's events after %d", job_id, last)
            self._remember(job_id, seq)
            for early in missing:
                send(early)
            send(event)

    def forget_all(self) -> None:
        """Forget every job: after the queue subscription was lost, every
        connection is closed and the clients start over with a read."""
        with self._lock:
            self._last.clear()

    def __len__(self) -> int:
        return len(self._last)

    def _remember(self, job_id: str, seq: int) -> None:
        self._last[job_id] = seq
        self._last.move_to_end(job_id)
        if len(self._last) > self._capacity:
            self._last.popitem(last=False)

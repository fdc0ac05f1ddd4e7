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

A job starts from the seq a client read before joining it or watching it
(:meth:`JobOrder.note_read`): everything up to there is the client's from
the store. A job first seen through one of its events, with nobody's read
to start from, starts there; an older event that comes later is passed on
as it comes, since nothing says whether someone still needs it. Only the
newest ``capacity`` jobs are remembered.
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
        # job -> [the highest seq delivered, the lowest seq known to be
        # covered: 0 after a read, else the first seq seen]
        self._seen: OrderedDict[str, list[int]] = OrderedDict()
        # Held while delivering too: two callers (the queue listener and a
        # request emitting here) must not deliver a job's events interleaved.
        self._lock = threading.Lock()

    def note_read(self, job_id: str, seq: int) -> None:
        """The job is at ``seq`` in the store, read before a client joins it:
        a later event above ``seq + 1`` is a gap to fill. Ignored once the
        job is known (events up to it may already be on their way)."""
        with self._lock:
            if job_id not in self._seen:
                self._remember(job_id, seq, 0)

    def deliver(self, event: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
        """Pass ``event`` and any stored events missing before it to ``send``,
        in order, unless it was delivered already."""
        job_id, seq = event["job_id"], event["seq"]
        with self._lock:
            seen = self._seen.get(job_id)
            if seen is None:
                self._remember(job_id, seq, seq)
                send(event)
                return
            last, floor = seen
            if seq < floor:  # older than the first one seen: pass it on
                seen[1] = seq
                send(event)
                return
            if seq <= last:
                return  # a late copy of an event delivered from the store
            missing: list[dict[str, Any]] = []
            if 1 < seq - last <= MAX_FILL + 1:
                try:
                    stored = self._read(job_id, last, seq - last - 1)
                    missing = [e for e in stored if e["seq"] < seq]
                except Exception:
                    # Delivered anyway: a client that sees the gap rejoins
                    # with since (docs/protocol.md, Resume).
                    log.exception("could not read job %s's events after %d", job_id, last)
            self._remember(job_id, seq, floor)
            for early in missing:
                send(early)
            send(event)

    def forget_all(self) -> None:
        """Forget every job: after the queue subscription was lost, every
        connection is closed and the clients start over with a read."""
        with self._lock:
            self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)

    def _remember(self, job_id: str, seq: int, floor: int) -> None:
        self._seen[job_id] = [seq, floor]
        self._seen.move_to_end(job_id)
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

"""Recently read stored events, for the rejoins of a reconnect storm.

After a restart every client rejoins with ``since`` = the last seq it
applied, and the watchers of one job applied the same events: 100 watchers
of a job ask for the same events, each one read from the store and decoded
again. Stored events never change, so the first read serves the others.

Only the events are taken from here: ``join_job`` still reads the job's state
after joining the room (docs/protocol.md "Resume"), and whatever stored event
this does not hold up to that state's ``seq`` is read from the store. An
entry belongs to one job's identity (its id and creation time), so a job that
is deleted and created again under its id never gets the old one's events;
and a store seen behind what was held (restored from a backup, its newest
events lost) drops the job's entry, so events written again under those seqs
are read from the store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from progresscast.state import JobState


def _carries_large(event: dict[str, Any]) -> bool:
    """Whether an event holds a field whose size the caller chooses
    (job_queued, job_started: metadata; job_completed: result)."""
    return "metadata" in event or "result" in event


class Replay:
    """Stored events by job and seq, the most recently used jobs first out
    last, at most ``capacity`` events in all."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        # jobs[(job_id, created_at)] = {seq: event}, least recently used first
        self._jobs: OrderedDict[tuple[str, float], dict[int, dict[str, Any]]] = OrderedDict()
        self._size = 0
        # the highest seq held per job: a state read below it means the store went back
        self._top: dict[tuple[str, float], int] = {}
        # handlers run in threads of their own in threading mode
        self._lock = threading.Lock()

    def events(self, state: JobState, since: int) -> tuple[list[dict[str, Any]], int]:
        """The held events ``since + 1, since + 2, ...`` up to ``state.seq``,
        in order, stopping at the first one not held; and the seq it reached."""
        out: list[dict[str, Any]] = []
        with self._lock:
            key = (state.job_id, state.created_at)
            held = self._jobs.get(key)
            if held is None:
                return out, since
            if self._top[key] > state.seq:  # the store lost events we hold
                self._drop(key)
                return out, since
            self._jobs.move_to_end(key)
            seq = since
            while seq < state.seq:
                event = held.get(seq + 1)
                if event is None:
                    break
                out.append(event)
                seq += 1
        return out, seq

    def keep(self, state: JobState, events: list[dict[str, Any]]) -> None:
        """Hold ``events`` (stored events of ``state``'s job)."""
        if not events or len(events) > self.capacity:
            return
        key = (state.job_id, state.created_at)
        with self._lock:
            held = self._jobs.setdefault(key, {})
            self._jobs.move_to_end(key)
            for event in events:
                # Not the events that carry the caller's metadata or result
                # (up to 16 KiB each): the capacity counts events, so each
                # must stay small. A rejoin reads those from the store.
                if event["seq"] not in held and not _carries_large(event):
                    held[event["seq"]] = event
                    self._size += 1
            self._top[key] = max(self._top.get(key, 0), events[-1]["seq"])
            while self._size > self.capacity and self._jobs:
                self._drop(next(iter(self._jobs)))

    def _drop(self, key: tuple[str, float]) -> None:
        self._size -= len(self._jobs.pop(key))
        self._top.pop(key, None)

    def __len__(self) -> int:
        return self._size

"""The ``JobStore`` interface every back-end implements.

Back-ends raise :class:`~progresscast.errors.StoreUnavailable` when they
cannot be reached, never their driver's own errors.

A store keeps, per job, the current :class:`JobState` and the ordered list of
its events. Its one write is :meth:`JobStore.append`: the events of one
request and the resulting state, together, or not at all. The append is a
compare-and-set on ``seq`` so that several writers (threads, processes,
hosts) can never leave a gap or a duplicate in a job's history.

A store also keeps the **run history** the ETA learns from (docs/protocol.md,
"ETA, history and learned weights"): per kind (pipeline), the newest completed
runs, each a JSON-able dict ``{"job_id", "finished_at", "elapsed", "stages":
[[stage, seconds], ...]}``. Kinds are opaque strings; runs are stored as JSON
and read back as equal dicts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..jsoncodec import loads
from ..state import JobState, JobStatus


def decode_state(text: str | bytes) -> JobState:
    """A job's state from the JSON text a store keeps it as.

    A job is read far more often than it changes: every client that joins
    or rejoins it reads it twice, and a reconnect storm brings thousands at
    once. The text of recent states is remembered with the state it decodes
    to, and each caller gets a state of its own: :meth:`JobState.copy` with
    fresh copies of the JSON values it holds (metadata, result, error, ETA
    state...), so a caller that changes what it read changes nothing for
    the next one, as when every read decoded anew. Only texts of up to 4,096
    characters are remembered, 256 of them: under 2 MiB for typical states
    (1–2 KB of text, about 5 KiB decoded), a few tens of MiB at worst.
    """
    if not isinstance(text, (str, bytes)):
        text = bytes(text)  # bytearray, memoryview: unhashable
    if len(text) > _REMEMBERED_TEXT:
        return _decode(text)  # a state of its own already
    state = _decoded(text).copy()
    for name in _JSON_FIELDS:
        value = getattr(state, name)
        if value:  # None, {} and [] are replaced, never changed in place
            setattr(state, name, _copy_json(value))
    return state


_REMEMBERED_TEXT = 4096
#: the fields holding decoded JSON containers (the per-stage lists are
#: JobState.copy's; stages are tuples of frozen Stage)
_JSON_FIELDS = ("metadata", "result", "error", "eta", "rate_meter", "children")


def _decode(text: str | bytes) -> JobState:
    return JobState.from_record(loads(text))


_decoded = functools.lru_cache(maxsize=256)(_decode)


def _copy_json(value: Any) -> Any:
    """A deep copy of decoded JSON (dicts, lists and scalars), several times
    faster than :func:`copy.deepcopy`, which this is, for such values."""
    if type(value) is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy_json(v) for v in value]
    return value


class JobStore:
    """Base class; back-ends override every method."""

    def append(self, events: Sequence[dict[str, Any]], state: JobState) -> str | None:
        """Store ``events`` (consecutive ``seq``) and ``state`` atomically.

        The first event's ``seq`` must be one more than the stored job's
        ``seq`` (``1`` creates the job). Otherwise raises
        :class:`~progresscast.errors.SeqConflict` and stores nothing.

        Returns the job's pending cancellation reason as the write found it
        (``None`` if there is none): a running pipeline learns of a request
        with no read of its own (:meth:`cancel_reason`).
        """
        raise NotImplementedError

    def get(self, job_id: str) -> JobState | None:
        """The job's current state (with ``cancel_requested``), or ``None``."""
        raise NotImplementedError

    def request_cancel(self, job_id: str, reason: str, requested_at: float | None = None) -> bool:
        """Record a cancellation request for a queued or running job, made at
        ``requested_at`` (epoch seconds; now when ``None``).

        Does not touch ``seq``. Returns ``False`` when there is no such job or
        it has already ended; a second request keeps the first reason and time.
        """
        raise NotImplementedError

    def cancel_overdue(self, requested_before: float) -> list[str]:
        """Ids of queued or running jobs whose cancellation request was made
        before this epoch time (:meth:`ProgressTracker.cancel_overdue`)."""
        raise NotImplementedError

    def cancel_reason(self, job_id: str) -> str | None:
        """The pending cancellation's reason, or ``None``; cheap. Emitters read it
        at stage changes and in ``check_cancelled()``; their progress reports get
        it from :meth:`append` instead."""
        raise NotImplementedError

    def events_since(self, job_id: str, since: int = 0, limit: int | None = None) -> list[dict]:
        """Stored events with ``seq > since``, ascending, at most ``limit``."""
        raise NotImplementedError

    def first_seq(self, job_id: str) -> int | None:
        """The oldest ``seq`` still stored (history may be trimmed), or ``None``."""
        raise NotImplementedError

    def list_jobs(
        self,
        owner: str | None = None,
        status: Sequence[JobStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobState]:
        """Jobs newest first; ``owner=None`` means every owner."""
        raise NotImplementedError

    def list_children(self, parent_id: str) -> list[JobState]:
        """A parent's children, in the order they were created."""
        raise NotImplementedError

    def count_jobs(
        self, owner: str | None = None, status: Sequence[JobStatus] | None = None
    ) -> int:
        raise NotImplementedError

    def stalled(self, updated_before: float) -> list[str]:
        """Ids of running jobs whose last event is older than this epoch time."""
        raise NotImplementedError

    def prune(self, finished_before: float) -> int:
        """Delete terminal jobs that finished before this epoch time; return how many."""
        raise NotImplementedError

    # ------------------------------------------------------------ run history

    def add_run(
        self, kind: str, run: Mapping[str, Any], keep: int, max_age: float | None = None
    ) -> None:
        """Add one completed run of pipeline ``kind`` to its history, keeping
        the newest ``keep`` runs (by ``finished_at``) and, with ``max_age``
        seconds, none that finished more than ``max_age`` before this one.

        ``run`` is ``{"job_id": str, "finished_at": float, "elapsed": float,
        "stages": [[name, seconds], ...]}`` (other JSON-able keys are kept).
        A run whose ``job_id`` is already in the kind's history replaces it,
        so adding the same run twice counts it once. ``keep <= 0`` stores
        nothing. With ``max_age``, a store may also forget other kinds' runs
        that finished that long before this one (Redis lets a kind expire
        when no run came for ``max_age``): readers ask :meth:`runs` with
        ``since`` anyway. Raises ``ValueError`` for an empty kind or a run
        without a string ``job_id`` and a numeric ``finished_at``.
        """
        raise NotImplementedError

    def runs(self, kind: str, limit: int, since: float | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` runs of ``kind``, newest first (ties: the
        greater ``job_id`` first); with ``since``, only runs whose
        ``finished_at >= since``. ``[]`` for an unknown kind."""
        raise NotImplementedError

    def history_kinds(self) -> list[dict[str, Any]]:
        """Every kind with history: ``[{"kind", "runs", "last_finished_at"}]``
        (how many runs are kept, the newest one's ``finished_at``), sorted by kind."""
        raise NotImplementedError

    def reset_history(self, kind: str | None = None) -> int:
        """Forget the runs of ``kind`` (of every kind with ``None``); return
        how many runs were removed."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Move buffered writes to their final place (SQLite: the WAL into
        the database file). Safe to call from another OS thread; a no-op
        for stores that need none."""

    def ping(self) -> None:
        """Raise if the store cannot serve requests (used by ``/readyz``)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and files."""


def run_fields(kind: str, run: Mapping[str, Any]) -> tuple[str, float]:
    """Check what :meth:`JobStore.add_run` relies on; return the run's
    ``job_id`` and ``finished_at``."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"a run's kind must be a non-empty string, not {kind!r}")
    job_id, finished_at = run.get("job_id"), run.get("finished_at")
    if not isinstance(job_id, str) or not job_id:
        raise ValueError(f"a run needs a job_id (a non-empty string), not {job_id!r}")
    if (
        isinstance(finished_at, bool)
        or not isinstance(finished_at, int | float)
        or not math.isfinite(finished_at)
    ):
        raise ValueError(f"a run needs a finite finished_at, not {finished_at!r}")
    return job_id, float(finished_at)

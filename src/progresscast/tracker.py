"""``ProgressTracker``: turns what pipelines report into stored, published events.

For every request it (1) applies the state machine (:func:`state.transition`,
pure), (2) appends the events and the new state to the :class:`JobStore` in
one compare-and-set on ``seq``, (3) emits each event to the Socket.IO rooms
``job:<id>`` and ``user:<owner>``.

It also serves every read the server makes for its clients: a resume
(:meth:`ProgressTracker.read_since`, with the one rule for ``truncated``),
history pages, listings, pruning; the web layer never touches the store.

The tracker does not know Flask. It emits through anything with Socket.IO's
``emit(event, data, to=..., namespace=...)``: the web app's ``SocketIO`` in
process, or a write-only ``SocketIO(message_queue=...)`` in a worker. A
worker whose store is the message queue's Redis gets a
:class:`~progresscast.stores.redis.QueuePublisher` (:meth:`ProgressTracker.from_urls`):
then steps (2) and (3) are one Redis script, and one round trip.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import Conflict, InvalidPayload, JobNotFound, SeqConflict
from .groups import GROUP_STAGE, aggregate, child_specs, ending, report
from .history import History, run_record

# The protocol's names, importable from here as before (progresscast.protocol has them all).
from .protocol import (
    ALL_JOBS_ROOM,
    JOB_ID_RE,
    NAMESPACE,
    event_rooms,
    job_room,
    user_room,
    validate_job_id,
)
from .state import EventType, JobState, JobStatus, new_job, transition

if TYPE_CHECKING:
    from .emitter import ProgressEmitter
    from .stores.base import JobStore

log = logging.getLogger(__name__)

__all__ = [
    "ALL_JOBS_ROOM",
    "JOB_ID_RE",
    "NAMESPACE",
    "JobRead",
    "ProgressTracker",
    "SocketEmitter",
    "TrackerObserver",
    "event_rooms",
    "job_room",
    "user_room",
    "validate_job_id",
]


class SocketEmitter(Protocol):
    """What the tracker emits through: Flask-SocketIO's or python-socketio's ``emit``."""

    def emit(
        self, event: str, data: Any, *, to: Any = None, namespace: str | None = None
    ) -> Any: ...


class TrackerObserver(Protocol):
    """What a tracker reports to, when given one (``tracker.observer``): the
    server's metrics (progresscast.flask.metrics). Durations are seconds,
    measured with ``time.perf_counter``; without an observer nothing is timed.
    """

    def applied(self, kind: str, seconds: float) -> None:
        """A request (:meth:`ProgressTracker.apply`) was stored and published."""

    def stored(self, events: list[dict[str, Any]], seconds: float) -> None:
        """``events`` were appended to the store."""

    def published(self, events: list[dict[str, Any]], seconds: float, failed: int) -> None:
        """``events`` were emitted; ``failed`` of them could not be."""


@dataclass(frozen=True, slots=True)
class JobRead:
    """One read of a job for a reader: its state, its snapshot at that moment,
    and the stored events it asked for (:meth:`ProgressTracker.read_since`,
    :meth:`ProgressTracker.events_page`)."""

    #: the job's state as read
    state: JobState
    #: its wire snapshot (``job`` in acks and REST), elapsed time counted up to the read
    snapshot: dict[str, Any]
    #: events with ``seq > since``, ascending; ``None`` when no ``since`` was given
    events: list[dict[str, Any]] | None
    #: the reader must start over from ``snapshot`` (its ``since`` cannot be continued)
    truncated: bool

    @property
    def seq(self) -> int:
        return self.state.seq


class ProgressTracker:
    """Job state machine, per-job ``seq``, ETA, storage and publishing.

    :param store: where state and history live (:func:`progresscast.open_store`).
    :param emitter: a Socket.IO server or write-only emitter; ``None`` stores only.
    :param clock: wall-clock seconds (``time.time``); tests pass a fake one.
    :param min_interval: default throttle of the emitters this tracker hands out.
    :param runner: a name for the process that runs in-process pipelines,
        stable across its restarts (a server's ``SERVER_ID``). Jobs it runs
        (:meth:`job`, :meth:`start`) are marked with it, so that its next run
        can end what the last one left behind (:meth:`fail_interrupted`).
        ``None`` (workers): jobs are left to stall detection.
    :param history_runs: completed runs kept per kind for the ETA (0: none).
    :param history_days: runs older than this many days are not learned from.
    :param observer: told how long updates, store appends and emits take
        (:class:`TrackerObserver`); ``None``: nothing is measured.
    """

    #: how often a write that lost a race with another writer is retried
    max_retries = 20
    #: running jobs whose state this tracker keeps between its own writes
    state_cache_size = 4096

    def __init__(
        self,
        store: JobStore,
        emitter: SocketEmitter | None = None,
        *,
        namespace: str = NAMESPACE,
        clock: Callable[[], float] = time.time,
        min_interval: float = 0.1,
        runner: str | None = None,
        history_runs: int = 20,
        history_days: float = 30.0,
        observer: TrackerObserver | None = None,
    ) -> None:
        self.store = store
        self.observer = observer
        self.history_runs = history_runs
        self.history_days = history_days
        self.runner = runner
        self.emitter = emitter
        self.namespace = namespace
        self.clock = clock
        self.min_interval = min_interval
        # Striped locks: events of one job are stored and emitted in seq order
        # by this process, without a lock object per job ever created.
        self._locks = [threading.Lock() for _ in range(64)]
        # The state each job had after this tracker's last write to it, so the
        # next write need not read it back. Another writer (a worker, another
        # instance, HTTP ingestion elsewhere) moves the stored seq on; the
        # store's compare-and-set then refuses the write and we read afresh.
        self._states: dict[str, JobState] = {}
        self._states_lock = threading.Lock()
        # When this tracker last brought each running parent up to date
        # (clock time), to throttle a group's progress updates.
        self._parent_reported: dict[str, float] = {}
        # Parents whose children are being cancelled by this tracker: their
        # update waits for the last one (not one read of every child per child).
        self._quiet_parents: set[str] = set()

    # ------------------------------------------------------------------ writes

    def create_job(
        self,
        name: str,
        stages: Any,
        *,
        owner: str,
        job_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        start: bool = False,
        run_here: bool = False,
        kind: str | None = None,
        weights: str = "declared",
    ) -> JobState:
        """Create a job; emits ``job_queued`` (or ``job_started`` with ``start=True``).

        ``run_here``: this process runs the pipeline (marks it with
        :attr:`runner`). ``kind``: the pipeline it is a run of, for the ETA's
        history (its name by default); ``weights="auto"``: stage weights
        learned from that history when it starts (docs/protocol.md, "ETA,
        history and learned weights"). Raises :class:`Conflict` if
        ``job_id`` is taken.
        """
        job_id = validate_job_id(job_id) if job_id is not None else uuid.uuid4().hex
        # One instant for both: the first event's ts is the job's created_at
        # (and started_at), so clients that fold events agree with snapshots.
        now = self.clock()
        state = new_job(job_id, name, stages, owner, metadata, now, kind=kind, weights=weights)
        if run_here:
            state.runner = self.runner
        return self._create(state, EventType.JOB_STARTED if start else EventType.JOB_QUEUED, now)

    def _create(self, state: JobState, kind: EventType, now: float) -> JobState:
        """Store a new job's first event; :class:`Conflict` if its id is taken."""
        job_id = state.job_id
        with self._lock_for(job_id):
            history = self._history(state) if kind is EventType.JOB_STARTED else None
            events, state = transition(state, kind, {}, now, history=history)
            try:
                self._append(events, state)
            except SeqConflict:
                raise Conflict(f"job {job_id!r} already exists", job_id=job_id) from None
            self._remember(state)
            self._publish(state, events)
        return state

    # ------------------------------------------------------------------ groups

    def group(
        self,
        name: str,
        children: Any,
        *,
        owner: str,
        job_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        run_here: bool = False,
    ) -> tuple[JobState, list[JobState]]:
        """Create a parent job and its children, all queued; return their states.

        ``children``: dicts ``{name, stages, job_id?, weight?, metadata?}`` or
        ``(name, stages)`` pairs (1 to 1000). Each child is a job of its own,
        run as any other (``tracker.start(child.job_id)``, a worker, HTTP);
        the parent follows them (docs/protocol.md, "Groups"). ``run_here``:
        this process runs the children (if it dies, its next start fails
        them, queued ones too, as interrupted). Raises
        :class:`InvalidPayload`, or :class:`Conflict` if an id is taken.
        """
        specs = child_specs(children)
        parent_id = validate_job_id(job_id) if job_id is not None else uuid.uuid4().hex
        now = self.clock()
        parent = new_job(
            parent_id, name, [(GROUP_STAGE, 1)], owner, metadata, now, children=len(specs)
        )
        kids = [
            new_job(
                validate_job_id(spec.job_id) if spec.job_id is not None else uuid.uuid4().hex,
                spec.name,
                spec.stages,
                owner,
                spec.metadata,
                now,
                parent_id=parent_id,
                weight=float(spec.weight),
                kind=spec.kind,
            )
            for spec in specs
        ]
        for job in (parent, *kids):  # every id checked before anything is stored
            if self.store.get(job.job_id) is not None:
                raise Conflict(f"job {job.job_id!r} already exists", job_id=job.job_id)
            if run_here:
                job.runner = self.runner
        created = self._create(parent, EventType.JOB_QUEUED, now)
        states: list[JobState] = []
        try:
            for kid in kids:
                states.append(self._create(kid, EventType.JOB_QUEUED, now))
        except Exception as exc:
            # An id taken meanwhile, or the store gone: a group short of
            # children would wait for them forever. End what was made.
            error = {"type": "not_created", "message": f"the group was not created: {exc}"[:2000]}
            with self._quiet(parent.job_id):
                for state in states:
                    with contextlib.suppress(Exception):
                        self.apply(state.job_id, EventType.JOB_FAILED, error=error)
                with contextlib.suppress(Exception):
                    self.apply(parent.job_id, EventType.JOB_FAILED, error=error)
            raise
        return created, states

    def children(self, parent_id: str) -> list[JobState]:
        """A parent's children, in the order they were created."""
        return self.store.list_children(parent_id)

    def _child_changed(self, child: JobState, events: list[dict[str, Any]]) -> None:
        """Bring the parent up to date after its child changed: at most once
        per ``min_interval`` for progress alone, always for a start, a stage
        or an end."""
        parent_id = child.parent_id
        now = self.clock()
        with self._states_lock:
            if parent_id in self._quiet_parents:
                return  # its group is being cancelled: one update at the end
            if all(e["type"] == EventType.PROGRESS_UPDATE for e in events):
                last = self._parent_reported.get(parent_id)
                if last is not None and now - last < self.min_interval:
                    return
                self._parent_reported.pop(parent_id, None)
                self._parent_reported[parent_id] = now  # most recent last
                if len(self._parent_reported) > self.state_cache_size:
                    del self._parent_reported[next(iter(self._parent_reported))]
        # The child's own write has happened: never fail it for its parent,
        # which catches up at the next change (or the next sweep).
        self._reconcile(parent_id)

    def _reconcile(self, parent_id: str) -> None:
        """:meth:`_update_parent`, any failure logged: another process ending
        the parent meanwhile, or its pruning, is no failure at all."""
        try:
            self._update_parent(parent_id)
        except (Conflict, JobNotFound):
            pass
        except Exception:
            log.exception("could not bring group %s up to date", parent_id)

    @contextlib.contextmanager
    def _quiet(self, parent_id: str) -> Iterator[None]:
        """While this tracker ends a group's children itself, their changes
        leave the parent alone (one update at the end, not a read of every
        child per child)."""
        with self._states_lock:
            self._quiet_parents.add(parent_id)
        try:
            yield
        finally:
            with self._states_lock:
                self._quiet_parents.discard(parent_id)

    def _update_parent(self, parent_id: str) -> None:
        """Bring a parent in line with its children: start it, report them,
        end it once they all have. Each write expects the parent's seq as
        read with the children, so one computed from an older reading never
        lands; another writer's move makes us read and compute again."""
        for _ in range(self.max_retries):
            parent = self.get(parent_id)
            if parent.status.is_terminal:
                return
            children = self.store.list_children(parent_id)
            agg = aggregate(children)
            seq = parent.seq
            try:
                if parent.status is JobStatus.QUEUED:
                    if agg.counts["queued"] == agg.total and not agg.all_ended:
                        return  # nothing has started yet
                    seq = self.apply(parent_id, EventType.JOB_STARTED, expect_seq=seq)[1].seq
                seq = self.apply(
                    parent_id, EventType.PROGRESS_UPDATE, expect_seq=seq, **report(agg)
                )[1].seq
                if agg.all_ended:
                    kind, fields = ending(agg, children)
                    self.apply(parent_id, kind, expect_seq=seq, **fields)
            except Conflict:
                continue  # the parent moved on meanwhile: read it and its children again
            if agg.all_ended:
                with self._states_lock:
                    self._parent_reported.pop(parent_id, None)
            return
        log.warning("group %s: gave up updating it after %d tries", parent_id, self.max_retries)

    def record(
        self,
        job_id: str,
        kind: str | EventType,
        *,
        only_if: JobStatus | None = None,
        expect_seq: int | None = None,
        **fields: Any,
    ) -> list[dict[str, Any]]:
        """Apply one request (``kind`` and its fields) to a job; return its events.
        See :meth:`apply`."""
        return self.apply(job_id, kind, only_if=only_if, expect_seq=expect_seq, **fields)[0]

    def apply(
        self,
        job_id: str,
        kind: str | EventType,
        *,
        only_if: JobStatus | None = None,
        expect_seq: int | None = None,
        run_here: bool = False,
        teach: bool = True,
        **fields: Any,
    ) -> tuple[list[dict[str, Any]], JobState]:
        """Apply one request (``kind`` and its fields) to a job; return its
        events and the job's new state, whose ``cancel_requested`` is what the
        store found as it wrote.

        Used by :class:`ProgressEmitter` and by HTTP ingestion. With
        ``only_if`` (a status) or ``expect_seq``, the request applies only
        while the job is in that status or at that seq (checked atomically
        with the write), else :class:`Conflict`. ``run_here`` marks the job
        as run by this process (:attr:`runner`). ``teach=False``: a
        completion that does not enter the kind's ETA history (from a caller
        not trusted to speak for every user of the pipeline). Raises
        :class:`JobNotFound`, :class:`Conflict` or :class:`InvalidPayload`.
        """
        started = time.perf_counter() if self.observer is not None else 0.0
        with self._lock_for(job_id):
            cached = self._cached(job_id)
            lost_races = 0
            history, history_read = None, False  # read once, even when there is none
            for _ in range(self.max_retries):
                if lost_races:
                    # Lost a race with another writer: back off a little, with
                    # jitter, so the two do not collide again and again.
                    time.sleep(random.uniform(0, 0.001 * 2 ** min(lost_races, 6)))
                state, cached = cached or self.store.get(job_id), None
                if state is None:
                    raise JobNotFound(job_id)
                try:
                    if only_if is not None and state.status is not only_if:
                        raise Conflict(f"job {job_id!r} is {state.status.value}", job_id=job_id)
                    if expect_seq is not None and state.seq != expect_seq:
                        raise Conflict(f"job {job_id!r} moved on to seq {state.seq}", job_id=job_id)
                    if kind == EventType.JOB_STARTED and not history_read:
                        history, history_read = self._history(state), True
                    events, new_state = transition(
                        state, kind, fields, self.clock(), history=history
                    )
                    if run_here:
                        new_state.runner = self.runner
                except (Conflict, InvalidPayload):
                    if self._forget(job_id, state):
                        continue  # judged on our cached copy: judge again on the store's
                    raise
                try:
                    new_state.cancel_requested = self._append(events, new_state)
                except SeqConflict:
                    self._forget(job_id)
                    lost_races += 1
                    continue  # another writer got there first: re-read and re-apply
                self._remember(new_state)
                self._publish(new_state, events)
                # A parent's end follows its children, and its name is whatever
                # its creator chose: it does not teach history (a user could
                # otherwise fill any kind's history through groups).
                if teach and new_state.status is JobStatus.COMPLETED and new_state.children is None:
                    self._learn(new_state)
                break
            else:
                raise Conflict(f"job {job_id!r} is being updated by too many writers; try again")
        if self.observer is not None:
            self._observe("applied", str(kind), time.perf_counter() - started)
        if new_state.parent_id is not None:  # outside the child's lock: the parent takes its own
            self._child_changed(new_state, events)
        return events, new_state

    # ------------------------------------------------------------------ history

    def _history(self, state: JobState) -> History | None:
        """What the store's runs of ``state``'s kind say about its stages."""
        if self.history_runs <= 0:
            return None
        try:
            runs = self.store.runs(state.pipeline, self.history_runs, since=self._history_since())
            return History.learn([s.name for s in state.stages], runs)
        except Exception:  # an ETA is not worth failing a job's start over
            log.warning("ETA history of %r could not be read", state.pipeline, exc_info=True)
            return None

    def _learn(self, state: JobState) -> None:
        """Add a completed job to its kind's history."""
        if self.history_runs <= 0:
            return
        run = run_record(state)
        if run is None:
            return
        try:
            self.store.add_run(
                state.pipeline, run, self.history_runs, max_age=self._history_max_age
            )
        except Exception:  # the job completed; only the next ETA loses
            log.warning("ETA history of %r was not written", state.pipeline, exc_info=True)

    def history(self, kind: str) -> list[dict[str, Any]]:
        """The runs of ``kind`` the ETA learns from, newest first."""
        return self.store.runs(kind, max(1, self.history_runs), since=self._history_since())

    @property
    def _history_max_age(self) -> float:
        return self.history_days * 86400.0

    def _history_since(self) -> float:
        """The oldest finish time a run may have to be learned from."""
        return self.clock() - self._history_max_age

    def reset_history(self, kind: str | None = None) -> int:
        """Forget the ETA history of ``kind`` (of every kind with ``None``);
        return how many runs were forgotten. Running jobs keep what they
        learned when they started."""
        return self.store.reset_history(kind)

    def _cached(self, job_id: str) -> JobState | None:
        with self._states_lock:
            return self._states.get(job_id)

    def _remember(self, state: JobState) -> None:
        with self._states_lock:
            self._states.pop(state.job_id, None)
            if state.status.is_terminal:
                return  # nothing more to write
            self._states[state.job_id] = state  # most recent last
            if len(self._states) > self.state_cache_size:
                del self._states[next(iter(self._states))]

    def _forget(self, job_id: str, state: JobState | None = None) -> bool:
        """Drop the cached state (only if it is ``state``, when given); True
        if something was dropped."""
        with self._states_lock:
            if job_id in self._states and (state is None or self._states[job_id] is state):
                del self._states[job_id]
                return True
            return False

    def job(
        self,
        name: str,
        stages: Any,
        *,
        owner: str,
        job_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        min_interval: float | None = None,
        clock: Callable[[], float] | None = None,
        kind: str | None = None,
        weights: str = "declared",
    ) -> ProgressEmitter:
        """Create and start a job; return its :class:`ProgressEmitter`.
        ``kind`` and ``weights`` as for :meth:`create_job`.

        Use it as a context manager::

            with tracker.job("report", ["parse", "render"], owner="alice") as job:
                with job.stage("parse", total=len(pages)):
                    for page in pages:
                        job.advance()
        """
        state = self.create_job(
            name,
            stages,
            owner=owner,
            job_id=job_id,
            metadata=metadata,
            start=True,
            run_here=True,
            kind=kind,
            weights=weights,
        )
        return self._emitter(state, min_interval, clock)

    def start(
        self,
        job_id: str,
        *,
        min_interval: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> ProgressEmitter:
        """Start a queued job (from :meth:`create_job` or ``POST /api/jobs``)."""
        if self.get(job_id).children is not None:
            raise Conflict(
                f"job {job_id!r} is a group's parent: it starts with its first child", job_id=job_id
            )
        state = self.apply(job_id, EventType.JOB_STARTED, run_here=True)[1]
        return self._emitter(state, min_interval, clock)

    def request_cancel(self, job_id: str, reason: str | None = None) -> JobState:
        """Ask for a job to be cancelled; return its state afterwards.

        A queued job (no pipeline yet) is cancelled at once (``job_cancelled``).
        For a running one the request is stored: its emitter notices within
        ``min_interval`` or at the next stage change, raises
        :class:`JobCancelled` in the pipeline and records ``job_cancelled``;
        HTTP pipelines see ``cancel_requested`` in every ingestion response.
        Raises :class:`Conflict` if the job has already ended.
        """
        reason = reason or "cancelled on request"
        state = self.get(job_id)
        if state.children is not None:
            return self._cancel_group(state, reason)
        if state.status is JobStatus.QUEUED:
            try:
                self.record(
                    job_id, EventType.JOB_CANCELLED, only_if=JobStatus.QUEUED, reason=reason
                )
                return self.get(job_id)
            except Conflict:
                pass  # it started meanwhile: ask the pipeline instead
        if not self.store.request_cancel(job_id, reason, self.clock()):
            state = self.get(job_id)
            raise Conflict(f"job {job_id!r} is already {state.status.value}", job_id=job_id)
        return self.get(job_id)

    def _cancel_group(self, parent: JobState, reason: str) -> JobState:
        """Cancel every child that has not ended; the parent ends with them."""
        if parent.status.is_terminal:
            raise Conflict(
                f"job {parent.job_id!r} is already {parent.status.value}", job_id=parent.job_id
            )
        # Shown on the parent meanwhile.
        self.store.request_cancel(parent.job_id, reason, self.clock())
        with self._quiet(parent.job_id):
            for child in self.store.list_children(parent.job_id):
                if not child.status.is_terminal:
                    with contextlib.suppress(Conflict):  # it ended meanwhile
                        self.request_cancel(child.job_id, reason)
        self._update_parent(parent.job_id)
        return self.get(parent.job_id)

    def fail_stalled(self, stall_seconds: float) -> list[str]:
        """Mark running jobs with no event for ``stall_seconds`` as failed.

        Their pipeline is presumed dead (a killed worker). The error type is
        ``stalled``. Safe to run from several instances at once: a job that
        moves on meanwhile, or that another instance already failed, is left
        alone. Returns the ids failed by this call.
        """
        cutoff = self.clock() - stall_seconds
        failed = []
        for job_id in self.store.stalled(cutoff):
            state = self.store.get(job_id)
            if state is None or state.status is not JobStatus.RUNNING or state.updated_at >= cutoff:
                continue
            if state.children is not None:
                # A parent waits for its children (checked themselves); a
                # quiet one may have missed its last update: bring it in line.
                self._reconcile(job_id)
                continue
            try:
                self.record(
                    job_id,
                    EventType.JOB_FAILED,
                    expect_seq=state.seq,
                    error={
                        "message": f"no progress reported for {stall_seconds:g} s;"
                        " the pipeline is presumed dead",
                        "type": "stalled",
                    },
                )
            except Conflict:
                continue
            failed.append(job_id)
        return failed

    def fail_interrupted(self, started_before: float) -> list[str]:
        """End the jobs that an earlier run of this process left unfinished.

        A pipeline that ran in-process (marked with :attr:`runner`) died with
        the process. Call this when the process starts again, with the time it
        started: each job it marked that is still queued or running and was
        started before then ends as ``job_failed`` with error type
        ``interrupted``. Returns their ids.
        """
        if self.runner is None:
            return []
        unfinished = (JobStatus.QUEUED, JobStatus.RUNNING)
        mine = [
            state
            for state in self._every_job(unfinished)
            if state.runner == self.runner
            and (state.started_at or state.created_at) < started_before
            and state.children is None  # a parent ends with its children
        ]
        failed = []
        for state in mine:
            try:
                self.record(
                    state.job_id,
                    EventType.JOB_FAILED,
                    expect_seq=state.seq,
                    error={
                        "message": "the server restarted while this job ran in it;"
                        " its pipeline is gone",
                        "type": "interrupted",
                    },
                )
            except Conflict:
                continue  # it moved on meanwhile: someone is alive to finish it
            failed.append(state.job_id)
        return failed

    def cancel_overdue(self, grace_seconds: float) -> list[str]:
        """End as ``job_cancelled`` the jobs whose cancellation request has
        waited more than ``grace_seconds`` for its pipeline.

        A pipeline that is alive acknowledges a request at its next report;
        one that does not within the grace is presumed gone (or deaf), and
        the job ends anyway, with a ``reason`` that says so. If the pipeline
        reports later, it gets ``conflict``, as for any ended job. Safe to
        run from several instances at once. Returns the ids ended by this call.
        """
        cutoff = self.clock() - grace_seconds
        ended = []
        for job_id in self.store.cancel_overdue(cutoff):
            state = self.store.get(job_id)
            if state is None or state.status.is_terminal or state.cancel_requested is None:
                continue
            if state.children is not None:
                self._reconcile(job_id)  # a parent ends with its children
                continue
            try:
                self.record(
                    job_id,
                    EventType.JOB_CANCELLED,
                    reason=f"{state.cancel_requested[:400]} (the pipeline did not stop"
                    f" within {grace_seconds:g} s; ended without it)",
                )
            except Conflict:
                continue  # its pipeline acknowledged meanwhile
            ended.append(job_id)
        return ended

    def _every_job(self, status: Sequence[JobStatus], page: int = 500) -> list[JobState]:
        jobs: list[JobState] = []
        while True:
            batch = self.store.list_jobs(owner=None, status=status, limit=page, offset=len(jobs))
            jobs += batch
            if len(batch) < page:
                return jobs

    @classmethod
    def from_urls(
        cls,
        store_url: str,
        message_queue_url: str | None = None,
        *,
        channel: str = "flask-socketio",
        atomic_publish: bool | None = None,
        **kwargs: Any,
    ) -> ProgressTracker:
        """A tracker for a worker process (Celery, RQ, multiprocessing, scripts).

        It stores through ``store_url`` (shared with the server) and publishes
        on ``message_queue_url`` (the server's ``MESSAGE_QUEUE_URL``, same
        ``channel``) in python-socketio's pub/sub format, so no Flask app and
        no eventlet are needed.

        When both URLs name one Redis server (the database number aside), each
        update is stored and published by one Redis script: one round trip,
        and an event is published exactly when it is stored
        (:class:`~progresscast.stores.redis.QueuePublisher`).
        ``atomic_publish=False`` keeps the two steps; ``True`` requires the
        one step (``ValueError`` if the URLs name two servers).

        Otherwise events are published through a write-only python-socketio
        ``RedisManager`` after they are stored. A publish that fails is logged
        and skipped; the event is stored, and clients that resume with
        ``since`` get it.
        """
        from .stores import open_store

        store = open_store(store_url)
        emitter: Any = None
        if message_queue_url:
            url = getattr(store, "url", None)
            if atomic_publish is not False and url is not None:
                from .stores.redis import QueuePublisher, same_server

                if same_server(url, message_queue_url):
                    emitter = QueuePublisher(store, channel)  # type: ignore[arg-type]
            if emitter is None:
                if atomic_publish:
                    store.close()
                    raise ValueError(
                        "atomic_publish needs the store and the message queue on one Redis server"
                    )
                import socketio

                emitter = socketio.RedisManager(
                    message_queue_url,
                    channel=channel,
                    write_only=True,
                    redis_options={"socket_timeout": 2, "socket_connect_timeout": 2},
                )
        return cls(store, emitter, **kwargs)

    def close(self) -> None:
        """Release the store's connections, and those of a write-only
        emitter made by :meth:`from_urls` (a worker's, when it exits)."""
        self.store.close()
        client = getattr(self.emitter, "redis", None)  # python-socketio's RedisManager
        if client is not None and getattr(self.emitter, "write_only", False):
            client.close()

    def _emitter(self, state: JobState, min_interval, clock) -> ProgressEmitter:
        from .emitter import ProgressEmitter

        return ProgressEmitter(
            self,
            state.job_id,
            state.stages,
            min_interval=self.min_interval if min_interval is None else min_interval,
            clock=clock or time.monotonic,
        )

    # ------------------------------------------------------------------- reads

    def get(self, job_id: str) -> JobState:
        """The job's state; :class:`JobNotFound` if there is none."""
        state = self.store.get(job_id)
        if state is None:
            raise JobNotFound(job_id)
        return state

    def snapshot(self, job_id: str) -> dict[str, Any]:
        """The job's wire snapshot, with elapsed time counted up to now."""
        return self.get(job_id).snapshot(self.clock())

    def read_since(self, job_id: str, since: int | None, limit: int) -> JobRead:
        """What a (re)joining reader needs: the job's snapshot and, if ``since``
        is given, every event with ``seq > since`` up to the snapshot's ``seq``.

        ``truncated`` (then no events): the reader cannot continue from
        ``since`` and must start over from the snapshot, because the store no
        longer holds the events right after ``since``, more than ``limit``
        are missing, or ``since`` is past the job's ``seq`` (the store was
        reset). Used by ``join_job``; raises :class:`JobNotFound`.

        Read it *after* subscribing to the job's events: an event stored after
        this read is then delivered live, and nothing falls in between.
        """
        state = self.get(job_id)
        snapshot = state.snapshot(self.clock())
        if since is None:
            return JobRead(state, snapshot, None, False)
        if state.seq - since > limit:
            return JobRead(state, snapshot, [], True)
        events, truncated = self.events_after(job_id, since, state.seq, limit)
        return JobRead(state, snapshot, [] if truncated else events, truncated)

    def events_page(self, job_id: str, since: int, limit: int) -> JobRead:
        """One page of a job's history: at most ``limit`` stored events with
        ``seq > since``, ascending, up to the snapshot's ``seq``.

        ``truncated`` follows :meth:`read_since`'s rule, except that a page
        is not truncated by its ``limit`` (the reader asks for the next page)
        and still holds what the store kept when the events right after
        ``since`` are gone. Used by ``GET /api/jobs/<id>/events``; raises
        :class:`JobNotFound`.
        """
        state = self.get(job_id)
        events, truncated = self.events_after(job_id, since, state.seq, limit)
        return JobRead(state, state.snapshot(self.clock()), events, truncated)

    def events_after(
        self, job_id: str, since: int, seq: int, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` stored events with ``since < seq' <= seq``, and
        whether history cannot be continued from ``since``: the one rule of
        :meth:`read_since` and :meth:`events_page`, for a caller that read
        the job's state (``seq``) already."""
        if since > seq:
            return [], True  # the reader is ahead of the store: it was reset
        if since == seq:
            return [], False
        events = self.store.events_since(job_id, since, limit=min(limit, seq - since))
        # History is trimmed from its oldest end only, so it continues from
        # `since` exactly when its first event after `since` is `since + 1`.
        # Checked on the events read, not on a second read, so a trim in
        # between cannot hide a gap.
        return events, not events or events[0]["seq"] != since + 1

    def list_jobs(
        self,
        owner: str | None,
        status: Sequence[JobStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobState]:
        """Jobs newest first; ``owner=None`` means every owner's."""
        return self.store.list_jobs(owner=owner, status=status, limit=limit, offset=offset)

    def count_jobs(self, owner: str | None, status: Sequence[JobStatus] | None = None) -> int:
        """How many jobs :meth:`list_jobs` would page through."""
        return self.store.count_jobs(owner, status)

    # -------------------------------------------------------------- operations

    def prune(self, older_than: float) -> int:
        """Delete the jobs that ended more than ``older_than`` seconds ago,
        with their history; return how many."""
        return self.store.prune(self.clock() - older_than)

    def ping(self) -> None:
        """Raise if the store cannot serve requests (readiness probes)."""
        self.store.ping()

    def manual_checkpoints(self) -> bool:
        """Leave the store's checkpoints (SQLite's WAL) to :meth:`checkpoint`,
        best called from another OS thread. False, and nothing changes, when
        the store has none to leave."""
        manual = getattr(self.store, "manual_checkpoints", None)
        if manual is None:
            return False
        manual()
        return True

    def checkpoint(self) -> None:
        """Move the store's buffered writes to their final place; safe from
        another OS thread (see :meth:`manual_checkpoints`)."""
        self.store.checkpoint()

    # --------------------------------------------------------------- internals

    def _lock_for(self, job_id: str) -> threading.Lock:
        return self._locks[hash(job_id) % len(self._locks)]

    def _publisher(self) -> Any:
        """The emitter, when the store's append publishes through it
        (:class:`~progresscast.stores.redis.QueuePublisher`), else ``None``."""
        emitter = self.emitter
        if getattr(emitter, "store", None) is self.store and hasattr(emitter, "tail"):
            return emitter
        return None

    def _append(self, events: list[dict[str, Any]], state: JobState) -> str | None:
        """``store.append``, timed for the observer; with a
        :meth:`_publisher`, the store publishes the events as it stores them."""
        started = time.perf_counter() if self.observer is not None else 0.0
        publisher = self._publisher()
        if publisher is None:
            cancel_requested = self.store.append(events, state)
        else:
            tail = publisher.tail(event_rooms(state.job_id, state.owner), self.namespace)
            cancel_requested = self.store.append_publish(  # type: ignore[attr-defined]
                events, state, publisher.channel, tail
            )
        if self.observer is not None:
            self._observe("stored", events, time.perf_counter() - started)
        return cancel_requested

    def _publish(self, state: JobState, events: list[dict[str, Any]]) -> None:
        if self.emitter is None:
            return
        if self._publisher() is not None:  # published by the store's append
            if self.observer is not None:
                self._observe("published", events, 0.0, 0)
            return
        rooms = event_rooms(state.job_id, state.owner)
        started = time.perf_counter() if self.observer is not None else 0.0
        failed = 0
        for event in events:
            try:
                self.emitter.emit(event["type"], event, to=rooms, namespace=self.namespace)
            except Exception:
                # The event is stored; clients that resume with `since` get it.
                failed += 1
                log.exception("could not publish %s seq=%s", event["type"], event["seq"])
        if self.observer is not None:
            self._observe("published", events, time.perf_counter() - started, failed)

    def _observe(self, what: str, *args: Any) -> None:
        # The write is done by now: an observer that fails must not fail it
        # (the caller would retry, or its events would not be published).
        try:
            getattr(self.observer, what)(*args)
        except Exception:
            log.exception("the tracker's observer failed (%s)", what)

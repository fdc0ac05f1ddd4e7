"""``ProgressEmitter``: what pipeline code holds to report progress.

It is built for hot loops. ``advance()`` and ``update()`` only bump counters
under a lock; every ``check_every`` calls it reads the clock, and only when
``min_interval`` has passed since the last report does it forward a
``progress_update`` (the tqdm recipe: a cheap integer check first, the clock
second). ``check_every`` adapts to the call rate, so the clock is read a few
times per interval whether the loop runs at 10 or 10 million calls a second.
As with tqdm's ``miniters``, a loop that suddenly becomes much slower reports
late until the counter has adapted (at most ``MAX_CHECK_EVERY`` calls).

Stage transitions and the end of the job are never throttled, and they carry
the latest unsent progress, which the state machine applies right before the
transition, so watchers always end on the true final state.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InvalidPayload, JobCancelled, StoreUnavailable
from .stages import Stage, overall_progress, stage_index
from .state import EventType

if TYPE_CHECKING:
    from .tracker import ProgressTracker

log = logging.getLogger(__name__)

#: upper bound of the adaptive counter, so a loop that suddenly slows down
#: still reports within about this many calls
MAX_CHECK_EVERY = 10_000
#: clock reads aimed for per min_interval
CHECKS_PER_INTERVAL = 4


class ProgressEmitter:
    """Reports one job's progress to a :class:`ProgressTracker`.

    Get one from :meth:`ProgressTracker.job` (creates and starts a job) or
    :meth:`ProgressTracker.start` (starts a queued one). Safe to call from
    several threads. As a context manager it completes the job on a normal
    exit, and on an exception reports ``job_failed`` (with the stage it
    happened in) and re-raises it.

    Cancellation: once someone asks (``cancel_job``, ``POST .../cancel``), the
    emitter notices within ``min_interval`` of progress calls or at the next
    stage change, records ``job_cancelled`` and raises :class:`JobCancelled`
    in the pipeline; the ``with`` block swallows it and ends early.
    """

    def __init__(
        self,
        tracker: ProgressTracker,
        job_id: str,
        stages: Sequence[Stage],
        *,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        terminal_retry_seconds: float = 30.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.job_id = job_id
        self.terminal_retry_seconds = terminal_retry_seconds
        self._sleep = sleep
        self._last_outage_log = float("-inf")
        self.stages = tuple(stages)
        self.min_interval = min_interval
        self._tracker = tracker
        self._clock = clock
        self._lock = threading.Lock()  # guards the counters below
        self._send_lock = threading.Lock()  # keeps reports in the order they were built
        self._index: int | None = 0  # running stage; None once every stage is done
        # Units done in the running stage = _done + the number of plain
        # advance() calls, counted by _units without a lock (see advance()).
        self._done = 0.0
        self._units = itertools.count()
        self._phantom = 0  # values of _units taken by reads, not by advance()
        self._units_at_check = 0
        self._total: float | None = None
        self._unit: str | None = None
        self._message: str | None = None
        self._calls = 0  # other progress calls since the last clock check
        self._check_every = 1
        self._check_at = 1  # the _units value at which advance() looks at the clock
        self._last_check = clock()
        self._last_sent = self._last_check  # job_started was the first report
        self._sent: tuple | None = None  # (index, done, total, unit, message) last forwarded
        self._finished = False
        self._cancelled = False

    # ---------------------------------------------------------------- reading

    @property
    def current_stage(self) -> str | None:
        """The running stage's name (``None`` once every stage is done)."""
        index = self._index
        return None if index is None else self.stages[index].name

    @property
    def stage_progress(self) -> float | None:
        """Percent of the running stage, or ``None`` without a known total."""
        with self._lock:
            return self._stage_pct()

    @property
    def progress(self) -> float:
        """Overall percent, from the stage weights and the running stage's fraction."""
        with self._lock:
            pct = self._stage_pct() or 0.0
            return overall_progress(self.stages, self._index, pct / 100.0)

    @property
    def finished(self) -> bool:
        """True once the job ended: completed, failed or cancelled."""
        return self._finished

    @property
    def cancelled(self) -> bool:
        """True once this emitter stopped the job on a cancellation request."""
        return self._cancelled

    # -------------------------------------------------------------- hot path

    def advance(self, n: float = 1, message: str | None = None) -> None:
        """Count ``n`` more units of work done in the running stage."""
        if n == 1 and message is None:
            # The common call takes no lock: next() on an itertools.count is
            # one atomic step under the GIL (CPython with the GIL, as we
            # require), so threads never lose a unit. bench/emitter.py: this
            # path costs less than half of tqdm's update(1).
            if next(self._units) < self._check_at:
                return
            self._tick()
            return
        with self._lock:
            self._done += n
            if message is not None:
                self._message = message
            self._calls += 1
            if self._calls < self._check_every:
                return
        self._tick()

    def update(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Set the running stage's progress to ``done`` of ``total`` units."""
        with self._lock:
            self._done = done - self._unit_count()
            if total is not None:
                self._total = total
            if message is not None:
                self._message = message
            self._calls += 1
            if self._calls < self._check_every:
                return
        self._tick()

    def message(self, text: str | None) -> None:
        """Set the human-readable status line; it goes out with the next report."""
        with self._lock:
            self._message = text
        self._tick()

    # ----------------------------------------------------------- transitions

    def stage(self, name: str, total: float | None = None, unit: str | None = None) -> _StageScope:
        """Enter stage ``name`` now, completing the running stage (and skipping
        any between the two).

        Works as a plain call or as a context manager; leaving the ``with``
        block normally completes the stage. ``total`` sets the units that
        :meth:`advance` counts towards, ``unit`` names them (``"rows"``);
        watchers see the count and its rate. Counting without a ``total``
        makes the stage indeterminate: a count and a rate, no percent.
        """
        target = stage_index(self.stages, name)
        with self._send_lock:
            self._raise_if_cancelled()
            current = self._index
            if current == target:
                with self._lock:
                    if total is not None:
                        self._total = total
                    if unit is not None:
                        self._unit = unit
                return _StageScope(self, target)
            if current is not None and target > current:
                self._send(
                    EventType.STAGE_COMPLETED,
                    stage=self.stages[current].name,
                    next_stage=name,
                    **self._pending(),
                )
            else:
                # Backwards, or on after the last stage: the state machine
                # answers Conflict; that rule lives in one place.
                self._send(EventType.PROGRESS_UPDATE, stage=name)
            with self._lock:
                self._index = target
                self._reset_counters(total, unit)
        return _StageScope(self, target)

    def complete_stage(self) -> None:
        """Complete the running stage; the next one in order becomes current."""
        with self._send_lock:
            if self._index is None or self._finished:
                return
            self._send(
                EventType.STAGE_COMPLETED, stage=self.stages[self._index].name, **self._pending()
            )
            with self._lock:
                nxt = self._index + 1
                self._index = nxt if nxt < len(self.stages) else None
                self._reset_counters(None)

    def complete(self, result: Any = None) -> None:
        """End the job successfully; ``result`` (JSON-able) goes to watchers."""
        self._finish(EventType.JOB_COMPLETED, result=result)

    def fail(self, error: BaseException | str | dict) -> None:
        """End the job as failed; ``error`` is an exception, a message or ``{message, type}``."""
        self._finish(EventType.JOB_FAILED, error=error)

    def __enter__(self) -> ProgressEmitter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, JobCancelled) and exc.job_id == self.job_id:
            return True  # recorded already; the block just ends early
        if self._finished:
            return False
        if exc is None:
            self.complete()
            return False
        # KeyboardInterrupt and SystemExit end the job too: report them, or
        # watchers would see it running forever.
        try:
            self.fail(exc)
        except Exception:
            # Never let a reporting problem replace the pipeline's own exception.
            log.exception("could not report the failure of job %s", self.job_id)
        return False  # never swallow the pipeline's exception

    # ------------------------------------------------------------- internals

    def _unit_count(self) -> int:
        """Plain advance() calls so far in this stage. Caller holds ``_lock``."""
        value = next(self._units) - self._phantom
        self._phantom += 1  # this read took a value of the counter too
        return value

    def _stage_pct(self, done: float | None = None) -> float | None:
        if not self._total:
            return None
        if done is None:
            done = self._done + self._unit_count()
        return min(100.0, max(0.0, 100.0 * done / self._total))

    def _reset_counters(self, total: float | None, unit: str | None = None) -> None:
        self._done = 0.0
        self._units = itertools.count()
        self._phantom = 0
        self._units_at_check = 0
        self._check_at = self._check_every
        self._total = total
        self._unit = unit
        self._message = None  # the state machine clears it on a transition too
        self._sent = (self._index, 0.0, total, unit, None)

    def _pending(self) -> dict[str, Any]:
        """Progress not yet forwarded, as request fields; marks it forwarded.

        Transitions carry these fields so the state machine applies the
        latest numbers just before the transition: watchers end on the true
        state without an extra event per transition.
        """
        with self._lock:
            done = self._done + self._unit_count()
            current = (self._index, done, self._total, self._unit, self._message)
            if current == self._sent:
                return {}
            self._sent = current
            self._last_sent = self._clock()
            fields: dict[str, Any] = {"message": self._message}
            pct = self._stage_pct(done)
            if pct is not None:
                fields["stage_progress"] = round(pct, 4)
            if done or self._total or self._unit is not None:
                # The count itself, for its rate (and an indeterminate stage's only news).
                # A total of 0 (no items at all) is no total: nothing to be a share of.
                fields.update(n=done, total=self._total or None, unit=self._unit)
            return fields

    def _tick(self) -> None:
        """Called every ``check_every`` calls: read the clock, maybe report."""
        with self._lock:
            units = self._unit_count()
            calls = units - self._units_at_check + self._calls
            self._units_at_check, self._calls = units, 0
            now = self._clock()
            elapsed = now - self._last_check
            self._last_check = now
            # Aim for CHECKS_PER_INTERVAL clock reads per min_interval at the
            # observed call rate; grow at most 2x per tick, so one quick call
            # right after a slow one cannot push the next check far away.
            grown = min(MAX_CHECK_EVERY, self._check_every * 2)
            if elapsed > 0:
                wanted = int(calls / elapsed * self.min_interval / CHECKS_PER_INTERVAL)
                self._check_every = max(1, min(grown, wanted))
            else:
                self._check_every = grown
            # next(_units) returns units + phantom on the next call: look at the
            # clock again on the check_every-th call from now
            self._check_at = units + self._phantom + self._check_every - 1
            if self._finished or self._index is None or now - self._last_sent < self.min_interval:
                return
        # Another thread reporting already carries (nearly) our numbers;
        # never queue behind it in a hot loop.
        if not self._send_lock.acquire(blocking=False):
            return
        try:
            fields = self._pending() if not self._finished else {}
            if not fields:
                self._raise_if_cancelled()  # nothing to write: ask the store
                return
            # Naming the stage lets the state machine catch up if a
            # transition was lost while the store was unreachable. The write
            # brings back a pending cancellation: no read of its own.
            reason = self._send(EventType.PROGRESS_UPDATE, stage=self.current_stage, **fields)
            if reason is not None:
                self._cancel(reason)
        finally:
            self._send_lock.release()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` now if cancellation was requested.

        ``advance``/``update`` already check at most once per ``min_interval``
        and every stage change does; call this in long stretches without them.
        """
        with self._send_lock:
            self._raise_if_cancelled()

    def _raise_if_cancelled(self) -> None:
        """Caller holds ``_send_lock``. One cheap store read."""
        if self._finished:
            return
        try:
            reason = self._tracker.store.cancel_reason(self.job_id)
        except StoreUnavailable:
            return  # asked again at the next interval
        if reason is not None:
            self._cancel(reason)

    def _cancel(self, reason: str) -> None:
        """Record ``job_cancelled`` and stop the pipeline. Caller holds ``_send_lock``."""
        self._finished = True
        self._cancelled = True
        self._send_terminal(EventType.JOB_CANCELLED, reason=reason, **self._pending())
        raise JobCancelled(self.job_id, reason)

    def _send(self, kind: EventType, **fields: Any) -> str | None:
        """Report to the tracker; return the job's pending cancellation reason,
        if the write found one. A store that cannot be reached must not crash
        the pipeline: a progress update or a transition is dropped (the next
        report names the stage and brings the job up to date); terminal events
        are retried (:meth:`_send_terminal`)."""
        try:
            return self._tracker.apply(self.job_id, kind, **fields)[1].cancel_requested
        except StoreUnavailable as exc:
            self._store_down(kind, exc)
            return None

    def _store_down(self, kind: EventType, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_outage_log > 10:  # one line per outage, not per call
            log.warning(
                "job %s: %s not stored (%s); the pipeline goes on", self.job_id, kind.value, exc
            )
            self._last_outage_log = now

    def _send_terminal(self, kind: EventType, **fields: Any) -> None:
        """The end of a job is retried with backoff for ``terminal_retry_seconds``;
        after that it is logged and the server's stall detection ends the job."""
        deadline = time.monotonic() + self.terminal_retry_seconds
        delay = 0.1
        while True:
            try:
                self._tracker.record(self.job_id, kind, **fields)
                return
            except StoreUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    log.error(
                        "job %s: could not store %s for %ss (%s); giving up",
                        self.job_id,
                        kind.value,
                        self.terminal_retry_seconds,
                        exc,
                    )
                    return
                self._sleep(delay)
                delay = min(delay * 2, 5.0)

    def _finish(self, kind: EventType, **fields: Any) -> None:
        with self._send_lock:
            if self._finished:
                return
            self._finished = True
            try:
                self._send_terminal(kind, **self._pending(), **fields)
            except InvalidPayload:
                # e.g. a result that is not JSON: the job is not over, and a
                # surrounding `with` must still be able to report the failure.
                self._finished = False
                raise


class _StageScope:
    """Returned by :meth:`ProgressEmitter.stage`; completes the stage on a normal exit."""

    def __init__(self, emitter: ProgressEmitter, index: int) -> None:
        self._emitter = emitter
        self._index = index

    def __enter__(self) -> ProgressEmitter:
        return self._emitter

    def __exit__(self, exc_type, exc, tb) -> bool:
        em = self._emitter
        if exc is None and not em.finished and em._index == self._index:
            em.complete_stage()
        return False

"""The job model and its state machine (DESIGN §3), pure: no I/O, no clock.

:func:`transition` takes a job's state, one request (an event type and its
fields) and the time, and returns the events to publish and the new state.
The tracker, the HTTP ingestion endpoint and the emitter all go through it,
so every rule about stages, progress and terminal states lives here.

Requests may imply more than one event: a progress update for a later stage
first completes the current one (``stage_completed``), and ``job_completed``
first completes the stage that was running. The extra events are returned in
order, each with its own ``seq``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .errors import Conflict, InvalidPayload
from .eta import Forecast, RateMeter
from .history import History
from .stages import Stage, is_unicode, normalize_stages, overall_progress, stage_index


class JobStatus(StrEnum):
    """Lifecycle of a job: ``queued → running → completed | failed | cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    SKIPPED = "skipped"  # a later stage was entered before this one ran
    FAILED = "failed"
    CANCELLED = "cancelled"


class EventType(StrEnum):
    """Server → client job events (DESIGN §4)."""

    JOB_QUEUED = "job_queued"
    JOB_STARTED = "job_started"
    PROGRESS_UPDATE = "progress_update"
    STAGE_COMPLETED = "stage_completed"
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z``, as every timestamp on the wire.

    Exactly ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")``
    with ``Z`` for ``+00:00`` (tests/unit/test_state.py compares them), in
    a third of its time: every event is stamped, and a job's events fall
    in the same second, whose text is kept.
    """
    global _iso_second
    if ts is None:
        return None
    # fromtimestamp's own split: microseconds rounded half to even, carried
    # into the second; isoformat then truncates them to milliseconds.
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        us -= 1_000_000
        whole += 1.0
    elif us < 0:
        us += 1_000_000
        whole -= 1.0
    second = int(whole)
    cached = _iso_second
    if cached[0] != second:
        cached = _iso_second = (second, datetime.fromtimestamp(second, UTC).isoformat()[:19])
    return f"{cached[1]}.{us // 1000:03d}Z"


#: the last second :func:`iso` wrote, and its text (one tuple: read and
#: replaced whole, so threads never see one's second with another's text)
_iso_second: tuple[int | None, str] = (None, "")


@dataclass(slots=True)
class JobState:
    """Everything known about one job. ``snapshot()`` is its wire form.

    ``stage_status[i]`` and ``stage_pct[i]`` describe ``stages[i]``; ``stage_index``
    is the running stage (``None`` before start and after the last stage).
    Times are epoch seconds; ``eta`` is the estimator's stored state.
    """

    job_id: str
    name: str
    owner: str
    stages: tuple[Stage, ...]
    status: JobStatus = JobStatus.QUEUED
    stage_status: list[StageStatus] = field(default_factory=list)
    stage_pct: list[float] = field(default_factory=list)
    stage_index: int | None = None
    progress: float = 0.0
    stage_progress: float = 0.0
    message: str | None = None
    eta_seconds: float | None = None
    elapsed_seconds: float | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    result: Any = None
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    eta: dict[str, Any] | None = None
    #: reason of a pending cancellation request; kept by the store beside the
    #: state (a request is not an event and does not take a seq)
    cancel_requested: str | None = None
    #: the server whose process runs this job's pipeline in-process (its
    #: ``ProgressTracker.runner``), so its next start knows the pipeline is
    #: gone; ``None`` for workers and HTTP pipelines. Not on the wire.
    runner: str | None = None
    # The current stage's count (docs/protocol.md, "Counts, units and
    # rates"): n units done of total (None: indeterminate), its unit, the
    # smoothed rate, and the rate meter's stored state (not on the wire).
    n: float | None = None
    total: float | None = None
    unit: str | None = None
    rate: float | None = None
    rate_meter: dict[str, Any] | None = None
    #: a child job's parent ("Groups"); children have their parent's owner
    parent_id: str | None = None
    #: a parent's children by status: {total, completed, failed, cancelled, running, queued}
    children: dict[str, int] | None = None
    #: a child's weight in its parent's progress (not on the wire)
    weight: float = 1.0
    #: the pipeline this job is a run of ("ETA, history and learned
    #: weights"); ``None``: its name
    kind: str | None = None
    #: ``declared``; ``auto`` (learn them at start); ``learned`` (history set them)
    weights_mode: str = "declared"
    eta_low: float | None = None
    eta_high: float | None = None

    def __post_init__(self) -> None:
        if not self.stage_status:
            self.stage_status = [StageStatus.PENDING] * len(self.stages)
            self.stage_pct = [0.0] * len(self.stages)

    def copy(self) -> JobState:
        """A copy to change: the per-stage lists are new, the rest is shared
        (immutable, or never changed in place)."""
        return _copy(self)

    @property
    def pipeline(self) -> str:
        """The job's kind: the one given at creation, else its name."""
        return self.name if self.kind is None else self.kind

    @property
    def weights(self) -> str:
        """``learned`` when history set the stage weights, else ``declared``."""
        return "learned" if self.weights_mode == "learned" else "declared"

    @property
    def stage(self) -> str | None:
        """Name of the running stage, or of the stage the job ended in."""
        if self.stage_index is None:
            return None
        return self.stages[self.stage_index].name

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The job as clients see it (``job`` in acks and REST).

        ``elapsed_seconds`` of a running job is counted up to ``now`` when given,
        so a snapshot read long after the last event is still true.
        """
        elapsed = self.elapsed_seconds
        if now is not None and self.status is JobStatus.RUNNING and self.started_at:
            elapsed = round(max(0.0, now - self.started_at), 3)
        return {
            "job_id": self.job_id,
            "name": self.name,
            "owner": self.owner,
            "status": self.status.value,
            "stages": [
                {
                    "name": s.name,
                    "weight": s.weight,
                    "status": self.stage_status[i].value,
                    "progress": self.stage_pct[i],
                }
                for i, s in enumerate(self.stages)
            ],
            "stage": self.stage,
            "progress": self.progress,
            "stage_progress": self.stage_progress,
            "message": self.message,
            "eta_seconds": self.eta_seconds,
            "eta_low": self.eta_low,
            "eta_high": self.eta_high,
            "elapsed_seconds": elapsed,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "result": self.result,
            "error": self.error,
            "metadata": self.metadata,
            "seq": self.seq,
            "cancel_requested": self.cancel_requested,
            "n": self.n,
            "total": self.total,
            "unit": self.unit,
            "rate": self.rate,
            "parent_id": self.parent_id,
            "children": self.children,
            "kind": self.pipeline,
            "weights": self.weights,
        }

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict a store keeps; :meth:`from_record` reads it back."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "owner": self.owner,
            "stages": [s.to_dict() for s in self.stages],
            "status": self.status.value,
            "stage_status": [s.value for s in self.stage_status],
            "stage_pct": self.stage_pct,
            "stage_index": self.stage_index,
            "progress": self.progress,
            "stage_progress": self.stage_progress,
            "message": self.message,
            "eta_seconds": self.eta_seconds,
            "elapsed_seconds": self.elapsed_seconds,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
            "result": self.result,
            "error": self.error,
            "metadata": self.metadata,
            "seq": self.seq,
            "eta": self.eta,
            "runner": self.runner,
            "n": self.n,
            "total": self.total,
            "unit": self.unit,
            "rate": self.rate,
            "rate_meter": self.rate_meter,
            "parent_id": self.parent_id,
            "children": self.children,
            "weight": self.weight,
            "kind": self.kind,
            "weights_mode": self.weights_mode,
            "eta_low": self.eta_low,
            "eta_high": self.eta_high,
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> JobState:
        data = dict(rec)
        data["stages"] = tuple(Stage(s["name"], s["weight"]) for s in data["stages"])
        data["status"] = JobStatus(data["status"])
        data["stage_status"] = [StageStatus(s) for s in data["stage_status"]]
        data.pop("cancel_requested", None)  # the store's to set, not the record's
        return cls(**data)


_SLOTS = JobState.__slots__


def _copier() -> Any:
    """:meth:`JobState.copy`'s body, one assignment per slot, generated from
    the slots as dataclasses generates ``__init__``: a third of the time of a
    getattr/setattr loop over them, and never out of step with the fields.
    (``dataclasses.replace()`` re-runs ``__init__``: a tenth of a transition.)"""
    lists = ("stage_status", "stage_pct")
    lines = [f"    new.{name} = old.{name}\n" for name in _SLOTS if name not in lists]
    lines += [f"    new.{name} = list(old.{name})\n" for name in lists]
    source = "def copy(old):\n    new = new_state(JobState)\n" + "".join(lines) + "    return new\n"
    namespace: dict[str, Any] = {"new_state": object.__new__, "JobState": JobState}
    exec(source, namespace)  # our own text, from the slot names
    return namespace["copy"]


_copy = _copier()

# --------------------------------------------------------------------------- #
# transitions

_STARTABLE = {None, JobStatus.QUEUED}


def _check_text(value: Any, name: str) -> str | None:
    if value is not None and not (isinstance(value, str) and is_unicode(value)):
        raise InvalidPayload(
            f"{name} must be a (valid Unicode) string or null",
            details={name: ["must be a string or null"]},
        )
    return value


def _check_pct(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidPayload(
            f"{name} must be a finite number (percent 0-100)",
            details={name: ["must be a finite number"]},
        )
    if not 0 <= value <= 100:
        raise InvalidPayload(
            f"{name} must be between 0 and 100, got {value}",
            details={name: ["must be between 0 and 100"]},
        )
    return float(value)


def _check_count(value: Any, name: str, *, positive: bool = False) -> float | None:
    """A count (``n``) or a ``total``: a finite number, at least 0 (a total
    more than 0), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidPayload(
            f"{name} must be a finite number", details={name: ["must be a finite number"]}
        )
    if value < 0 or (positive and value == 0):
        bound = "more than 0" if positive else "at least 0"
        raise InvalidPayload(f"{name} must be {bound}, got {value}", details={name: [bound]})
    return value


def _check_unit(value: Any) -> str | None:
    unit = _check_text(value, "unit")
    if unit is not None and not 0 < len(unit) <= MAX_UNIT:
        raise InvalidPayload(
            f"unit must be 1-{MAX_UNIT} characters", details={"unit": ["1-32 characters"]}
        )
    return unit


#: what a parent's ``children`` counts
CHILD_COUNTS = ("total", "completed", "failed", "cancelled", "running", "queued")


def _check_children(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, Mapping)
        or set(value) - set(CHILD_COUNTS)
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()
        )
    ):
        raise InvalidPayload(
            "children must be an object of counts: " + ", ".join(CHILD_COUNTS),
            details={"children": ["an object of counts"]},
        )
    return {k: int(value.get(k, 0)) for k in CHILD_COUNTS}


#: bounds on what a pipeline may attach to a job (serialised size, nesting)
MAX_JSON_BYTES = 16 * 1024
MAX_JSON_DEPTH = 16
MAX_MESSAGE = 2000
MAX_UNIT = 32
MAX_ERROR_TYPE = 200


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH + 1:
            return depth - 1  # deeper than allowed: no need to walk further
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list | tuple):
                nxt.extend(item)
        level = nxt
    return depth - 1


def _check_json(value: Any, name: str) -> Any:
    """``value`` if it is plain, bounded JSON, else :class:`InvalidPayload`.

    Results and metadata travel to every watcher: no NaN/Infinity (browsers'
    JSON.parse rejects them), at most MAX_JSON_BYTES and MAX_JSON_DEPTH.
    """
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidPayload(
            f"{name} is nested deeper than {MAX_JSON_DEPTH} levels",
            details={name: ["nested too deep"]},
        )
    try:
        size = len(json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidPayload(
            f"{name} must be plain JSON: {str(exc)[:200]}", details={name: ["not plain JSON"]}
        ) from None
    if size > MAX_JSON_BYTES:
        raise InvalidPayload(
            f"{name} is {size} bytes as JSON; the limit is {MAX_JSON_BYTES}",
            details={name: ["too large"]},
        )
    return value


class _Builder:
    """Accumulates the events of one request against a copy of the state."""

    def __init__(self, state: JobState, now: float) -> None:
        self.state = state
        self.now = now
        self.events: list[dict[str, Any]] = []
        self._forecast: Forecast | None = None

    @property
    def forecast(self) -> Forecast:
        """The job's forecast, read from its state once per request."""
        if self._forecast is None:
            self._forecast = Forecast.from_dict(self.state.eta)
        return self._forecast

    def save(self) -> None:
        """Store the forecast back in the state, if this request touched it."""
        if self._forecast is not None:
            self.state.eta = self._forecast.to_dict()

    def emit(self, event_type: EventType, /, **fields: Any) -> None:
        st = self.state
        st.seq += 1
        st.updated_at = self.now
        head = {"job_id": st.job_id, "seq": st.seq, "type": event_type.value, "ts": iso(self.now)}
        self.events.append({**head, **fields})

    def elapsed(self) -> float | None:
        st = self.state
        if st.started_at is None:
            return None
        return round(max(0.0, self.now - st.started_at), 3)

    def recompute(self) -> None:
        st = self.state
        if st.started_at is None:
            return  # a job that never started has made no progress (not 100%)
        fraction = st.stage_progress / 100.0
        st.progress = overall_progress(st.stages, st.stage_index, fraction)
        st.elapsed_seconds = self.elapsed()

    def enter(self, target: int | None) -> None:
        """Complete the running stage and make ``target`` (or nothing) current."""
        st = self.state
        current = st.stage_index
        assert current is not None
        st.stage_status[current] = StageStatus.COMPLETED
        st.stage_pct[current] = 100.0
        self.forecast.enter(self.now, current, target)
        end = len(st.stages) if target is None else target
        for i in range(current + 1, end):
            st.stage_status[i] = StageStatus.SKIPPED
        st.stage_index = target
        st.stage_progress = 0.0
        st.message = None  # a status line belongs to the stage that set it
        st.n = st.total = st.unit = st.rate = st.rate_meter = None  # and so does a count
        if target is not None:
            st.stage_status[target] = StageStatus.RUNNING
            st.stage_pct[target] = 0.0
        self.recompute()
        self.emit(
            EventType.STAGE_COMPLETED,
            stage=st.stages[current].name,
            next_stage=None if target is None else st.stages[target].name,
            progress=st.progress,
            elapsed_seconds=st.elapsed_seconds,
        )

    def goto(self, name: str | None) -> None:
        """Make stage ``name`` current, completing the stages before it."""
        st = self.state
        if name is None or name == st.stage:
            return
        target = stage_index(st.stages, name)
        if st.stage_index is None or target < st.stage_index:
            raise Conflict(
                f"stage {name!r} has already ended; stages only move forward",
                job_id=st.job_id,
            )
        self.enter(target)

    def apply_pending(self, fields: Mapping[str, Any]) -> None:
        """Apply ``stage_progress`` and ``message`` a request carries.

        Transitions accept them too, so a pipeline's last numbers land in the
        state right before the transition without an event of their own.
        """
        st = self.state
        pct = _check_pct(fields.get("stage_progress"), "stage_progress")
        if st.stage_index is not None:
            pct = self.apply_count(fields, pct)
        if pct is not None and st.stage_index is not None:
            st.stage_progress = pct
            st.stage_pct[st.stage_index] = pct
        if "message" in fields:
            message = _check_text(fields.get("message"), "message")
            # A status line, not a log: long ones are cut rather than refused,
            # so a pipeline never fails over its own message.
            st.message = message[:MAX_MESSAGE] if message else message
        self.recompute()

    def apply_count(self, fields: Mapping[str, Any], pct: float | None) -> float | None:
        """Take ``n``, ``total`` and ``unit`` from a request into the running
        stage; return its percent (``pct`` as given, else ``n`` of ``total``)."""
        st = self.state
        if "total" in fields:
            st.total = _check_count(fields["total"], "total", positive=True)
        if "unit" in fields:
            st.unit = _check_unit(fields["unit"])
        if "n" in fields:
            n = _check_count(fields["n"], "n")
            st.n = n
            if n is not None:
                meter = RateMeter.from_dict(st.rate_meter)
                st.rate = meter.observe(self.now, n)
                st.rate_meter = meter.to_dict()
        # Only a request that reports a count moves the percent by it: a
        # group's end carries none, and its percent stays the weighted mean.
        counted = "n" in fields or "total" in fields
        if pct is None and counted and st.n is not None and st.total:
            pct = round(min(100.0, 100.0 * st.n / st.total), 4)
        return pct

    @property
    def indeterminate(self) -> bool:
        """A running stage that counts without a total: no percent, no ETA."""
        st = self.state
        return st.stage_index is not None and st.n is not None and st.total is None

    def observe_eta(self) -> None:
        st = self.state
        if st.stage_index is None:  # every stage done: nothing left but the end
            st.eta_seconds, st.eta_low, st.eta_high = 0.0, None, None
            return
        weights = [s.weight for s in st.stages]
        fraction = st.stage_progress / 100.0
        if self.forecast.started is None and st.started_at is not None:
            # Under way without a forecast (stored before issue 14): rebuild one.
            self.forecast.resume(self.now, st.started_at, len(st.stages), st.stage_index, fraction)
        estimate = self.forecast.observe(self.now, st.stage_index, fraction, weights, st.progress)
        if self.indeterminate:  # counted without a total: nothing honest to say
            st.eta_seconds = st.eta_low = st.eta_high = None
        else:
            st.eta_seconds, st.eta_low, st.eta_high = estimate.eta, estimate.low, estimate.high

    def start(self, history: History | None) -> None:
        """The job starts now, with what its kind's history says (or nothing)."""
        st = self.state
        if st.weights_mode == "auto" and history is not None:
            learned = history.weights()
            if learned is not None:
                st.stages = normalize_stages(
                    [(s.name, w) for s, w in zip(st.stages, learned, strict=True)]
                )
                st.weights_mode = "learned"
        self.forecast.start(self.now, len(st.stages), history)

    def counts(self) -> dict[str, Any]:
        st = self.state
        return {"n": st.n, "total": st.total, "unit": st.unit, "rate": st.rate}


def new_job(
    job_id: str,
    name: str,
    stages: Any,
    owner: str,
    metadata: Mapping[str, Any] | None,
    now: float,
    *,
    parent_id: str | None = None,
    children: int | None = None,
    weight: float = 1.0,
    kind: str | None = None,
    weights: str = "declared",
) -> JobState:
    """A fresh, not yet stored, job in ``queued`` with ``seq`` 0: a child of
    ``parent_id``, or a parent of ``children`` jobs (weighted ``weight`` in
    its parent's progress)."""
    if not isinstance(name, str) or not name.strip() or not is_unicode(name):
        raise InvalidPayload("name must be a non-empty string", details={"name": ["required"]})
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidPayload("metadata must be an object", details={"metadata": ["not an object"]})
    if kind is not None and not (
        isinstance(kind, str) and kind.strip() and len(kind) <= MAX_KIND and is_unicode(kind)
    ):
        raise InvalidPayload(
            f"kind must be a non-empty string of at most {MAX_KIND} characters",
            details={"kind": [f"1-{MAX_KIND} characters"]},
        )
    if weights not in WEIGHT_MODES:
        raise InvalidPayload(
            'weights must be "declared" or "auto"', details={"weights": ["declared or auto"]}
        )
    return JobState(
        job_id=job_id,
        name=name,
        owner=owner,
        stages=normalize_stages(stages),
        metadata=_check_json(dict(metadata or {}), "metadata"),
        created_at=now,
        updated_at=now,
        parent_id=parent_id,
        children=None
        if children is None
        else {**dict.fromkeys(CHILD_COUNTS, 0), "total": children, "queued": children},
        weight=weight,
        kind=kind,
        weights_mode=weights,
    )


#: what a job may ask of its stage weights at creation
WEIGHT_MODES = ("declared", "auto")
#: the longest ``kind`` (as the REST API's ``name``)
MAX_KIND = 200


def transition(
    state: JobState,
    kind: str | EventType,
    fields: Mapping[str, Any],
    now: float,
    *,
    history: History | None = None,
) -> tuple[list[dict[str, Any]], JobState]:
    """Apply one request to ``state`` and return ``(events, new_state)``.

    ``history``: what earlier runs of the job's kind say about its stages,
    taken in by ``job_started`` (the tracker reads it from the store).

    ``state`` is not modified. A fresh job (``seq == 0``) accepts only
    ``job_queued`` or ``job_started``. Raises :class:`Conflict` for an illegal
    transition (anything after a terminal event, a stage going backwards) and
    :class:`InvalidPayload` for bad field values.
    """
    try:
        kind = EventType(kind)
    except ValueError:
        raise InvalidPayload(
            f"unknown event type {kind!r}; expected one of: "
            + ", ".join(e.value for e in EventType),
            details={"type": ["unknown event type"]},
        ) from None
    st = state.copy()
    b = _Builder(st, now)
    status = None if state.seq == 0 else st.status
    if status is not None and status.is_terminal:
        raise Conflict(f"job {st.job_id!r} is already {status.value}", job_id=st.job_id)

    def end_fields() -> dict[str, Any]:
        # The last numbers of a job that stopped early, so a watcher that
        # mirrors events ends exactly where the server's snapshot does.
        return {
            "stage_progress": st.stage_progress,
            "message": st.message,
            "elapsed_seconds": st.elapsed_seconds,
            **b.counts(),
        }

    def job_fields() -> dict[str, Any]:
        return {
            "name": st.name,
            "stages": [s.to_dict() for s in st.stages],
            "owner": st.owner,
            "metadata": st.metadata,
            "parent_id": st.parent_id,
            "children": st.children,
            "kind": st.pipeline,
            "weights": st.weights,
        }

    if kind is EventType.JOB_QUEUED:
        if status is not None:
            raise Conflict(f"job {st.job_id!r} already exists", job_id=st.job_id)
        b.emit(kind, **job_fields())
    elif kind is EventType.JOB_STARTED:
        if status not in _STARTABLE:
            raise Conflict(f"job {st.job_id!r} has already started", job_id=st.job_id)
        st.status = JobStatus.RUNNING
        st.started_at = now
        st.stage_index = 0
        st.stage_status[0] = StageStatus.RUNNING
        b.start(history)
        b.recompute()
        b.emit(kind, **job_fields())
    elif status is not JobStatus.RUNNING and kind in (
        EventType.PROGRESS_UPDATE,
        EventType.STAGE_COMPLETED,
        EventType.JOB_COMPLETED,
    ):
        state_name = "new" if status is None else status.value
        raise Conflict(f"job {st.job_id!r} is {state_name}, not running", job_id=st.job_id)
    elif kind is EventType.PROGRESS_UPDATE:
        stage = _check_text(fields.get("stage"), "stage")
        if st.stage_index is None and stage is None:
            raise Conflict("every stage has completed; nothing left to report", job_id=st.job_id)
        b.goto(stage)
        b.apply_pending(fields)
        if "children" in fields:
            if st.children is None:  # a parent is made so when it is created
                raise InvalidPayload(
                    "only a group's parent has children", details={"children": ["not a parent"]}
                )
            st.children = _check_children(fields["children"])
        b.observe_eta()
        b.emit(
            kind,
            stage=st.stage,
            stage_progress=st.stage_progress,
            progress=st.progress,
            message=st.message,
            eta_seconds=st.eta_seconds,
            elapsed_seconds=st.elapsed_seconds,
            **b.counts(),
            children=st.children,
            eta_low=st.eta_low,
            eta_high=st.eta_high,
        )
    elif kind is EventType.STAGE_COMPLETED:
        stage = _check_text(fields.get("stage"), "stage")
        next_stage = _check_text(fields.get("next_stage"), "next_stage")
        if st.stage_index is None:
            raise Conflict("every stage has already completed", job_id=st.job_id)
        b.apply_pending(fields)
        b.goto(stage)
        if next_stage is None:
            nxt = st.stage_index + 1
            target = nxt if nxt < len(st.stages) else None
        else:
            target = stage_index(st.stages, next_stage)
            if target <= st.stage_index:
                raise Conflict(
                    f"next_stage {next_stage!r} is not after the current stage", job_id=st.job_id
                )
        b.enter(target)
    elif kind is EventType.JOB_COMPLETED:
        b.apply_pending(fields)
        if st.stage_index is not None:
            b.enter(None)
        st.status = JobStatus.COMPLETED
        st.finished_at = now
        st.progress = 100.0
        st.eta_seconds = 0.0
        st.eta_low = st.eta_high = None
        st.elapsed_seconds = b.elapsed()
        st.result = _check_json(fields.get("result"), "result")
        b.emit(
            kind,
            progress=100.0,
            result=st.result,
            elapsed_seconds=st.elapsed_seconds,
            message=st.message,
        )
    else:  # job_failed, job_cancelled: from queued or running
        if status is None:
            raise Conflict(f"job {st.job_id!r} does not exist yet", job_id=st.job_id)
        failed = kind is EventType.JOB_FAILED
        b.apply_pending(fields)
        st.status = JobStatus.FAILED if failed else JobStatus.CANCELLED
        st.finished_at = now
        st.eta_seconds = st.eta_low = st.eta_high = None
        st.elapsed_seconds = b.elapsed()
        if st.stage_index is not None:
            st.stage_status[st.stage_index] = (
                StageStatus.FAILED if failed else StageStatus.CANCELLED
            )
        if failed:
            st.error = _error_object(fields.get("error"), st.stage)
            b.emit(
                kind,
                stage=st.stage,
                error={"message": st.error["message"], "type": st.error["type"]},
                progress=st.progress,
                **end_fields(),
            )
        else:
            reason = _check_text(fields.get("reason"), "reason")
            b.emit(kind, stage=st.stage, progress=st.progress, reason=reason, **end_fields())
    b.save()
    return b.events, st


def _error_object(error: Any, stage: str | None) -> dict[str, Any]:
    """Normalise what a pipeline reports as an error to ``{message, stage, type}``."""
    if isinstance(error, BaseException):
        message, kind = str(error) or type(error).__name__, type(error).__name__
        # Whatever an exception says must still be storable and readable.
        message = message[:MAX_MESSAGE].encode("utf-8", "replace").decode("utf-8")
    elif isinstance(error, str):
        if not is_unicode(error):
            raise InvalidPayload("error must be valid Unicode", details={"error": ["invalid"]})
        message, kind = error[:MAX_MESSAGE], "Error"
    elif isinstance(error, Mapping):
        message = error.get("message")
        kind = error.get("type") or "Error"
        if (
            not isinstance(message, str)
            or not isinstance(kind, str)
            or not (is_unicode(message) and is_unicode(kind))
            or len(message) > MAX_MESSAGE
            or len(kind) > MAX_ERROR_TYPE
        ):
            raise InvalidPayload(
                f"error needs a string 'message' (at most {MAX_MESSAGE} characters) and an"
                f" optional string 'type' (at most {MAX_ERROR_TYPE})",
                details={"error": ["needs a bounded string message"]},
            )
    elif error is None:
        message, kind = "job failed", "Error"
    else:
        raise InvalidPayload(
            "error must be a string or {message, type}", details={"error": ["wrong type"]}
        )
    return {"message": message, "stage": stage, "type": kind}

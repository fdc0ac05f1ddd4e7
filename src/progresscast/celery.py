"""Celery integration: a task's job follows the task, from the send to the end.

::

    from celery import Celery
    from progresscast.celery import ProgressTask

    app = Celery("videos", broker="redis://localhost:6379/1")
    app.conf.progresscast_store_url = "redis://localhost:6379/0"          # the server's STORE_URL
    app.conf.progresscast_message_queue_url = "redis://localhost:6379/0"  # its MESSAGE_QUEUE_URL

    @app.task(base=ProgressTask, bind=True, stages=[("download", 1), ("transcode", 3)])
    def transcode(self, video_id):
        with self.progress.stage("download"):
            ...
        with self.progress.stage("transcode", total=frames):
            for frame in range(frames):
                ...
                self.progress.advance()
        return {"frames": frames}

    result = transcode.apply_async((42,), progress={"owner": user_id, "name": "Video 42"})
    result.id   # the job's id: browsers watch it

Sending creates the job (``job_queued``, the task id is the job id); Celery's
signals do the rest: ``task_prerun`` starts it, ``task_success`` completes it
with the return value, ``task_failure`` fails it, ``task_retry`` says so on
the job, ``task_revoked`` cancels it. A user's ``cancel_job`` stops the task
at its next ``advance`` or stage change. See docs/celery.md.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from celery import Task, signals
    from celery.exceptions import Ignore
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'progresscast.celery needs Celery: pip install "progresscast[celery]"'
    ) from exc

from .emitter import ProgressEmitter
from .errors import Conflict, InvalidPayload, JobCancelled, JobNotFound, ProgressCastError
from .stages import normalize_stages, stage_index
from .state import EventType, JobStatus
from .tracker import ProgressTracker

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

__all__ = ["PROGRESS_KEYS", "ProgressTask", "get_tracker", "progress_group"]

#: the keys of the ``progress={...}`` option of ``apply_async``
PROGRESS_KEYS = ("owner", "name", "metadata", "stages", "kind", "weights")

#: (celery setting, environment variable, default) of each setting
_SETTINGS = {
    "store_url": ("progresscast_store_url", "PROGRESSCAST_STORE_URL", None),
    "message_queue_url": ("progresscast_message_queue_url", "PROGRESSCAST_MESSAGE_QUEUE_URL", None),
    "channel": ("progresscast_channel", "PROGRESSCAST_SOCKETIO_CHANNEL", "flask-socketio"),
    "min_interval": ("progresscast_min_interval", "PROGRESSCAST_MIN_INTERVAL", 0.1),
}

# Attributes set on a running task's request (celery's Context, one per
# execution and thread).
_EMITTER = "progresscast_emitter"
_PROBLEM = "progresscast_problem"

#: results larger than this as a repr are cut (the protocol's message bound is 2000)
_MAX_REPR = 1000


# --------------------------------------------------------------- settings


def _setting(app: Celery, key: str) -> Any:
    name, env, default = _SETTINGS[key]
    value = app.conf.get(name)
    if value in (None, ""):
        value = os.environ.get(env) or default
    return value


# trackers[(pid, store_url, message_queue_url, channel, min_interval)] = tracker.
# Keyed by process id: a forked child (Celery's prefork pool) makes its own
# and never touches its parent's SQLite connection or Redis clients, which
# stay referenced here so that the child's garbage collector does not close
# them under the parent either.
_trackers: dict[tuple, ProgressTracker] = {}
_trackers_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _trackers_lock
    _trackers_lock = threading.Lock()  # a lock held by another thread at fork stays held


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def get_tracker(app: Celery | None = None) -> ProgressTracker:
    """The :class:`ProgressTracker` this process uses for ``app``'s progress
    tasks (the current app by default), made on first use, one per process.

    Settings, from ``app.conf`` or else the environment:
    ``progresscast_store_url`` (``PROGRESSCAST_STORE_URL``, required: the
    server's store), ``progresscast_message_queue_url``
    (``PROGRESSCAST_MESSAGE_QUEUE_URL``: the server's message queue; without
    it events are stored but not pushed live), ``progresscast_channel``
    (``PROGRESSCAST_SOCKETIO_CHANNEL``, ``flask-socketio``),
    ``progresscast_min_interval`` (``PROGRESSCAST_MIN_INTERVAL``, 0.1 s).
    """
    if app is None:
        from celery import current_app

        app = current_app
    store_url = _setting(app, "store_url")
    if not store_url:
        raise RuntimeError(
            "progresscast needs the job store's URL (the server's STORE_URL):"
            " set app.conf.progresscast_store_url or PROGRESSCAST_STORE_URL"
        )
    queue_url = _setting(app, "message_queue_url")
    channel = _setting(app, "channel")
    min_interval = float(_setting(app, "min_interval"))
    key = (os.getpid(), store_url, queue_url, channel, min_interval)
    with _trackers_lock:
        tracker = _trackers.get(key)
        if tracker is None:
            if not queue_url:
                log.warning(
                    "progresscast: no message queue URL (progresscast_message_queue_url or"
                    " PROGRESSCAST_MESSAGE_QUEUE_URL): this process's events are stored but"
                    " reach browsers only when they rejoin"
                )
            tracker = ProgressTracker.from_urls(
                store_url, queue_url, channel=channel, min_interval=min_interval
            )
            _trackers[key] = tracker
    return tracker


@signals.worker_process_shutdown.connect(dispatch_uid="progresscast.celery.process_shutdown")
@signals.worker_shutdown.connect(dispatch_uid="progresscast.celery.worker_shutdown")
def _close_trackers(**_: Any) -> None:
    """A worker (or a prefork child) that exits releases its trackers' connections."""
    pid = os.getpid()
    with _trackers_lock:
        mine = [key for key in _trackers if key[0] == pid]
        trackers = [_trackers.pop(key) for key in mine]
    for tracker in trackers:
        try:
            tracker.close()
        except Exception:  # pragma: no cover - best effort at exit
            log.debug("progresscast: closing a tracker failed", exc_info=True)


# ------------------------------------------------------------------ sending


def _stage_specs(stages: Any) -> Any:
    """Stages as declared or sent; ``[name, weight]`` lists (what a tuple
    becomes in a serialized signature) count as pairs."""
    if isinstance(stages, str | Mapping):
        return [stages] if isinstance(stages, str) else stages
    return [tuple(s) if isinstance(s, list) and len(s) == 2 else s for s in stages]


def _parse_progress(task: ProgressTask, progress: Any) -> dict[str, Any]:
    """The ``progress={...}`` option of a send, checked: owner, name, stages, metadata."""
    example = "apply_async(args, progress={'owner': user_id, 'name': 'Import'})"
    if progress is None:
        raise ValueError(
            f"{task.name} is a ProgressTask: its job needs an owner (the user who may"
            f" watch it); send it with {example}, or .set(progress={{...}}) on a signature"
        )
    if not isinstance(progress, Mapping):
        raise TypeError(
            f"progress must be a dict like {{'owner': ..., 'name': ...}}, got {progress!r}"
        )
    unknown = sorted(set(progress) - set(PROGRESS_KEYS))
    if unknown:
        raise TypeError(
            f"progress: unknown key(s) {', '.join(map(repr, unknown))};"
            f" expected {', '.join(PROGRESS_KEYS)}"
        )
    owner = progress.get("owner")
    if not isinstance(owner, str) or not owner:
        raise TypeError(
            f"progress['owner'] must be the owner's user id as a non-empty string"
            f" (as your user_loader returns it), got {owner!r}"
        )
    name = progress.get("name") or task.progress_name or task.name
    metadata = progress.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"progress['metadata'] must be a dict, got {type(metadata).__name__}")
    stages = progress.get("stages")
    return {
        "owner": owner,
        "name": name,
        "metadata": metadata,
        "stages": _stage_specs(task.stages if stages is None else stages),
        # Every run of a task is a run of one pipeline, whatever its job's name.
        "kind": progress.get("kind") or task.name,
        "weights": progress.get("weights") or task.progress_weights,
    }


# ----------------------------------------------------------------- the task


class ProgressTask(Task):
    """Base class of a task whose run is a progresscast job.

    ::

        @app.task(base=ProgressTask, bind=True, stages=[("download", 1), ("transcode", 3)])
        def transcode(self, video_id):
            with self.progress.stage("transcode", total=n):
                ...
                self.progress.advance()

        transcode.apply_async((42,), progress={"owner": user_id, "name": "Video 42"})

    Task options (``@app.task(..., stages=..., progress_name=...)``):
    :attr:`stages`, :attr:`progress_name` and :attr:`progress_weights`. Send options
    (``apply_async(..., progress={...})``): ``owner`` (required), ``name``,
    ``metadata``, ``stages`` (instead of the task's), ``kind`` (default: the task's
    name), ``weights``.
    """

    #: the job's stages: names (equal weights), ``(name, weight)`` pairs or a
    #: ``{name: weight}`` mapping (as for ``ProgressTracker.job``)
    stages: Any = ("run",)
    #: the job's name when the sender gives none; ``None``: the task's name
    progress_name: str | None = None
    #: ``"auto"``: stage weights learned from the task's past runs (its jobs'
    #: kind is the task's name unless the sender gives ``kind``)
    progress_weights: str = "declared"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A bad declaration fails when Celery creates the task (a worker's
        # start, the task's first use), not at some later send.
        normalize_stages(_stage_specs(cls.stages))

    @property
    def progress(self) -> ProgressEmitter:
        """The job's :class:`ProgressEmitter`, while the task runs in a worker."""
        emitter = getattr(self.request, _EMITTER, None)
        if emitter is None:
            raise RuntimeError(
                f"{self.name}: self.progress exists only while the task runs in a worker"
                " (or eagerly), sent with apply_async(..., progress={'owner': ...})"
            )
        return emitter

    def apply_async(
        self,
        args=None,
        kwargs=None,
        task_id=None,
        producer=None,
        link=None,
        link_error=None,
        shadow=None,
        progress: Mapping[str, Any] | None = None,
        **options,
    ):
        """Send the task, as Celery's ``apply_async``, after creating its job
        (``job_queued``) under the task's id.

        ``progress``: ``{"owner": user_id, "name": ..., "metadata": {...},
        "stages": [...]}``; ``owner`` is required (``ValueError`` without
        it). A retry (Celery sends it with ``retries``) and a send under the id
        of a job still queued or running continue that job instead. If the
        message cannot be sent, the job fails (``error.type`` ``not_sent``).
        """
        send = super().apply_async
        if not options.get("retries") and not self._continues(task_id, progress):
            task_id = self._create_job(task_id, progress)
            try:
                return send(args, kwargs, task_id, producer, link, link_error, shadow, **options)
            except Exception as exc:
                _not_sent(self, task_id, exc)
                raise
        return send(args, kwargs, task_id, producer, link, link_error, shadow, **options)

    def apply(
        self,
        args=None,
        kwargs=None,
        link=None,
        link_error=None,
        task_id=None,
        retries=None,
        throw=None,
        logfile=None,
        loglevel=None,
        headers=None,
        progress: Mapping[str, Any] | None = None,
        **options,
    ):
        """Run the task here, as Celery's ``apply``; with ``progress`` (an
        eager chain's signatures carry it), after creating its job."""
        if progress is not None and not retries and not self._continues(task_id, None):
            task_id = self._create_job(task_id, progress)
        return super().apply(
            args,
            kwargs,
            link,
            link_error,
            task_id,
            retries,
            throw,
            logfile,
            loglevel,
            headers,
            **options,
        )

    def _create_job(self, task_id: str | None, progress: Any) -> str:
        """Store ``job_queued`` for a send; return the task id (made if none)."""
        task_id = task_id or str(uuid.uuid4())
        spec = _parse_progress(self, progress)
        get_tracker(self.app).create_job(
            spec["name"],
            spec["stages"],
            owner=spec["owner"],
            job_id=task_id,
            metadata=spec["metadata"],
            kind=spec["kind"],
            weights=spec["weights"],
        )
        return task_id

    def _continues(self, task_id: str | None, progress: Any) -> bool:
        """A send without ``progress`` under the id of a job that is still
        queued or running (``Task.replace``, a manual re-send) continues it."""
        if task_id is None or progress is not None:
            return False
        state = get_tracker(self.app).store.get(task_id)
        return state is not None and not state.status.is_terminal

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        problem = getattr(request, _PROBLEM, None)
        if isinstance(problem, _JobEnded):
            self._stop_quietly(request, problem.reason)  # the job ended before it ran
        if problem is not None:
            raise problem
        if request.called_directly:
            return super().__call__(*args, **kwargs)  # task(...): a plain call, no job
        try:
            # Celery's tracer has pushed this run's request: run the task under
            # it (Task.__call__ would push a bare one outside a worker, where
            # eager runs would lose self.progress).
            return self.run(*args, **kwargs)
        except JobCancelled as exc:
            if exc.job_id != request.id:
                raise  # another job's (a pipeline inside the task): not ours to handle
            self._stop_quietly(request, exc.reason)

    def _stop_quietly(self, request: Any, reason: str | None) -> None:
        """End the execution as Celery's ``REVOKED``, without a traceback:
        the job is over already (cancelled, or ended before this run)."""
        ignored = getattr(request, "ignore_result", None) or self.ignore_result
        self.backend.mark_as_revoked(
            request.id,
            reason or "cancelled",
            request=request,
            store_result=self.store_errors_even_if_ignored if ignored else True,
        )
        raise Ignore(f"progresscast job {request.id} ended: {reason}") from None


def progress_group(
    signatures: Any,
    *,
    owner: str,
    name: str,
    metadata: Mapping[str, Any] | None = None,
    app: Celery | None = None,
):
    """Send ``signatures`` (of ProgressTasks) as a Celery ``group`` whose
    tasks are the children of one parent job; return the ``GroupResult``,
    whose ``id`` is the parent's ``job_id``.

    ::

        result = progress_group(
            [transcode.s(v).set(progress={"name": f"Video {v}"}) for v in videos],
            owner=user_id, name=f"Import {len(videos)} videos",
        )

    Each child is named by its signature's ``progress={"name": ...}`` (else
    the task's ``progress_name`` or name and its place), with the task's
    stages. The parent follows the children (docs/protocol.md, "Groups"):
    cancelling it cancels every task still to finish. Children that cannot
    be sent fail (``not_sent``), so the group still ends.
    """
    from celery import group

    sigs = [sig.clone() for sig in signatures]
    if not sigs:
        raise ValueError("progress_group needs at least one signature")
    specs, sent = [], []  # sent: (task, job id) of each child
    for index, sig in enumerate(sigs):
        task = (app or sig.app or _current_app()).tasks[sig.task]
        if not isinstance(task, ProgressTask):
            raise TypeError(f"{sig.task} is not a ProgressTask: it cannot be a child job")
        given = sig.options.pop("progress", None) or {}
        unknown = sorted(set(given) - {"name", "metadata", "stages", "kind"})
        if unknown:
            raise TypeError(f"a child's progress takes name, metadata, stages, kind; not {unknown}")
        job_id = sig.options.get("task_id") or str(uuid.uuid4())
        sig.set(task_id=job_id)
        sent.append((task, job_id))
        specs.append(
            {
                "name": given.get("name") or f"{task.progress_name or task.name} {index + 1}",
                "stages": _stage_specs(given.get("stages") or task.stages),
                "job_id": job_id,
                "metadata": given.get("metadata"),
                "kind": given.get("kind") or task.name,
            }
        )
    tracker = get_tracker(app or sigs[0].app)
    parent_id = str(uuid.uuid4())
    tracker.group(name, specs, owner=owner, job_id=parent_id, metadata=metadata)
    try:
        # Each send finds its job queued and continues it (ProgressTask._continues).
        return group(sigs).apply_async(task_id=parent_id)
    except Exception as exc:
        for task, job_id in sent:
            _not_sent(task, job_id, exc)
        raise


def _current_app():
    """Celery's current app (for signatures made without one)."""
    from celery import current_app

    return current_app


class _JobEnded(Exception):
    """The job of a task about to run has already ended (cancelled while queued...)."""

    def __init__(self, job_id: str, status: JobStatus, reason: str) -> None:
        super().__init__(f"job {job_id!r} is already {status.value}: {reason}")
        self.reason = reason


class _TaskEmitter(ProgressEmitter):
    """``self.progress``: a :class:`ProgressEmitter` that also stops the task
    when its worker was told to revoke it (the threads pool cannot terminate
    a thread), and, for a retried task, catches up with its job.

    A retry runs the task again from the start, but the job's stages only
    move forward: ``resume_at`` is the stage the job is in, and reports about
    stages before it are dropped until the task gets back there.
    """

    def __init__(self, tracker: ProgressTracker, job_id: str, stages, *, resume_at=None) -> None:
        super().__init__(tracker, job_id, stages, min_interval=tracker.min_interval)
        self._resume_at: int | None = resume_at

    def _behind(self) -> bool:
        resume_at = self._resume_at
        if resume_at is None:
            return False
        index = self._index
        if index is None or index >= resume_at:
            self._resume_at = None  # caught up: an ordinary emitter from now on
            return False
        return True

    def _revoked(self) -> bool:
        from celery.worker import state as worker_state

        return self.job_id in worker_state.revoked

    def _pending(self) -> dict[str, Any]:
        fields = super()._pending()
        return {} if self._behind() else fields  # an earlier stage's numbers

    def _raise_if_cancelled(self) -> None:
        if not self._finished and self._revoked():
            self._cancel("the task was revoked")
        super()._raise_if_cancelled()

    def _send(self, kind: EventType, **fields: Any) -> str | None:
        if not self._finished and self._revoked():
            self._cancel("the task was revoked")
        if self._behind():
            resume_at = self._resume_at
            assert resume_at is not None and self._index is not None
            if kind is EventType.PROGRESS_UPDATE and fields.get("stage") is not None:
                target = stage_index(self.stages, fields["stage"])
                if self._index <= target < resume_at:
                    return None  # a stage the job has passed: nothing to say
            elif kind is EventType.STAGE_COMPLETED:
                nxt = fields.get("next_stage")
                target = self._index + 1 if nxt is None else stage_index(self.stages, nxt)
                if target <= resume_at:
                    return None  # still at or before the job's stage
                fields["stage"] = None  # complete the job's stage, not ours
        return super()._send(kind, **fields)

    def note(self, message: str) -> None:
        """Report ``message`` now, with the latest progress (never throttled)."""
        with self._send_lock:
            if self._finished:
                return
            fields = self._pending()
            fields["message"] = message
            stage = None if self._behind() else self.current_stage
            self._send(EventType.PROGRESS_UPDATE, stage=stage, **fields)


# ------------------------------------------------------------------ signals


def _current_emitter(task: ProgressTask, task_id: str | None) -> _TaskEmitter | None:
    emitter = getattr(task.request, _EMITTER, None)
    return emitter if emitter is not None and emitter.job_id == task_id else None


def _not_sent(task: Task, job_id: str, exc: BaseException) -> None:
    """A queued job whose task could not be sent fails (``not_sent``), so
    nobody waits for it."""
    message = f"the task was not sent: {exc}"[:2000]
    _end(
        task,
        job_id,
        EventType.JOB_FAILED,
        only_if=JobStatus.QUEUED,
        error={"type": "not_sent", "message": message},
    )


def _end(task: Task, job_id: str, kind: EventType, **fields: Any) -> None:
    """Record a job's end from outside its run (the worker's main process,
    a failed send). A job that has already ended is left as it is."""
    try:
        get_tracker(task.app).record(job_id, kind, **fields)
    except (Conflict, JobNotFound):
        pass
    except Exception:
        # Stall detection (or the cancel grace) ends it on the server.
        log.exception("progresscast: could not record %s for job %s", kind.value, job_id)


def _open(task: ProgressTask, job_id: str) -> _TaskEmitter:
    """Start the job of a task about to run, or rejoin it (a retry, a
    redelivery); :class:`_JobEnded` if it has already ended."""
    tracker = get_tracker(task.app)
    for _ in range(3):
        state = tracker.get(job_id)
        if state.status is JobStatus.QUEUED:
            try:
                state = tracker.apply(job_id, EventType.JOB_STARTED)[1]
            except Conflict:
                continue  # cancelled or started meanwhile: look again
            return _TaskEmitter(tracker, job_id, state.stages)
        if state.status is JobStatus.RUNNING:
            resume_at = len(state.stages) if state.stage_index is None else state.stage_index
            return _TaskEmitter(tracker, job_id, state.stages, resume_at=resume_at)
        break
    reason = state.cancel_requested or (
        f"its job is already {state.status.value}; a job's end is final"
    )
    raise _JobEnded(job_id, state.status, reason)


@signals.task_prerun.connect(dispatch_uid="progresscast.celery.prerun")
def _on_prerun(sender=None, task_id=None, task=None, **_: Any) -> None:
    """``job_started`` (a retry or a redelivery rejoins the running job)."""
    if not isinstance(task, ProgressTask):
        return
    request = task.request
    try:
        setattr(request, _EMITTER, _open(task, task_id))
    except JobNotFound:
        problem = LookupError(
            f"no progresscast job {task_id!r} for this {task.name} task: jobs are created"
            " when the task is sent with apply_async (app.send_task by name creates none)"
        )
        setattr(request, _PROBLEM, problem)
    except Exception as exc:  # _JobEnded, or the store is unreachable: __call__ raises it
        setattr(request, _PROBLEM, exc)


@signals.task_success.connect(dispatch_uid="progresscast.celery.success")
def _on_success(sender=None, result=None, **_: Any) -> None:
    """``job_completed`` with the return value as ``result`` (its repr if it
    is not plain JSON of at most 16 KiB)."""
    if not isinstance(sender, ProgressTask):
        return
    emitter = _current_emitter(sender, sender.request.id)
    if emitter is None or emitter.finished:
        return  # the task ended its job itself (self.progress.complete(...))
    try:
        try:
            emitter.complete(result)
        except InvalidPayload:
            text = repr(result)
            emitter.complete(text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 1] + "…")
    except Conflict as exc:
        _ended_meanwhile(emitter.job_id, exc)


def _ended_meanwhile(job_id: str, exc: Conflict) -> None:
    # The server ended the job first (stall detection, a cancel its grace
    # ran out on): the task's own end comes too late to be recorded.
    log.warning("progresscast: job %s had already ended: %s", job_id, exc)


def _error_of(exc: BaseException | None) -> Any:
    """What ``job_failed`` says about ``exc``: its type's name and message."""
    wrapped = getattr(exc, "exc_cls_name", None)  # celery's UnpickleableExceptionWrapper
    if wrapped:
        return {"type": str(wrapped)[:200], "message": str(getattr(exc, "text", exc))[:2000]}
    return exc


@signals.task_failure.connect(dispatch_uid="progresscast.celery.failure")
def _on_failure(sender=None, task_id=None, exception=None, **_: Any) -> None:
    """``job_failed`` with the exception's type and message, in the stage it
    happened in. In the worker's main process (a pool child was lost, a
    message rejected) the job fails from there."""
    if not isinstance(sender, ProgressTask):
        return
    emitter = _current_emitter(sender, task_id)
    if emitter is None:
        _end(sender, task_id, EventType.JOB_FAILED, error=_error_of(exception))
    elif not emitter.finished:
        try:
            emitter.fail(_error_of(exception))
        except Conflict as exc:
            _ended_meanwhile(emitter.job_id, exc)


def _retry_message(task: Task, request: Any, reason: Any) -> str:
    """``retrying in 5s (attempt 2 of 4): ConnectionError: timed out``"""
    when = reason.humanize() if hasattr(reason, "humanize") else "soon"
    limit = task.__dict__.get("override_max_retries", task.max_retries)
    attempt = (request.retries or 0) + 2  # the one about to be scheduled
    of = f" of {limit + 1}" if limit is not None else ""
    exc = getattr(reason, "exc", None)
    cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return f"retrying {when} (attempt {attempt}{of}){cause}"


@signals.task_retry.connect(dispatch_uid="progresscast.celery.retry")
def _on_retry(sender=None, request=None, reason=None, **_: Any) -> None:
    """A ``progress_update`` whose message says when the next attempt runs and
    why; the job stays running (the next attempt rejoins it)."""
    if not isinstance(sender, ProgressTask) or request is None:
        return
    emitter = _current_emitter(sender, request.id)
    if emitter is None:
        return
    try:
        emitter.note(_retry_message(sender, request, reason))
    except (ProgressCastError, JobCancelled) as exc:
        log.info("progresscast: job %s: retry not reported (%s)", request.id, exc)


@signals.task_revoked.connect(dispatch_uid="progresscast.celery.revoked")
def _on_revoked(sender=None, request=None, terminated=False, expired=False, **_: Any) -> None:
    """``job_cancelled``: sent in the worker's main process, for a task revoked
    before it ran, or terminated while it ran (``revoke(terminate=True)``)."""
    if not isinstance(sender, ProgressTask) or request is None:
        return
    if expired:
        reason = "the task expired before it ran"
    elif terminated:
        reason = "the task was revoked and terminated"
    else:
        reason = "the task was revoked before it ran"
    _end(sender, request.id, EventType.JOB_CANCELLED, reason=reason)

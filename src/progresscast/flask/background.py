"""Background tasks of the extension: ending interrupted, stalled and
overdue jobs, closing expired connections, pruning, checkpoints.

Started with ``socketio.start_background_task`` and paced with
``socketio.sleep``, so they run the same under eventlet, gevent or threads.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from flask_socketio import SocketIO

from progresscast import ProgressTracker, StoreUnavailable

from .sockets import ProgressNamespace

if TYPE_CHECKING:
    from .extension import ProgressCast

log = logging.getLogger(__name__)


def start_background_tasks(progress: ProgressCast) -> None:
    """End what this server's last run left running, then start the sweeps
    the settings ask for."""
    socketio, tracker, settings = progress.socketio, progress.tracker, progress.settings
    _fail_interrupted(socketio, tracker, started=tracker.clock())
    if settings["EXPIRY_SWEEP_SECONDS"]:
        socketio.start_background_task(
            _expire_forever, socketio, progress.namespace, settings["EXPIRY_SWEEP_SECONDS"]
        )
    if settings["PRUNE_EVERY_SECONDS"]:
        socketio.start_background_task(
            _prune_forever,
            socketio,
            tracker,
            settings["RETENTION_SECONDS"],
            settings["PRUNE_EVERY_SECONDS"],
        )
    if settings["STALL_SECONDS"]:
        socketio.start_background_task(
            _fail_stalled_forever,
            socketio,
            tracker,
            settings["STALL_SECONDS"],
            settings["STALL_CHECK_SECONDS"],
        )
    if settings["CANCEL_GRACE_SECONDS"]:
        socketio.start_background_task(
            _cancel_overdue_forever,
            socketio,
            tracker,
            settings["CANCEL_GRACE_SECONDS"],
            settings["CANCEL_CHECK_SECONDS"],
        )
    if settings["STORE_CHECKPOINT_SECONDS"] and tracker.manual_checkpoints():
        run = in_native_thread(socketio.async_mode)
        socketio.start_background_task(
            _every,
            socketio,
            settings["STORE_CHECKPOINT_SECONDS"],
            "store checkpoint",
            lambda: run(tracker.checkpoint),
        )


def _fail_interrupted(socketio: SocketIO, tracker: ProgressTracker, started: float) -> None:
    """End what the last run of this server left running in its process (its
    pipelines died with it). Done before start-up goes on; if the store cannot
    be reached yet, retried in the background until it can."""

    def fail() -> None:
        for job_id in tracker.fail_interrupted(started):
            log.warning("job %s failed: interrupted by a restart of this server", job_id)

    try:
        fail()
    except StoreUnavailable:
        log.warning("store unreachable at start-up; will end interrupted jobs when it is back")
        socketio.start_background_task(_until_done, socketio, 1.0, "ending interrupted jobs", fail)


def _until_done(socketio: SocketIO, seconds: float, what: str, task) -> None:
    """Call ``task()`` every ``seconds`` until it returns without an error."""
    while True:
        try:
            task()
            return
        except Exception:
            log.exception("%s failed; will retry", what)
        socketio.sleep(seconds)


def in_native_thread(async_mode: str):
    """``run(fn)``: call ``fn`` in an OS thread and wait without stopping the
    event loop (eventlet's or gevent's thread pool; a plain call with threads)."""
    if async_mode == "eventlet":
        from eventlet import tpool

        return tpool.execute
    if async_mode == "gevent":
        import gevent

        return lambda fn: gevent.get_hub().threadpool.apply(fn)
    return lambda fn: fn()


def _every(socketio: SocketIO, seconds: float, what: str, task) -> None:
    """Run ``task()`` every ``seconds``, forever; a failure is logged and retried."""
    while True:
        try:
            task()
        except Exception:
            log.exception("%s failed; will retry", what)
        socketio.sleep(seconds)


def _expire_forever(socketio: SocketIO, namespace: ProgressNamespace, every: float) -> None:
    """Close connections whose token has expired (DESIGN §6: at expiry, within ``every``)."""

    def sweep() -> None:
        for sid in namespace.expired_sids(time.time()):
            namespace.expire(sid)

    _every(socketio, every, "expiry sweep", sweep)


def _fail_stalled_forever(
    socketio: SocketIO, tracker: ProgressTracker, stall_seconds: float, every: float
) -> None:
    def check() -> None:
        for job_id in tracker.fail_stalled(stall_seconds):
            log.warning("job %s failed: no event for %ss (stalled)", job_id, stall_seconds)

    _every(socketio, every, "stall check", check)


def _cancel_overdue_forever(
    socketio: SocketIO, tracker: ProgressTracker, grace: float, every: float
) -> None:
    def check() -> None:
        for job_id in tracker.cancel_overdue(grace):
            log.warning("job %s cancelled: its pipeline did not stop within %ss", job_id, grace)

    _every(socketio, every, "cancel check", check)


def _prune_forever(
    socketio: SocketIO, tracker: ProgressTracker, retention: float, every: float
) -> None:
    def prune() -> None:
        removed = tracker.prune(retention)
        if removed:
            log.info("pruned %d finished jobs older than %ss", removed, retention)

    _every(socketio, every, "pruning", prune)

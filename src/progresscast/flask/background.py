"""Background tasks of the extension: ending interrupted, stalled and
overdue jobs, closing expired connections, pruning, checkpoints.

Started with ``socketio.start_background_task`` and paced with
``socketio.sleep``, so they run the same under eventlet, gevent or threads.
Each stops after :meth:`AppProgress.close`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from progresscast import StoreUnavailable

if TYPE_CHECKING:
    from .extension import AppProgress

log = logging.getLogger(__name__)


def start_background_tasks(progress: AppProgress) -> None:
    """End what this server's last run left running, then start the sweeps
    the settings ask for (a setting of 0 turns its sweep off)."""
    tracker, settings, namespace = progress.tracker, progress.settings, progress.namespace
    _fail_interrupted(progress, started=tracker.clock())

    def expire() -> None:
        for sid in namespace.expired_sids(time.time()):
            namespace.expire(sid)

    def prune() -> None:
        removed = tracker.prune(settings["RETENTION_SECONDS"])
        if removed:
            log.info(
                "pruned %d finished jobs older than %ss", removed, settings["RETENTION_SECONDS"]
            )

    def fail_stalled() -> None:
        for job_id in tracker.fail_stalled(settings["STALL_SECONDS"]):
            log.warning(
                "job %s failed: no event for %ss (stalled)", job_id, settings["STALL_SECONDS"]
            )

    def cancel_overdue() -> None:
        grace = settings["CANCEL_GRACE_SECONDS"]
        for job_id in tracker.cancel_overdue(grace):
            log.warning("job %s cancelled: its pipeline did not stop within %ss", job_id, grace)

    run_in_thread = in_native_thread(progress.socketio.async_mode)
    sweeps = [
        # (the setting that turns it on, seconds between runs, what, task)
        ("EXPIRY_SWEEP_SECONDS", "EXPIRY_SWEEP_SECONDS", "expiry sweep", expire),
        ("PRUNE_EVERY_SECONDS", "PRUNE_EVERY_SECONDS", "pruning", prune),
        ("STALL_SECONDS", "STALL_CHECK_SECONDS", "stall check", fail_stalled),
        ("CANCEL_GRACE_SECONDS", "CANCEL_CHECK_SECONDS", "cancel check", cancel_overdue),
    ]
    if tracker.manual_checkpoints():
        checkpoint = lambda: run_in_thread(tracker.checkpoint)  # noqa: E731
        sweeps.append(
            ("STORE_CHECKPOINT_SECONDS", "STORE_CHECKPOINT_SECONDS", "store checkpoint", checkpoint)
        )
    for switch, every, what, task in sweeps:
        if settings[switch]:
            progress.socketio.start_background_task(_every, progress, settings[every], what, task)


def _fail_interrupted(progress: AppProgress, started: float) -> None:
    """End what the last run of this server left running in its process (its
    pipelines died with it). Done before start-up goes on; if the store cannot
    be reached yet, retried in the background until it can."""

    def fail() -> None:
        for job_id in progress.tracker.fail_interrupted(started):
            log.warning("job %s failed: interrupted by a restart of this server", job_id)

    try:
        fail()
    except StoreUnavailable:
        log.warning("store unreachable at start-up; will end interrupted jobs when it is back")
        progress.socketio.start_background_task(
            _every, progress, 1.0, "ending interrupted jobs", fail, once=True
        )


def _every(
    progress: AppProgress, seconds: float, what: str, task: Callable[[], None], once=False
) -> None:
    """Run ``task()`` every ``seconds`` until the extension closes (with
    ``once``: until it first succeeds); a failure is logged and retried."""
    while not progress.closed:
        try:
            task()
            if once:
                return
        except Exception:
            if progress.closed:
                return
            log.exception("%s failed; will retry", what)
        progress.socketio.sleep(seconds)


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

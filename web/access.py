"""Access control, in one place for the socket and REST layers.

A job is visible to its owner, to admins, and to principals whose ``jobs``
name it. Refusals are always ``not_found``, so nobody learns whether a job
they may not see exists.
"""

from __future__ import annotations

from progresscast import JobNotFound, JobState, ProgressTracker

from .auth import Principal


def can_read(principal: Principal, state: JobState) -> bool:
    return principal.admin or principal.user_id == state.owner or state.job_id in principal.jobs


def can_write(principal: Principal, state: JobState) -> bool:
    return principal.admin or principal.user_id == state.owner


def readable_job(tracker: ProgressTracker, principal: Principal, job_id: str) -> JobState:
    """The job if ``principal`` may read it, else :class:`JobNotFound`."""
    state = tracker.store.get(job_id)
    if state is None or not can_read(principal, state):
        raise JobNotFound(job_id)
    return state


def cancellable_job(tracker: ProgressTracker, principal: Principal, job_id: str) -> JobState:
    """The job if ``principal`` may cancel it: whoever may read it (DESIGN §6)."""
    return readable_job(tracker, principal, job_id)


def writable_job(tracker: ProgressTracker, principal: Principal, job_id: str) -> JobState:
    """The job if ``principal`` may post events to it, else :class:`JobNotFound`."""
    state = tracker.store.get(job_id)
    if state is None or not can_write(principal, state):
        raise JobNotFound(job_id)
    return state

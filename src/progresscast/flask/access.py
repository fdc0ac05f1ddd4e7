"""Access control, in one place for the socket and REST layers (DESIGN §6).

- read, join, events, cancel: the owner, an admin, or a token whose ``jobs``
  names the job (or its parent: a group's children go with it);
- post events: the owner or a service token;
- create: anyone for themselves; a service token for any owner.

A job the caller may not read is ``not_found``, exactly like a job that does
not exist, so nobody learns whether it exists. A job it may read but not
write answers ``forbidden``.
"""

from __future__ import annotations

from progresscast import Forbidden, JobNotFound, JobState, ProgressTracker

from .auth import Principal


def can_read(principal: Principal, state: JobState) -> bool:
    """A share link naming a group's parent reads its children too."""
    return (
        principal.admin
        or principal.user_id == state.owner
        or state.job_id in principal.jobs
        or (state.parent_id is not None and state.parent_id in principal.jobs)
    )


def can_write(principal: Principal, state: JobState) -> bool:
    return principal.service or principal.user_id == state.owner


def readable_job(tracker: ProgressTracker, principal: Principal, job_id: str) -> JobState:
    """The job if ``principal`` may read it, else :class:`JobNotFound`."""
    state = tracker.get(job_id)  # JobNotFound if there is none
    if not (can_read(principal, state) or principal.service):
        raise JobNotFound(job_id)
    return state


def cancellable_job(tracker: ProgressTracker, principal: Principal, job_id: str) -> JobState:
    """The job if ``principal`` may cancel it: whoever may read it."""
    return readable_job(tracker, principal, job_id)


def writable_job(tracker: ProgressTracker, principal: Principal, job_id: str) -> JobState:
    """The job if ``principal`` may post events to it."""
    state = readable_job(tracker, principal, job_id)
    if not can_write(principal, state):
        raise Forbidden("only the job's owner or a service token may post events", job_id=job_id)
    if state.children is not None:
        raise Forbidden(
            "a group's parent follows its children: post events to the children", job_id=job_id
        )
    return state


def job_owner(principal: Principal, requested: str | None) -> str:
    """Who owns a job ``principal`` creates; only a service token names another owner."""
    if requested is None or requested == principal.user_id:
        return principal.user_id
    if not principal.service:
        raise Forbidden("only a service token may create jobs for another owner")
    return requested

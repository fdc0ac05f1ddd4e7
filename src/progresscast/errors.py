"""Exceptions raised by progresscast.

Every error that can reach a client derives from :class:`ProgressCastError`
and carries a stable ``code`` from the wire protocol (DESIGN §4). The web
layer translates them into error acks and HTTP responses in one place
(``progresscast/flask/errors.py``); the library never formats a response itself.
"""

from __future__ import annotations

from typing import Any


class ProgressCastError(Exception):
    """Root of every progresscast error that maps to a protocol error code."""

    code = "internal"
    http_status = 500

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of the protocol: ``{code, message, details?}``."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class InvalidPayload(ProgressCastError):
    """Input that is malformed or out of range; ``details`` maps field → messages."""

    code = "invalid_payload"
    http_status = 422


class Unauthorized(ProgressCastError):
    """The caller did not prove who it is."""

    code = "unauthorized"
    http_status = 401


class Forbidden(ProgressCastError):
    """The caller is known but may not do this."""

    code = "forbidden"
    http_status = 403


class JobNotFound(ProgressCastError):
    """No such job, or one the caller may not see (the two are not told apart)."""

    code = "not_found"
    http_status = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found", job_id=job_id)


class Conflict(ProgressCastError):
    """The request contradicts the job's state, e.g. an event after a terminal one."""

    code = "conflict"
    http_status = 409


class RateLimited(ProgressCastError):
    """Too many requests in too short a time."""

    code = "rate_limited"
    http_status = 429


class Unavailable(ProgressCastError):
    """Something the server needs is not ready (the job store, or its
    subscription to the message queue); try again shortly."""

    code = "unavailable"
    http_status = 503


class StoreUnavailable(Unavailable):
    """The job store cannot be reached (e.g. Redis is down); try again later."""


class TooManyConnections(ProgressCastError):
    """A connection limit (per user or per instance) is reached."""

    code = "too_many_connections"
    http_status = 429


class JobCancelled(Exception):
    """Raised inside a pipeline by its emitter once cancellation was requested.

    By the time it is raised, ``job_cancelled`` has been recorded. Used as a
    context manager, the emitter swallows it, so the ``with`` block simply
    ends early.
    """

    def __init__(self, job_id: str, reason: str | None) -> None:
        super().__init__(f"job {job_id!r} was cancelled: {reason or 'no reason given'}")
        self.job_id = job_id
        self.reason = reason


class SeqConflict(Exception):
    """A store append lost a race: the stored ``seq`` moved since it was read.

    Internal to the tracker, which re-reads the state and retries; it never
    reaches a client.
    """

    def __init__(self, job_id: str, expected: int, actual: int | None) -> None:
        super().__init__(f"job {job_id!r}: expected seq {expected}, store has {actual}")
        self.job_id = job_id
        self.expected = expected
        self.actual = actual

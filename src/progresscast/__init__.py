"""progresscast: live progress for long-running jobs over Socket.IO.

Pipeline code needs three names::

    from progresscast import ProgressTracker, open_store

    tracker = ProgressTracker(open_store("sqlite:///progress.db"), emitter=socketio)
    with tracker.job("import", {"read": 1, "write": 3}, owner="alice") as job:
        ...

Consumers follow jobs with :func:`watch` and :func:`watch_all` (``progresscast.client``).
The protocol's names (namespace, rooms, events, requests) are in ``progresscast.protocol``.
"""

from .client import JobView, WatchError, WatchTimeout, apply_event, watch, watch_all
from .emitter import ProgressEmitter
from .errors import (
    Conflict,
    Forbidden,
    InvalidPayload,
    JobCancelled,
    JobNotFound,
    ProgressCastError,
    RateLimited,
    StoreUnavailable,
    TooManyConnections,
    Unauthorized,
    Unavailable,
)
from .protocol import ALL_JOBS_ROOM, NAMESPACE, job_room, user_room
from .stages import Stage, normalize_stages, overall_progress
from .state import EventType, JobState, JobStatus
from .stores import JobStore, SQLiteStore, open_store
from .tracker import JobRead, ProgressTracker

__all__ = [
    "ALL_JOBS_ROOM",
    "NAMESPACE",
    "Conflict",
    "EventType",
    "Forbidden",
    "InvalidPayload",
    "JobCancelled",
    "JobNotFound",
    "JobRead",
    "JobState",
    "JobStatus",
    "JobStore",
    "JobView",
    "ProgressCastError",
    "ProgressEmitter",
    "ProgressTracker",
    "RateLimited",
    "SQLiteStore",
    "Stage",
    "StoreUnavailable",
    "TooManyConnections",
    "Unauthorized",
    "Unavailable",
    "WatchError",
    "WatchTimeout",
    "apply_event",
    "job_room",
    "normalize_stages",
    "open_store",
    "overall_progress",
    "user_room",
    "watch",
    "watch_all",
]

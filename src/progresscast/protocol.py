"""The names of the wire protocol (docs/protocol.md), in one place.

The namespace, the rooms events go to, the job id rule, the events the
server sends and the requests it answers. The tracker, the web app and the
benchmarks take them from here; nothing else spells ``"user:"`` or
``"#batch"``. No Flask: ``import progresscast`` stays light.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from .errors import InvalidPayload
from .state import EventType

#: the Socket.IO namespace of every request and event
NAMESPACE = "/progress"

# ------------------------------------------------------------------- rooms

#: ``job:<id>``: a job's watchers (``join_job``)
JOB_ROOM_PREFIX = "job:"
#: ``user:<owner>``: the owner's dashboards (``watch_jobs``)
USER_ROOM_PREFIX = "user:"
#: every job's events also go here, for admins watching all jobs (``watch_jobs {all: true}``)
ALL_JOBS_ROOM = "jobs:all"
#: ``<room>#batch``: those who get a room's events batched (``watch_jobs {batch: true}``)
BATCH_SUFFIX = "#batch"


def job_room(job_id: str) -> str:
    """The Socket.IO room of one job's watchers."""
    return JOB_ROOM_PREFIX + job_id


def user_room(owner: str) -> str:
    """The Socket.IO room of a user's dashboards (``watch_jobs``)."""
    return USER_ROOM_PREFIX + owner


def event_rooms(job_id: str, owner: str) -> list[str]:
    """Every room a job's events go to: its watchers', its owner's dashboards'
    and the admins' all-jobs room."""
    return [job_room(job_id), user_room(owner), ALL_JOBS_ROOM]


def batched(room: str) -> str:
    """The room of those who watch ``room`` batched."""
    return room + BATCH_SUFFIX


def is_batchable(room: str) -> bool:
    """Whether ``room`` has a batched twin: the dashboards' rooms (a user's,
    all jobs), not a job's (``join_job`` is never batched)."""
    return room.startswith(USER_ROOM_PREFIX) or room == ALL_JOBS_ROOM


# ------------------------------------------------------------------ job ids

#: 1-128 characters of ``A-Z a-z 0-9 _ . -``, starting with a letter or digit
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


def validate_job_id(job_id: Any) -> str:
    """Return ``job_id`` if it is a valid id, else raise :class:`InvalidPayload`."""
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise InvalidPayload(
            "job_id must be 1-128 characters: letters, digits, '_', '.', '-',"
            " starting with a letter or digit",
            details={"job_id": ["invalid job id"]},
        )
    return job_id


# ------------------------------------------------------------------- events

#: a batching watcher's frame: ``{events: [...]}`` every ``BATCH_INTERVAL``
BATCH_EVENT = "job_events"
#: to a connection whose token expired, just before it is closed
SESSION_EXPIRED = "session_expired"
#: an operator's message (``POST /api/admin/notice``): ``{id, message, level, ts}``
NOTICE = "notice"


class Request(StrEnum):
    """Client → server requests (each acks ``{ok, ...}``)."""

    JOIN_JOB = "join_job"
    LEAVE_JOB = "leave_job"
    WATCH_JOBS = "watch_jobs"
    UNWATCH_JOBS = "unwatch_jobs"
    CANCEL_JOB = "cancel_job"
    LIST_CHILDREN = "list_children"
    PING = "ping"


#: every request name, as plain strings
REQUESTS = frozenset(r.value for r in Request)

__all__ = [
    "ALL_JOBS_ROOM",
    "BATCH_EVENT",
    "BATCH_SUFFIX",
    "JOB_ID_RE",
    "JOB_ROOM_PREFIX",
    "NAMESPACE",
    "NOTICE",
    "REQUESTS",
    "SESSION_EXPIRED",
    "USER_ROOM_PREFIX",
    "EventType",
    "Request",
    "batched",
    "event_rooms",
    "is_batchable",
    "job_room",
    "user_room",
    "validate_job_id",
]

"""Socket.IO namespace ``/progress`` (DESIGN §4).

Requests ack ``{ok: true, ...}`` or ``{ok: false, error}``; see
docs/protocol.md. Events reach clients through rooms: ``job:<id>`` for
``join_job``, ``user:<id>`` for ``watch_jobs``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import current_app, request
from flask_socketio import ConnectionRefusedError, Namespace, join_room, leave_room

from progresscast import InvalidPayload, ProgressCastError, job_room, user_room
from progresscast.state import iso

from .access import cancellable_job, readable_job
from .auth import Principal, socket_principal
from .context import get_tracker
from .errors import error_ack, socket_request
from .schemas import CancelJobSchema, EmptySchema, JobRefSchema, JoinJobSchema

log = logging.getLogger(__name__)

REQUESTS = frozenset({"join_job", "leave_job", "watch_jobs", "unwatch_jobs", "cancel_job", "ping"})

_join = JoinJobSchema()
_ref = JobRefSchema()
_empty = EmptySchema()
_cancel = CancelJobSchema()


class ProgressNamespace(Namespace):
    """Handlers of the ``/progress`` namespace."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        # principals[sid] = Principal of that connection
        self.principals: dict[str, Principal] = {}

    def principal(self) -> Principal:
        return self.principals[request.sid]

    def trigger_event(self, event: str, *args: Any) -> Any:
        # Clients can emit any event name, "connect" and "disconnect" included;
        # route only the protocol's requests, and answer the rest with an error.
        if event in REQUESTS:
            return super().trigger_event(event, *args)
        # The server itself triggers connect for a sid it has not accepted
        # yet, and disconnect once the sid is no longer connected; anything
        # else with those names is a client message, answered as unknown.
        sid = args[0] if args else None
        if event == "connect" and sid not in self.principals:
            return super().trigger_event(event, *args)
        if event == "disconnect" and not self.socketio.server.manager.is_connected(
            sid, self.namespace
        ):
            return super().trigger_event(event, *args)
        return error_ack(
            InvalidPayload(
                f"unknown request {event!r}; expected one of: {', '.join(sorted(REQUESTS))}",
                details={"event": ["unknown request"]},
            )
        )

    # ------------------------------------------------------------- lifecycle

    def on_connect(self, auth: Any = None) -> None:
        try:
            principal = socket_principal(auth)
        except ProgressCastError as exc:
            raise ConnectionRefusedError(exc.message, exc.to_dict()) from None
        self.principals[request.sid] = principal

    def on_disconnect(self, reason: Any = None) -> None:
        self.principals.pop(request.sid, None)

    # --------------------------------------------------------------- requests

    @socket_request(_join)
    def on_join_job(self, principal: Principal, payload: dict) -> dict:
        tracker = get_tracker()
        job_id, since = payload["job_id"], payload.get("since")
        readable_job(tracker, principal, job_id)
        # Join first, then read: an event stored after this read is emitted
        # after the join, so it reaches us live; nothing falls in between.
        join_room(job_room(job_id))
        state = tracker.get(job_id)
        ack: dict[str, Any] = {"ok": True, "job": state.snapshot(tracker.clock())}
        if since is not None:
            if since > state.seq:
                # The client is ahead of the store (e.g. a wiped store):
                # it must start over from the snapshot.
                events, truncated = [], True
            else:
                events, truncated = tracker.history(
                    job_id, since, state.seq, current_app.config["JOIN_MAX_EVENTS"]
                )
            ack["events"] = events
            if truncated:
                ack["truncated"] = True
        return ack

    @socket_request(_ref)
    def on_leave_job(self, principal: Principal, payload: dict) -> dict:
        leave_room(job_room(payload["job_id"]))
        return {"ok": True}

    @socket_request(_empty)
    def on_watch_jobs(self, principal: Principal, payload: dict) -> dict:
        tracker = get_tracker()
        join_room(user_room(principal.user_id))
        now = tracker.clock()
        jobs = tracker.list_jobs(principal.user_id, limit=current_app.config["WATCH_MAX_JOBS"])
        return {"ok": True, "jobs": [job.snapshot(now) for job in jobs]}

    @socket_request(_empty)
    def on_unwatch_jobs(self, principal: Principal, payload: dict) -> dict:
        leave_room(user_room(principal.user_id))
        return {"ok": True}

    @socket_request(_cancel)
    def on_cancel_job(self, principal: Principal, payload: dict) -> dict:
        tracker = get_tracker()
        job_id = payload["job_id"]
        cancellable_job(tracker, principal, job_id)
        state = tracker.request_cancel(job_id, payload.get("reason"))
        return {"ok": True, "status": state.status.value}

    @socket_request(_empty)
    def on_ping(self, principal: Principal, payload: dict) -> dict:
        return {"ok": True, "server_time": iso(datetime.now(UTC).timestamp())}

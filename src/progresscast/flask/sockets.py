"""Socket.IO namespace ``/progress`` (DESIGN §4, docs/protocol.md).

Requests ack ``{ok: true, ...}`` or ``{ok: false, error}``. Events reach
clients through rooms: ``job:<id>`` (``join_job``), ``user:<id>``
(``watch_jobs``) and ``jobs:all`` (an admin's ``watch_jobs {all: true}``).

Every connection carries its principal, a request bucket and a strike
bucket; limits and token expiry are enforced here, before any handler runs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import request
from flask_socketio import ConnectionRefusedError, Namespace

from progresscast import (
    Forbidden,
    InvalidPayload,
    ProgressCastError,
    RateLimited,
    TooManyConnections,
    Unauthorized,
    Unavailable,
)
from progresscast.protocol import (
    ALL_JOBS_ROOM,
    NOTICE,
    REQUESTS,
    SESSION_EXPIRED,
    batched,
    job_room,
    user_room,
)
from progresscast.ratelimit import TokenBucket
from progresscast.state import iso

from .access import cancellable_job, readable_job
from .auth import Principal, socket_principal, token_principal
from .batching import batches
from .context import current_progress
from .errors import error_ack, socket_request
from .jsonutil import MALFORMED
from .metrics import ENGINEIO_REASONS, Metrics
from .origin import same_site_connect
from .replay import Replay
from .schemas import CancelJobSchema, EmptySchema, JobRefSchema, JoinJobSchema, WatchJobsSchema

log = logging.getLogger(__name__)

_join = JoinJobSchema()
_ref = JobRefSchema()
_empty = EmptySchema()
_cancel = CancelJobSchema()
_watch = WatchJobsSchema()


@dataclass(slots=True)
class Connection:
    principal: Principal
    requests: TokenBucket  # the request rate limit
    strikes: TokenBucket  # refusals tolerated before a flood is disconnected
    cut: str | None = None  # why the server is closing it (metrics: disconnects by reason)


class ProgressNamespace(Namespace):
    """Handlers of the ``/progress`` namespace."""

    def __init__(self, namespace: str, config: Mapping[str, Any]) -> None:
        super().__init__(namespace)
        # The app's settings, read here because trigger_event runs before
        # Flask-SocketIO pushes an app context.
        self.config = config
        # connections[sid] = Connection; per_user[user_id] = open connections
        self.connections: dict[str, Connection] = {}
        self.per_user: Counter[str] = Counter()
        #: the app's metrics (metrics.py), set by the extension; None: not measured
        self.metrics: Metrics | None = None
        #: the app's SSE streams (sse.py), set by the extension
        self.sse: Any = None
        #: the app's progresscast state (extension.py), taken at the first
        #: connect: requests run without Flask's context (see _request)
        self.progress: Any = None
        #: stored events recently read for rejoins (a reconnect storm's)
        self.replay = Replay()

    def principal(self, sid: str) -> Principal:
        return self.connections[sid].principal

    @property
    def tracker(self) -> Any:
        return self.progress.tracker

    def trigger_event(self, event: str, *args: Any) -> Any:
        # Clients can emit any event name, "connect" and "disconnect" included.
        # The server triggers connect for a sid it has not accepted yet, and
        # disconnect once the sid is no longer connected; everything else is
        # a client message and passes the checks below first.
        sid = args[0] if args else None
        if event == "connect" and sid not in self.connections:
            auth = args[2] if len(args) > 2 else None  # (sid, environ, auth)
            token = auth.get("token") if isinstance(auth, dict) else None
            if self.progress is not None and token is not None:
                # A token says who the caller is: no Flask request context
                # (the app's session, a URL adapter: most of a connect's
                # cost in a reconnect storm), as for requests below.
                return self._accept(sid, lambda: token_principal(self.progress, token))
            return super().trigger_event(event, *args)
        if event == "disconnect" and not self.socketio.server.manager.is_connected(
            sid, self.namespace
        ):
            return super().trigger_event(event, *args)
        ack = self._request(sid, event, *args)
        if self.metrics is not None:
            # Client-chosen names are bounded to the protocol's.
            name = event if event in REQUESTS else "malformed" if event == MALFORMED else "unknown"
            ok = isinstance(ack, dict) and ack.get("ok")
            result = "ok" if ok else (ack or {}).get("error", {}).get("code", "internal")
            self.metrics.socket_request(name, result)
        return ack

    def _request(self, sid: str, event: str, *args: Any) -> Any:
        refusal = self._admit(sid)
        if refusal is not None:
            return refusal
        if event in REQUESTS:
            # Called directly, not through Flask-SocketIO's trigger_event:
            # that pushes a Flask request context per message (a Request, its
            # URL adapter, the cookie session), which cost more than a whole
            # ping. The handlers take the sid and need no Flask context: the
            # principal was stored at connect, the tracker is self.progress's.
            return getattr(self, "on_" + event)(sid, *args[1:])
        if event == MALFORMED:
            reason = args[1] if len(args) > 1 else "undecodable payload"
            return error_ack(
                InvalidPayload(f"malformed request: {reason}", details={"_schema": [str(reason)]})
            )
        return error_ack(
            InvalidPayload(
                f"unknown request {event!r}; expected one of: {', '.join(sorted(REQUESTS))}",
                details={"event": ["unknown request"]},
            )
        )

    def _admit(self, sid: str) -> dict | None:
        """None if this request may run, else the error ack (and maybe a disconnect)."""
        conn = self.connections.get(sid)
        if conn is None:
            return error_ack(Unauthorized("not connected"))
        expires = conn.principal.expires_at
        if expires is not None and expires <= time.time():
            self._after_ack(self.expire, sid)
            return error_ack(Unauthorized("token expired; reconnect with a fresh token"))
        if conn.requests.take():
            return None
        if not conn.strikes.take():
            log.warning("disconnecting %s (%s): request flood", sid, conn.principal.user_id)
            self._after_ack(self.cut, sid, "flood")
        return error_ack(
            RateLimited(f"more than {self.config['SOCKET_RATE']} requests per second; slow down")
        )

    def _after_ack(self, fn, *args, **kwargs) -> None:
        """Run ``fn`` shortly after this request's ack has gone out: the ack is
        sent when the handler returns, and closing first would swallow it."""

        def later():
            self.socketio.sleep(0.05)
            fn(*args, **kwargs)

        self.socketio.start_background_task(later)

    def expire(self, sid: str) -> None:
        """Tell a connection its token expired, then close it."""
        self.socketio.emit(
            SESSION_EXPIRED,
            {"code": "unauthorized", "message": "token expired; reconnect with a fresh token"},
            to=sid,
            namespace=self.namespace,
        )
        self.cut(sid, "expired")

    def cut(self, sid: str, reason: str) -> None:
        """Close this server's connection ``sid`` (the metrics count ``reason``)."""
        conn = self.connections.get(sid)
        if conn is None:
            return
        conn.cut = reason
        self.socketio.server.disconnect(sid, namespace=self.namespace, ignore_queue=True)
        if self.connections.get(sid) is conn:
            # python-socketio sends the client its DISCONNECT before it runs
            # the disconnect handler; a client that closes its transport in
            # between (possible when something yields there, as the Admin
            # UI's development mode does) makes Flask-SocketIO skip the
            # handler. Forget the connection here then.
            self._forget(sid, reason)

    def expired_sids(self, now: float) -> list[str]:
        return [
            sid
            for sid, conn in list(self.connections.items())
            if conn.principal.expires_at is not None and conn.principal.expires_at <= now
        ]

    # ------------------------------------------------------------- lifecycle

    def on_connect(self, auth: Any = None) -> None:
        if self.progress is None:
            self.progress = current_progress()  # this handler runs in the app's context
        environ = request.environ

        def principal() -> Principal:
            principal = socket_principal(auth)
            if principal.session and not same_site_connect(
                environ, self.config["CORS_ALLOWED_ORIGINS"]
            ):
                # A websocket is not subject to CORS: without this, any site
                # could open one with the user's cookie (origin.py).
                raise Forbidden("cross-site connection refused: connect from this site's pages")
            return principal

        self._accept(request.sid, principal)

    def _accept(self, sid: str, principal_of: Callable[[], Principal]) -> None:
        """Accept connection ``sid`` as ``principal_of()``, or refuse it
        (``connect_error``) with what that or the connection limits raise."""
        config = self.config
        try:
            principal = principal_of()
            self.admit(principal)
        except ProgressCastError as exc:
            if self.metrics is not None:
                self.metrics.refused(exc.code)
            raise ConnectionRefusedError(exc.message, exc.to_dict()) from None
        self.connections[sid] = Connection(
            principal,
            TokenBucket(config["SOCKET_RATE"], config["SOCKET_BURST"]),
            TokenBucket(config["SOCKET_STRIKES_RATE"], config["SOCKET_STRIKES_BURST"]),
        )
        self.per_user[principal.user_id] += 1
        if self.metrics is not None:
            self.metrics.connected()

    def admit(self, principal: Principal) -> None:
        """Raise :class:`TooManyConnections` if ``principal`` may not open one
        more connection here: Socket.IO connections and SSE streams
        (streams.py) count together."""
        config = self.config
        streams = self.sse.count if self.sse is not None else 0
        user_streams = self.sse.per_user[principal.user_id] if self.sse is not None else 0
        if len(self.connections) + streams >= config["MAX_CONNECTIONS"]:
            raise TooManyConnections("this server is full; try another or later")
        if self.per_user[principal.user_id] + user_streams >= config["MAX_CONNECTIONS_PER_USER"]:
            raise TooManyConnections(
                f"at most {config['MAX_CONNECTIONS_PER_USER']} connections per user"
            )

    def on_disconnect(self, reason: Any = None) -> None:
        self._forget(request.sid, reason)

    def _forget(self, sid: str, reason: Any) -> None:
        conn = self.connections.pop(sid, None)
        if conn is not None:
            user = conn.principal.user_id
            self.per_user[user] -= 1
            if self.per_user[user] <= 0:
                del self.per_user[user]
            if self.metrics is not None:
                self.metrics.disconnected(conn.cut or self._cut_reason(sid, reason))

    def _cut_reason(self, sid: str, reason: Any) -> str:
        """Why a connection ended: the server's own reason for cutting it
        (a slow reader...), else python-engineio's."""
        server = self.socketio.server
        eio_sid = server.manager.eio_sid_from_sid(sid, self.namespace)
        sock = server.eio.sockets.get(eio_sid) if eio_sid is not None else None
        return getattr(sock, "cut_reason", None) or ENGINEIO_REASONS.get(reason, "other")

    # ------------------------------------------------------------------ admin

    def run_admin(self, command: dict[str, Any]) -> int:
        """Carry out an admin command on this server's connections (admin.py
        sends it to every server through the client manager); returns how
        many it reached.

        ``{"action": "notice", "notice": {...}, "user"?: id}`` emits the
        ``notice`` event, to every connection or to one user's;
        ``{"action": "disconnect", "user"?: id, "sid"?: sid}`` drops them.
        """
        user, sid = command.get("user"), command.get("sid")
        streams = 0
        disconnect_user = command.get("action") == "disconnect" and user and sid is None
        if disconnect_user and self.sse is not None:  # a user's SSE streams go too
            streams = self.sse.cut_all("admin", user=user)
        targets = [
            s
            for s, conn in list(self.connections.items())
            if (sid is None or s == sid) and (user is None or conn.principal.user_id == user)
        ]
        if not targets:
            return streams
        server = self.socketio.server
        if command.get("action") == "notice":
            everyone = user is None and sid is None
            server.emit(
                NOTICE,
                command["notice"],
                to=None if everyone else targets,
                namespace=self.namespace,
                ignore_queue=True,  # every server runs the command itself
            )
            return len(targets)
        if command.get("action") == "disconnect" and (user or sid):
            for target in targets:
                self.cut(target, "admin")
            return len(targets) + streams
        log.warning("unknown admin command %r", command.get("action"))
        return 0

    # --------------------------------------------------------------- requests

    def enter_room(self, sid: str, room: str) -> None:
        self.socketio.server.enter_room(sid, room, namespace=self.namespace)

    def leave_room(self, sid: str, room: str) -> None:
        self.socketio.server.leave_room(sid, room, namespace=self.namespace)

    @socket_request(_join)
    def on_join_job(self, sid: str, principal: Principal, payload: dict) -> dict:
        tracker = self.tracker
        job_id, since = payload["job_id"], payload.get("since")
        state = readable_job(tracker, principal, job_id)
        self.wait_subscribed()
        # Before joining: events after this seq reach the room in seq order
        # (in_order.py); the read below covers everything up to it.
        self.note_read(job_id, state.seq)
        # Join first, then read: an event stored after this read is emitted
        # after the join, so it reaches us live; nothing falls in between.
        self.enter_room(sid, job_room(job_id))
        limit = self.config["JOIN_MAX_EVENTS"]
        if since is not None:
            resumed = self._resume(tracker, job_id, since, limit)
            if resumed is not None:
                return resumed
        read = tracker.read_since(job_id, since, limit)
        ack: dict[str, Any] = {"ok": True, "job": read.snapshot}
        if read.events is not None:
            ack["events"] = read.events
            if read.truncated:
                ack["truncated"] = True
            else:
                self.replay.keep(read.state, read.events)
        return ack

    def _resume(self, tracker: Any, job_id: str, since: int, limit: int) -> dict | None:
        """A rejoin's ack with the events other rejoins read already
        (replay.py), or None: read it all from the store (read_since).
        Called after joining the room, like read_since: every event up to
        the state read here goes in the ack, later ones arrive live."""
        state = tracker.get(job_id)
        if not 0 <= state.seq - since <= limit:
            return None  # truncated or a reset store: read_since's rules
        events, reached = self.replay.events(state, since)
        if reached < state.seq:
            missing = state.seq - reached
            tail, truncated = tracker.events_after(job_id, reached, state.seq, missing)
            if truncated or len(tail) != missing:
                return None  # history trimmed meanwhile: read_since decides
            self.replay.keep(state, tail)
            events = events + tail
        return {"ok": True, "job": state.snapshot(tracker.clock()), "events": events}

    def wait_subscribed(self) -> None:
        """Events from other processes reach this server only through its
        subscription to the message queue: a request that reads the store
        for a client waits for it, or its client could miss an event stored
        just after the read."""
        wait = getattr(self.socketio.server.manager, "wait_subscribed", None)
        if wait is not None and not wait(self.config["QUEUE_READY_TIMEOUT"]):
            raise Unavailable("not subscribed to the message queue yet; retry shortly")

    def note_read(self, job_id: str, seq: int) -> None:
        """Tell our client manager what a client read, so that an event that
        comes after a gap is filled from the store (in_order.py)."""
        note = getattr(self.socketio.server.manager, "note_read", None)
        if note is not None:
            note(job_id, seq)

    @socket_request(_ref)
    def on_leave_job(self, sid: str, principal: Principal, payload: dict) -> dict:
        self.leave_room(sid, job_room(payload["job_id"]))
        return {"ok": True}

    @socket_request(_watch)
    def on_watch_jobs(self, sid: str, principal: Principal, payload: dict) -> dict:
        tracker = self.tracker
        everyone = payload.get("all", False)
        if everyone and not principal.admin:
            raise Forbidden("only admins may watch all jobs")
        room = ALL_JOBS_ROOM if everyone else user_room(principal.user_id)
        self.wait_subscribed()
        # With another client manager than ours, events come one by one.
        batch = payload.get("batch") and batches(self.socketio.server.manager)
        self.enter_room(sid, batched(room) if batch else room)
        now = tracker.clock()
        jobs = tracker.list_jobs(
            None if everyone else principal.user_id, limit=self.config["WATCH_MAX_JOBS"]
        )
        for job in jobs:
            self.note_read(job.job_id, job.seq)
        return {"ok": True, "jobs": [job.snapshot(now) for job in jobs]}

    @socket_request(_empty)
    def on_unwatch_jobs(self, sid: str, principal: Principal, payload: dict) -> dict:
        for room in (user_room(principal.user_id), ALL_JOBS_ROOM):
            self.leave_room(sid, room)
            self.leave_room(sid, batched(room))
        return {"ok": True}

    @socket_request(_cancel)
    def on_cancel_job(self, sid: str, principal: Principal, payload: dict) -> dict:
        tracker = self.tracker
        job_id = payload["job_id"]
        cancellable_job(tracker, principal, job_id)
        state = tracker.request_cancel(job_id, payload.get("reason"))
        return {"ok": True, "status": state.status.value}

    @socket_request(_ref)
    def on_list_children(self, sid: str, principal: Principal, payload: dict) -> dict:
        tracker = self.tracker
        job_id = payload["job_id"]
        readable_job(tracker, principal, job_id)
        now = tracker.clock()
        return {"ok": True, "jobs": [child.snapshot(now) for child in tracker.children(job_id)]}

    @socket_request(_empty)
    def on_ping(self, sid: str, principal: Principal, payload: dict) -> dict:
        return {
            "ok": True,
            "server_time": iso(time.time()),
            "instance": self.config["INSTANCE_NAME"],
        }

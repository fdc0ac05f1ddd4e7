"""Server-Sent Events streams (docs/protocol.md, "SSE streams").

- ``GET <prefix>/api/jobs/<id>/stream``: one job, from its snapshot, resumed
  exactly from ``Last-Event-ID`` (or ``?since=``), live to its terminal event;
- ``GET <prefix>/api/stream``: the caller's jobs (admins: ``?all=1``), like
  ``watch_jobs``;
- ``POST <prefix>/api/stream-tokens``: a short-lived token for
  ``?stream_token=``, for a browser ``EventSource``, which cannot send headers.

Same access rules and limits as the socket: the job must be readable
(access.py), the queue subscription is waited for like ``join_job``'s, and
streams count toward the connection limits with sockets. They are not in
the OpenAPI document: a schema-driven client or fuzzer would hang on them.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest

from progresscast import (
    Forbidden,
    InvalidPayload,
    TooManyConnections,
    Unauthorized,
)
from progresscast.protocol import JOB_ID_RE
from progresscast.state import EventType
from progresscast.tokens import issue_stream_token, verify_stream_token

from .access import readable_job
from .api import count_request, guard
from .auth import Principal, http_principal
from .context import current_progress
from .errors import register_http_errors
from .origin import same_site_request
from .sse import PING, Queued, SSEHub, framed, message

if TYPE_CHECKING:
    from .extension import AppProgress

#: the events a job stream ends after
TERMINAL_EVENTS = frozenset(
    {EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED}
)

bp = Blueprint("progresscast_streams", __name__)
register_http_errors(bp)
bp.before_request(guard)
bp.after_request(count_request)

#: headers of every stream: no caching, no proxy buffering (nginx honours
#: X-Accel-Buffering), and the stream is the connection's only response
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def stream_principal() -> Principal:
    """The caller of a stream: ``?stream_token=`` (accepted here only), else
    the bearer token or the app's sign-in, as for the rest of the API."""
    token = request.args.get("stream_token")
    if token is None:
        principal = http_principal(request)
        if principal.session and not same_site_request(
            request.environ, current_progress().settings["CORS_ALLOWED_ORIGINS"]
        ):
            # A GET is not a write, but a stream holds one of the user's
            # connections: another site must not open them with the cookie.
            raise Forbidden("cross-site stream refused: open it from this site's pages")
        return principal
    progress = current_progress()
    if progress.token_secret is None:
        raise Unauthorized("bearer tokens are not enabled on this server")
    claims = verify_stream_token(
        progress.token_secret, token, leeway=progress.settings["TOKEN_LEEWAY"]
    )
    c = claims.claims
    # The token admits; the stream lasts as long as the access that minted it.
    principal = Principal(c.sub, c.admin, c.service, c.jobs, session=False, expires_at=claims.until)
    request.environ["progresscast.stream_job"] = claims.job
    return principal


def _bound_job() -> str | None:
    return request.environ.get("progresscast.stream_job")


def _admit(progress: AppProgress, principal: Principal) -> None:
    """The socket's connection limits (sockets and streams count together)."""
    try:
        progress.namespace.admit(principal)
    except TooManyConnections as exc:
        if progress.metrics is not None:
            progress.metrics.refused(exc.code)
        raise


#: the kernel's send buffer of a stream's socket. Linux grows it up to 4 MiB
#: by itself: a reader that stopped reading would hold that much before the
#: server's writes stall and SSE_MAX_BACKLOG could notice it.
SEND_BUFFER = 64 * 1024


def _client_socket(environ: dict[str, Any]) -> Any:
    """The client's socket, where the server says (eventlet.wsgi, which
    gunicorn's eventlet worker runs; gunicorn's other workers; werkzeug),
    with its send buffer bounded (:data:`SEND_BUFFER`)."""
    sock = next(
        (
            environ[k]
            for k in ("gunicorn.socket", "gunicorn.sock", "werkzeug.socket")
            if k in environ
        ),
        None,
    )
    if sock is None and hasattr(environ.get("eventlet.input"), "get_socket"):
        sock = environ["eventlet.input"].get_socket()
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    return sock


def _since() -> int | None:
    """Where a resuming client is: ``Last-Event-ID`` wins over ``?since=``."""
    raw = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if raw is None or raw.strip() == "":
        raw, name = request.args.get("since"), "since"
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidPayload(
            f"{name} must be a job event's seq (a non-negative integer)",
            details={name: ["not a seq"]},
        )
    return int(raw)


def _respond(body, hub: SSEHub, stream: Any) -> Response:
    response = Response(body, mimetype="text/event-stream")
    response.headers.update(STREAM_HEADERS)
    # Released when the server closes the response, whether or not the body
    # ever ran (a HEAD request never starts it: its `finally` would not run).
    response.call_on_close(lambda: hub.close(stream))
    return response


def _retry(progress: AppProgress) -> bytes:
    return f"retry: {int(progress.settings['SSE_RETRY_MS'])}\n\n".encode()


@bp.get("/jobs/<job_id>/stream")
def job_stream(job_id: str) -> Response:
    """One job's events: snapshot, missed events, live events to the end."""
    progress = current_progress()
    principal = stream_principal()
    bound = _bound_job()
    if bound is not None and bound != job_id:
        raise Forbidden("this stream token opens another job's stream")
    since = _since()
    tracker = progress.tracker
    state = readable_job(tracker, principal, job_id)
    _admit(progress, principal)
    progress.namespace.wait_subscribed()  # as join_job
    # Before registering: events after this seq reach us in order (in_order.py).
    progress.namespace.note_read(job_id, state.seq)
    hub: SSEHub = progress.sse
    # Register first, then read: an event stored after the read is queued
    # for this stream, so nothing falls in between (as join_job).
    stream = hub.open(principal.user_id, job_id=job_id, sock=_client_socket(request.environ))
    try:
        read = tracker.read_since(job_id, since, progress.settings["JOIN_MAX_EVENTS"])
    except BaseException:
        hub.close(stream)
        raise
    first = [_retry(progress)]
    # The snapshot is the client's base (it carries the id) unless missed
    # events follow: then the last id stays the client's own `since`.
    resumed = read.events is not None and not read.truncated
    first.append(message(read.snapshot, "snapshot", None if resumed else read.seq))
    if read.truncated:
        first.append(message({"job_id": job_id, "since": since, "seq": read.seq}, "truncated"))
    first.extend(message(e, e["type"], e["seq"]) for e in read.events or ())
    ended = read.state.status.is_terminal
    if ended and since is not None and since == read.seq:
        # Resumed past the end (EventSource reconnects after every end):
        # 204 tells it to stop.
        hub.close(stream)
        return Response(status=204, headers=STREAM_HEADERS)
    heartbeat = float(progress.settings["SSE_HEARTBEAT"])
    render = None if ended else _job_renderer(tracker, job_id, read.seq)
    body = _body(hub, stream, principal, heartbeat, b"".join(first), render)
    return _respond(body, hub, stream)


def _body(hub: SSEHub, stream, principal: Principal, heartbeat: float, first: bytes, render):
    """A stream's response body: ``first``, then each batch of live events
    as ``render(events)`` writes it (the bytes, and whether the stream ends
    there), and a heartbeat when none came. No ``render``: nothing follows
    ``first``. It also ends when the stream was cut, or when the caller's
    access expired (the client comes back with a fresh token). The stream's
    slot is released as soon as it ends, or when the server closes a
    response whose body never ran (:func:`_respond`)."""
    try:
        yield first
        if render is None:
            return
        while True:
            wait = _until_expiry(principal, heartbeat)
            if wait <= 0:
                return
            events = stream.take(wait)
            if stream.cut is not None:
                return
            if not events:
                yield PING
                continue
            out, done = render(events)
            if out:
                yield out
            if done:
                return
    finally:
        hub.close(stream)


def _job_renderer(tracker, job_id: str, last: int):
    """A job stream's events after ``last`` (what its read sent), each once,
    in order; done after the terminal event, or at a gap the store cannot fill."""

    def render(queued: list[Queued]) -> tuple[bytes, bool]:
        nonlocal last
        out = []
        for item in queued:
            event = item.event
            seq = event["seq"]
            if seq <= last:
                continue  # read from the store already
            if seq > last + 1:
                # A gap the in-order step could not fill: fill it from the
                # store, or end the stream and let the client resume.
                page = tracker.events_page(job_id, last, seq - last - 1)
                missing = [e for e in page.events if e["seq"] < seq]
                if page.truncated or len(missing) != seq - last - 1:
                    return b"".join(out), True
                out.extend(message(e, e["type"], e["seq"]) for e in missing)
            out.append(item.job_message())
            last = seq
            if event["type"] in TERMINAL_EVENTS:
                return b"".join(out), True
        return b"".join(out), False

    return render


def _user_renderer(seen: dict[str, int]):
    """A user stream's events: per job, only those above the seq it listed
    or last sent (``seen``, updated)."""

    def render(queued: list[Queued]) -> tuple[bytes, bool]:
        out = []
        for item in queued:
            event = item.event
            job_id, seq = event["job_id"], event["seq"]
            if seq <= seen.get(job_id, 0):
                continue
            seen[job_id] = seq
            out.append(framed(item.data(), event["type"], f"{job_id}:{seq}"))
        return b"".join(out), False

    return render


def _until_expiry(principal: Principal, heartbeat: float) -> float:
    if principal.expires_at is None:
        return heartbeat
    return min(heartbeat, principal.expires_at - time.time())


@bp.get("/stream")
def user_stream() -> Response:
    """The caller's jobs (admins: ``?all=1``, every job), new ones included."""
    progress = current_progress()
    principal = stream_principal()
    if _bound_job() is not None:
        raise Forbidden("this stream token opens one job's stream only")
    everyone = request.args.get("all") in ("1", "true")
    if everyone and not principal.admin:
        raise Forbidden("only admins may watch all jobs")
    _admit(progress, principal)
    progress.namespace.wait_subscribed()  # as join_job
    hub: SSEHub = progress.sse
    stream = hub.open(
        principal.user_id,
        owner=None if everyone else principal.user_id,
        sock=_client_socket(request.environ),
    )
    try:
        tracker = progress.tracker
        now = tracker.clock()
        jobs = tracker.list_jobs(
            None if everyone else principal.user_id, limit=progress.settings["WATCH_MAX_JOBS"]
        )
        for job in jobs:
            progress.namespace.note_read(job.job_id, job.seq)
        snapshots = [job.snapshot(now) for job in jobs]
    except BaseException:
        hub.close(stream)
        raise
    first = _retry(progress) + message({"jobs": snapshots}, "jobs")
    # per job: the highest seq listed or sent; live events at or below it are dropped
    seen = {snap["job_id"]: snap["seq"] for snap in snapshots}
    heartbeat = float(progress.settings["SSE_HEARTBEAT"])
    body = _body(hub, stream, principal, heartbeat, first, _user_renderer(seen))
    return _respond(body, hub, stream)


@bp.post("/stream-tokens")
def stream_tokens():
    """A stream token for ``?stream_token=``: ``{job_id?}`` binds it to one
    job (which the caller must be able to read) → 201 ``{token, expires_in}``."""
    progress = current_progress()
    principal = http_principal(request)
    if progress.token_secret is None:
        raise Unauthorized("bearer tokens are not enabled on this server")
    body = request.get_json(silent=True) if request.get_data() else {}
    if body is None:
        raise BadRequest('malformed JSON body; send {} or {"job_id": ...}')
    if not isinstance(body, dict) or set(body) - {"job_id"}:
        raise InvalidPayload(
            "send {} or {job_id}", details={"json": ["an object with at most job_id"]}
        )
    job_id = body.get("job_id")
    if job_id is not None:
        if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
            raise InvalidPayload(
                "job_id is not a job id", details={"json": {"job_id": ["invalid"]}}
            )
        readable_job(progress.tracker, principal, job_id)
    ttl = progress.settings["SSE_TOKEN_TTL"]
    if principal.expires_at is not None:
        ttl = max(1, min(ttl, int(principal.expires_at - time.time())))
    token = issue_stream_token(
        progress.token_secret,
        principal.user_id,
        ttl=ttl,
        admin=principal.admin,
        service=principal.service,
        jobs=principal.jobs,
        job=job_id,
        until=principal.expires_at,
    )
    return jsonify({"token": token, "expires_in": ttl, "job_id": job_id}), 201


def register_streams(app: Any, url_prefix: str) -> None:
    """The stream endpoints under ``<url_prefix>/api``."""
    name = "progresscast_streams"
    app.register_blueprint(bp, url_prefix=url_prefix + "/api", name=name)

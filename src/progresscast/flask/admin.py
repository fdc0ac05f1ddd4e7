"""The operator's REST API under ``<prefix>/api/admin`` (admin tokens only),
and the optional Socket.IO Admin UI.

- ``GET /api/admin/stats``: this server's connections per user, rooms and
  their watchers, jobs by status, the instance's name;
- ``POST /api/admin/disconnect``: drop a user's connections, or one;
- ``POST /api/admin/notice``: a ``notice`` event to every connection, or to
  one user's (the built-in pages show it as a banner).

Disconnects and notices reach the connections of every server: our client
manager carries them over the message queue (batching.py) and each server
carries them out on its own connections (``ProgressNamespace.run_admin``).
Counts in the answers are this server's.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import request
from flask.views import MethodView
from flask_socketio import SocketIO
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from progresscast import Forbidden, JobStatus, Unavailable
from progresscast.protocol import NAMESPACE
from progresscast.state import iso
from progresscast.tokens import USER_ID_RE

from .api import Blueprint, count_request, guard
from .auth import http_principal
from .batching import batches
from .context import current_progress
from .errors import register_http_errors
from .metrics import TRANSPORTS, transport
from .schemas import ErrorSchema, StrictSchema

#: the namespace of the Socket.IO Admin UI (its default)
ADMIN_UI_NAMESPACE = "/admin"
MAX_NOTICE = 500
NOTICE_LEVELS = ("info", "warning", "critical")

blp = Blueprint(
    "admin", __name__, description="Operators: connections, disconnects, notices (admins only)"
)
register_http_errors(blp)


@blp.before_request
def _admins_only() -> None:
    """Rate limit as the jobs API; then 401 without identity, 403 for
    anyone but an admin (before the input is even looked at)."""
    guard()
    if not http_principal(request).admin:
        raise Forbidden("only admins may use the admin API")


blp.after_request(count_request)


# ------------------------------------------------------------------ schemas

UserId = fields.String(
    validate=validate.Regexp(USER_ID_RE, error="a user id: 1-128 letters, digits and _.@:-"),
    metadata={"example": "alice"},
)
Sid = fields.String(validate=validate.Length(1, 64), metadata={"description": "a connection's sid"})


class StatsQuerySchema(StrictSchema):
    limit = fields.Integer(
        load_default=100,
        validate=validate.Range(1, 10_000),
        metadata={"description": "most users and rooms listed (the busiest first)"},
    )
    user = fields.String(
        validate=UserId.validate,
        metadata={"description": "also list this user's connections (sid, transport, rooms)"},
    )


class ConnectionSchema(Schema):
    sid = fields.String(metadata={"description": "for POST /api/admin/disconnect {sid}"})
    transport = fields.String()
    rooms = fields.List(fields.String())


class UserConnectionsSchema(Schema):
    user = fields.String()
    connections = fields.Integer(metadata={"description": "Socket.IO connections"})
    streams = fields.Integer(metadata={"description": "SSE streams"})


class RoomSchema(Schema):
    room = fields.String()
    watchers = fields.Integer()


class StatsSchema(Schema):
    instance = fields.String(metadata={"description": "the server that answered"})
    message_queue = fields.Boolean(metadata={"description": "whether it has one"})
    connections = fields.Integer(metadata={"description": "open on /progress"})
    sse_streams = fields.Integer(metadata={"description": "open SSE streams"})
    transports = fields.Dict(keys=fields.String(), values=fields.Integer())
    direct_websockets = fields.Integer(
        metadata={"description": "websockets on the fast path (transport/)"}
    )
    users_total = fields.Integer()
    users = fields.List(fields.Nested(UserConnectionsSchema))
    rooms_total = fields.Integer()
    rooms = fields.List(fields.Nested(RoomSchema))
    jobs = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"example": {}})
    user_connections = fields.List(
        fields.Nested(ConnectionSchema), metadata={"description": "with ?user= only"}
    )


class DisconnectSchema(StrictSchema):
    user = UserId
    sid = Sid

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("user" in data) == ("sid" in data):
            raise ValidationError("give either user or sid", "_schema")


QUEUE_DOWN = (
    "the message queue did not take the command: this server carried it out (the count is"
    " in details), the others did not"
)
ALL_SERVERS = fields.Boolean(
    metadata={
        "description": "whether every server got the command: false when tokens are off"
        " (no key to sign it with), so only this server acted"
    }
)


class DisconnectResultSchema(Schema):
    disconnected = fields.Integer(metadata={"description": "this server's connections dropped"})
    instance = fields.String()
    all_servers = ALL_SERVERS


class NoticeCreateSchema(StrictSchema):
    message = fields.String(required=True, validate=validate.Length(1, MAX_NOTICE))
    level = fields.String(load_default="info", validate=validate.OneOf(NOTICE_LEVELS))
    user = UserId


class NoticeSchema(Schema):
    id = fields.String()
    message = fields.String()
    level = fields.String()
    ts = fields.String()


class NoticeResultSchema(Schema):
    notice = fields.Nested(NoticeSchema)
    delivered = fields.Integer(metadata={"description": "this server's connections reached"})
    instance = fields.String()
    all_servers = ALL_SERVERS


# ---------------------------------------------------------------- endpoints


@blp.route("/stats")
class Stats(MethodView):
    @blp.arguments(StatsQuerySchema, location="query")
    @blp.response(200, StatsSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="not an admin")
    def get(self, query):
        """This server's connections (per user, by transport), its rooms and
        their watchers (busiest first), and the store's jobs by status."""
        progress = current_progress()
        namespace = progress.namespace
        server = progress.socketio.server
        limit = query["limit"]
        by_transport = dict.fromkeys(TRANSPORTS, 0)
        direct = 0
        for sid in list(namespace.connections):
            by_transport[transport(server, sid)] += 1
            eio_sid = server.manager.eio_sid_from_sid(sid, NAMESPACE)
            direct += bool(getattr(server.eio.sockets.get(eio_sid), "direct", False))
        # Sockets and SSE streams per user (they share the connection limits).
        streams = dict(progress.sse.per_user)
        both = {u: (n, streams.get(u, 0)) for u, n in namespace.per_user.items() if n}
        both.update((u, (0, n)) for u, n in streams.items() if u not in both)
        users = sorted(both.items(), key=lambda item: (-sum(item[1]), item[0]))
        rooms_here = server.manager.rooms.get(NAMESPACE, {})
        own = rooms_here.get(None, {})  # every connection is alone in a room named by its sid
        rooms = sorted(
            ((room, len(members)) for room, members in list(rooms_here.items())),
            key=lambda item: (-item[1], str(item[0])),
        )
        rooms = [(room, n) for room, n in rooms if room is not None and room not in own and n]
        tracker = progress.tracker
        stats = {
            "instance": progress.settings["INSTANCE_NAME"],
            "message_queue": bool(progress.message_queue_url),
            "connections": len(namespace.connections),
            "sse_streams": progress.sse.count,
            "transports": by_transport,
            "direct_websockets": direct,
            "users_total": len(users),
            "users": [{"user": u, "connections": n, "streams": k} for u, (n, k) in users[:limit]],
            "rooms_total": len(rooms),
            "rooms": [{"room": r, "watchers": n} for r, n in rooms[:limit]],
            "jobs": {s.value: tracker.count_jobs(None, [s]) for s in JobStatus},
        }
        if "user" in query:
            stats["user_connections"] = [
                {
                    "sid": sid,
                    "transport": transport(server, sid),
                    "rooms": sorted(
                        r for r in server.manager.get_rooms(sid, NAMESPACE) if r != sid
                    ),
                }
                for sid, conn in list(namespace.connections.items())
                if conn.principal.user_id == query["user"]
            ]
        return stats


@blp.route("/disconnect")
class Disconnect(MethodView):
    @blp.arguments(DisconnectSchema)
    @blp.response(200, DisconnectResultSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="not an admin")
    @blp.alt_response(503, schema=ErrorSchema, description=QUEUE_DOWN)
    def post(self, body):
        """Drop every connection of ``user``, or the one connection ``sid``,
        on every server. Clients may reconnect (the JS client does, after a
        pause): this ends connections, it does not revoke tokens."""
        progress = current_progress()
        command = {"action": "disconnect", **body}
        count, everywhere = admin_command(progress, command, "disconnected")
        return {
            "disconnected": count,
            "instance": progress.settings["INSTANCE_NAME"],
            "all_servers": everywhere,
        }


@blp.route("/notice")
class Notice(MethodView):
    @blp.arguments(NoticeCreateSchema)
    @blp.response(200, NoticeResultSchema)
    @blp.alt_response(403, schema=ErrorSchema, description="not an admin")
    @blp.alt_response(503, schema=ErrorSchema, description=QUEUE_DOWN)
    def post(self, body):
        """Send a ``notice`` event ``{id, message, level, ts}`` to every
        connection on ``/progress``, or to ``user``'s, on every server."""
        progress = current_progress()
        notice = {
            "id": uuid.uuid4().hex,
            "message": body["message"],
            "level": body["level"],
            "ts": iso(datetime.now(UTC).timestamp()),
        }
        command = {"action": "notice", "notice": notice}
        if "user" in body:
            command["user"] = body["user"]
        count, everywhere = admin_command(progress, command, "delivered")
        return {
            "notice": notice,
            "delivered": count,
            "instance": progress.settings["INSTANCE_NAME"],
            "all_servers": everywhere,
        }


def admin_command(progress: Any, command: dict[str, Any], counted: str) -> tuple[int, bool]:
    """Carry out ``command`` on every server's connections; return how many
    of this server's it reached (``counted`` names them in an error), and
    whether every server got it. With a client manager that is not ours, on
    this server's connections only. Raises :class:`Unavailable` (503) when
    the message queue did not take it: this server acted, the others did not."""
    manager = progress.socketio.server.manager
    if not batches(manager):
        return progress.namespace.run_admin(command), False
    count, everywhere = manager.admin(command)
    if not everywhere and getattr(manager, "admin_key", None) is not None:
        raise Unavailable(
            "the message queue did not take the command: this server carried it out,"
            " the other servers did not (repeat it when the queue is back)",
            details={counted: count, "instance": progress.settings["INSTANCE_NAME"]},
        )
    return count, everywhere


def register_admin(api: Any, url_prefix: str) -> None:
    """The admin API at ``<url_prefix>/api/admin`` (in the OpenAPI document too)."""
    # Not "admin": apps have blueprints of that name (Flask-Admin's).
    api.register_blueprint(blp, name="progresscast_admin", url_prefix=url_prefix + "/api/admin")


# ------------------------------------------------------------- the Admin UI


def instrument_admin_ui(socketio: SocketIO, settings: dict[str, Any]) -> Any:
    """python-socketio's Admin UI support (``instrument()``) on the namespace
    ``/admin``, for ``ADMIN_UI_USERNAME``/``ADMIN_UI_PASSWORD``; None when no
    password is set (the default)."""
    password = settings["ADMIN_UI_PASSWORD"]
    if password is None:
        return None
    expected = (settings["ADMIN_UI_USERNAME"].encode(), password.encode())

    def check(auth: Any) -> bool:
        if not isinstance(auth, dict):
            return False
        given = (str(auth.get("username", "")).encode(), str(auth.get("password", "")).encode())
        # Both compared, always: the time taken says nothing about which was wrong.
        user_ok = hmac.compare_digest(given[0], expected[0])
        password_ok = hmac.compare_digest(given[1], expected[1])
        return user_ok and password_ok

    return socketio.server.instrument(
        auth=check,
        mode=settings["ADMIN_UI_MODE"],
        server_id=settings["INSTANCE_NAME"],
        namespace=ADMIN_UI_NAMESPACE,
    )

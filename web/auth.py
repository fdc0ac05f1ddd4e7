"""Who is calling: one place for socket and HTTP identity.

For now a caller names itself: ``auth: {user: "alice"}`` on the Socket.IO
connect, ``X-User-Id: alice`` on HTTP. The security issue replaces this
module's two functions with JWT verification; nothing else changes.
In demo mode a caller that names nobody is the demo user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Request, current_app

from progresscast import Unauthorized

USER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
USER_HEADER = "X-User-Id"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    admin: bool = False
    jobs: frozenset[str] = field(default_factory=frozenset)  # extra jobs it may read
    demo: bool = False


def _principal(user: Any) -> Principal:
    config = current_app.config
    if user is None and config["DEMO"]:
        return Principal(config["DEMO_USER"], demo=True)
    if user is None:
        raise Unauthorized("authentication required: connect with auth {user}")
    if not isinstance(user, str) or not USER_ID_RE.match(user):
        raise Unauthorized("invalid user id")
    return Principal(user)


def socket_principal(auth: Any) -> Principal:
    """The caller of a Socket.IO connect, from its ``auth`` payload."""
    user = auth.get("user") if isinstance(auth, dict) else None
    return _principal(user)


def http_principal(request: Request) -> Principal:
    """The caller of an HTTP request."""
    return _principal(request.headers.get(USER_HEADER))

"""Who is calling, for sockets and HTTP, in one place.

Two ways in:

- a bearer token (workers, share links, services, other origins):
  Socket.IO ``auth: {token}``, HTTP ``Authorization: Bearer <token>``;
- the app's own sign-in: without a token, the extension asks the app's
  ``user_loader`` (Flask session, Flask-Login...). Such a caller is marked
  ``session``: its browser sends the cookie to any site, so its writes must
  come from an allowed origin (origin.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Request, current_app, g

from progresscast import Unauthorized
from progresscast.tokens import verify_token


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. A ``user_loader`` may return one to say more
    than a user id: ``Principal("ann", admin=True)``."""

    user_id: str
    admin: bool = False
    service: bool = False
    jobs: frozenset[str] = field(default_factory=frozenset)  # share-link jobs it may read
    session: bool = False  # identified by the app's sign-in (a cookie), not a token
    expires_at: float | None = None  # epoch seconds; None: no expiry


def principal_from(value: Any) -> Principal | None:
    """What a ``user_loader`` returned, as a session :class:`Principal`:
    None (nobody signed in), a user id (str or int) or a Principal."""
    if value is None:
        return None
    if isinstance(value, Principal):
        return value if value.session else _replace_session(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(
            "a progresscast user_loader returns None, a user id (str or int) or a Principal,"
            f" not {type(value).__name__}"
        )
    user_id = str(value)
    if not user_id:
        return None
    return Principal(user_id, session=True)


def _replace_session(p: Principal) -> Principal:
    return Principal(p.user_id, p.admin, p.service, p.jobs, True, p.expires_at)


def _extension():
    return current_app.extensions["progresscast"]


def _from_token(token: Any) -> Principal:
    ext = _extension()
    if ext.token_secret is None:
        raise Unauthorized("bearer tokens are not enabled on this server")
    claims = verify_token(ext.token_secret, token, leeway=ext.settings["TOKEN_LEEWAY"])
    return Principal(claims.sub, claims.admin, claims.service, claims.jobs, expires_at=claims.exp)


def _signed_in() -> Principal:
    principal = _extension().load_user()
    if principal is None:
        raise Unauthorized("authentication required: sign in, or send a bearer token")
    return principal


def socket_principal(auth: Any) -> Principal:
    """The caller of a Socket.IO connect, from ``auth: {token}`` or else the
    app's sign-in (the connect runs in the handshake's request context, so
    the session cookie and Flask-Login work as in a view)."""
    token = auth.get("token") if isinstance(auth, dict) else None
    return _signed_in() if token is None else _from_token(token)


def http_principal(request: Request) -> Principal:
    """The caller of an HTTP request, from ``Authorization: Bearer <token>``
    or else the app's sign-in (worked out once per request)."""
    if "progresscast_principal" not in g:
        g.progresscast_principal = _http_principal(request)
    return g.progresscast_principal


def _http_principal(request: Request) -> Principal:
    header = request.headers.get("Authorization")
    if header is None:
        return _signed_in()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return _from_token(token.strip())

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

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from flask import Request, g

from progresscast import Unauthorized
from progresscast.tokens import USER_ID_RE

from .context import current_progress

if TYPE_CHECKING:
    from .extension import AppProgress


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. A ``user_loader`` may return one to say more
    than a user id: ``Principal("ann", admin=True)``."""

    user_id: str
    admin: bool = False
    service: bool = False
    jobs: frozenset[str] = field(default_factory=frozenset)  # share-link jobs it may read
    # Identified by something the browser sends by itself (the app's session
    # cookie), so cross-site rules apply (origin.py). Unset (None) in what a
    # user_loader returns means True; tokens say False.
    session: bool | None = None
    expires_at: float | None = None  # epoch seconds; None: no expiry


def principal_from(value: Any) -> Principal | None:
    """What a ``user_loader`` returned, as a :class:`Principal`: None (nobody
    signed in), a user id (str or int) or a Principal. The caller counts as
    identified by cookie unless the Principal says ``session=False`` (an
    identity that no browser sends by itself, such as the demo user)."""
    if value is None or value == "":
        return None
    if isinstance(value, Principal):
        principal = value
    elif isinstance(value, str | int) and not isinstance(value, bool):
        principal = Principal(str(value))
    else:
        raise TypeError(
            "a progresscast user_loader returns None, a user id (str or int) or a Principal,"
            f" not {type(value).__name__}"
        )
    # The same rule as tokens' subjects: room names are built from user ids,
    # and "#" or spaces could name another user's room.
    if not USER_ID_RE.match(principal.user_id):
        raise ValueError(
            f"the user_loader returned the user id {principal.user_id!r}: progresscast user ids"
            " are 1-128 letters, digits and _.@:- (map yours, e.g. to a database id)"
        )
    if principal.session is None:
        principal = replace(principal, session=True)
    return principal


def token_principal(progress: AppProgress, token: Any) -> Principal:
    """The caller a bearer token names, for the app whose state is
    ``progress``; needs no Flask context (sockets.py connects with it)."""
    if progress.tokens is None:
        raise Unauthorized("bearer tokens are not enabled on this server")
    claims = progress.tokens.verify(token)
    return Principal(
        claims.sub, claims.admin, claims.service, claims.jobs, session=False, expires_at=claims.exp
    )


def _from_token(token: Any) -> Principal:
    return token_principal(current_progress(), token)


def _signed_in() -> Principal:
    progress = current_progress()
    principal = progress.load_user()
    if principal is None:
        raise Unauthorized(
            "authentication required: sign in, or send a bearer token"
            if progress.extension.has_user_loader
            else "authentication required: a bearer token"
        )
    return principal


def socket_principal(auth: Any) -> Principal:
    """The caller of a Socket.IO connect, from ``auth: {token}`` or else the
    app's sign-in (the connect runs in the handshake's request context, so
    the session cookie and Flask-Login work as in a view)."""
    if auth is not None and not isinstance(auth, dict):
        raise Unauthorized("auth must be an object: {token: ...}, or {} to use the app's sign-in")
    token = auth.get("token") if auth else None
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

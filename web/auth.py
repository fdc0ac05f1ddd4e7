"""Who is calling: token verification for sockets and HTTP, in one place.

Socket.IO: ``auth: {token}`` on connect. HTTP: ``Authorization: Bearer``.
In demo mode (``DEMO``), a caller without a token is the demo user.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Request, current_app, g

from progresscast import Unauthorized
from progresscast.tokens import check_secret, demo_secret_path, issue_token, verify_token

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    admin: bool = False
    service: bool = False
    jobs: frozenset[str] = field(default_factory=frozenset)  # share-link jobs it may read
    demo: bool = False
    expires_at: float | None = None  # epoch seconds; None: no expiry (demo without token)


def _from_token(token: Any) -> Principal:
    config = current_app.config
    claims = verify_token(config["SECRET_KEY"], token, leeway=config["TOKEN_LEEWAY"])
    return Principal(claims.sub, claims.admin, claims.service, claims.jobs, expires_at=claims.exp)


def _anonymous() -> Principal:
    config = current_app.config
    if config["DEMO"]:
        return Principal(config["DEMO_USER"], demo=True)
    raise Unauthorized("authentication required: a bearer token")


def socket_principal(auth: Any) -> Principal:
    """The caller of a Socket.IO connect, from ``auth: {token}``."""
    token = auth.get("token") if isinstance(auth, dict) else None
    return _anonymous() if token is None else _from_token(token)


def http_principal(request: Request) -> Principal:
    """The caller of an HTTP request, from ``Authorization: Bearer <token>``
    (verified once per request)."""
    if "principal" not in g:
        g.principal = _http_principal(request)
    return g.principal


def _http_principal(request: Request) -> Principal:
    header = request.headers.get("Authorization")
    if header is None:
        return _anonymous()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return _from_token(token.strip())


def demo_token(app: Flask) -> str:
    """A token for the demo user (demo mode only), for the demo pages."""
    assert app.config["DEMO"], "demo tokens exist only in demo mode"
    return issue_token(
        app.config["SECRET_KEY"], app.config["DEMO_USER"], ttl=app.config["DEMO_TOKEN_TTL"]
    )


def resolve_secret(app: Flask) -> None:
    """Make sure ``SECRET_KEY`` is set and strong enough.

    Demo mode without a configured secret keeps a random one in the instance
    folder (so tokens survive a restart); otherwise a missing secret stops
    the server from starting, with instructions.
    """
    # The raw environment value: from_prefixed_env would turn an all-digit
    # secret into a number.
    secret = os.environ.get("PROGRESSCAST_SECRET_KEY") or app.config.get("SECRET_KEY")
    if not secret and app.config["DEMO"]:
        path = demo_secret_path(app.instance_path)
        if not os.path.exists(path):
            os.makedirs(app.instance_path, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            log.warning("demo mode: created a token secret in %s", path)
        with open(path) as f:
            secret = f.read().strip()
    if not secret:
        raise RuntimeError(
            "PROGRESSCAST_SECRET_KEY is not set. Generate one with"
            " python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            " and set it in the environment (PROGRESSCAST_DEMO=1 makes one up for local demos)."
        )
    app.config["SECRET_KEY"] = check_secret(secret)

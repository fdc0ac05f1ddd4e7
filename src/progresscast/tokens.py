"""Access tokens: JWT, HS256 (PyJWT), shared secret.

Claims: ``sub`` (user id), ``exp``, ``iat``; optional ``admin`` (reads and
cancels every job), ``jobs`` (job ids this token may also read and cancel:
share links) and ``service`` (a pipeline that may post events to any job and
create jobs for any owner). A host app mints tokens for its users with
:func:`issue_token`; operators use ``python -m progresscast token``.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidPayload, Unauthorized
from .protocol import JOB_ID_RE

try:
    import jwt
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("progresscast.tokens needs PyJWT: pip install pyjwt") from exc

ALGORITHM = "HS256"
#: HS256 with a shorter secret can be brute-forced (RFC 7518 §3.2)
MIN_SECRET_LENGTH = 32
MAX_SHARED_JOBS = 100
#: the file in a server's instance folder where demo mode (PROGRESSCAST_DEMO=1
#: without PROGRESSCAST_SECRET_KEY) keeps the secret it made up
DEMO_SECRET_FILE = "demo-secret-key"
USER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}\Z")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified content of a token."""

    sub: str
    exp: float
    admin: bool = False
    service: bool = False
    jobs: frozenset[str] = field(default_factory=frozenset)


def check_secret(secret: Any) -> str:
    """Return ``secret`` if it is long enough for HS256, else raise ``ValueError``."""
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"the token secret must be at least {MIN_SECRET_LENGTH} characters; generate one"
            " with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return secret


def demo_secret_path(instance_path: str | os.PathLike[str]) -> str:
    """The demo secret's file in a server's instance folder (``app.instance_path``):
    the server writes it (web/demo.py), ``python -m progresscast token`` reads it."""
    return os.path.join(instance_path, DEMO_SECRET_FILE)


def issue_token(
    secret: str,
    sub: str,
    *,
    ttl: float = 3600,
    admin: bool = False,
    service: bool = False,
    jobs: Iterable[str] | None = None,
    now: float | None = None,
) -> str:
    """Mint a token for user ``sub`` valid for ``ttl`` seconds.

    ``jobs`` makes a share link: the holder may also read (and cancel) those
    jobs. Raises ``ValueError`` for a bad user id, job id, ttl or secret.
    """
    check_secret(secret)
    if not isinstance(sub, str) or not USER_ID_RE.match(sub):
        raise ValueError(f"invalid user id {sub!r}: 1-128 letters, digits and _.@:-")
    if not ttl > 0:
        raise ValueError("ttl must be positive")
    now = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": sub, "iat": int(now), "exp": int(now + ttl)}
    if admin:
        claims["admin"] = True
    if service:
        claims["service"] = True
    if jobs is not None:
        jobs = list(jobs)
        bad = [j for j in jobs if not isinstance(j, str) or not JOB_ID_RE.match(j)]
        if bad or len(jobs) > MAX_SHARED_JOBS:
            raise ValueError(f"jobs must be at most {MAX_SHARED_JOBS} valid job ids; bad: {bad}")
        claims["jobs"] = jobs
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: Any, *, leeway: float = 0) -> TokenClaims:
    """Verify ``token`` and return its claims; raise :class:`Unauthorized` otherwise.

    Only HS256 is accepted: ``alg: none`` and every other algorithm are
    refused, as are expired, malformed and wrongly signed tokens and tokens
    with missing or ill-typed claims.
    """
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise Unauthorized("token must be a non-empty string")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=leeway,
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("token signature is invalid") from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized(f"token algorithm must be {ALGORITHM}") from None
    except jwt.InvalidAudienceError:
        # A stream token (it has an audience) opens SSE streams only.
        raise Unauthorized(
            "a stream token is accepted only as ?stream_token= on the SSE stream endpoints"
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError:
        raise Unauthorized("token is malformed") from None
    try:
        return _claims(claims)
    except InvalidPayload as exc:
        raise Unauthorized(f"token claims are invalid: {exc.message}") from None


class VerifiedTokens:
    """:func:`verify_token` for one secret, remembering the tokens it
    accepted.

    A client keeps its token across reconnects, so after a restart or a
    network blip every client presents a token the server verified before:
    a reconnect storm of 10,000 clients checked 10,000 HMAC signatures and
    claim sets at once. A token seen before is only checked for expiry
    again (its signature and claims cannot have changed; a refused token is
    never remembered). At most ``size`` tokens are kept, least recently
    used first out.
    """

    def __init__(
        self, secret: str, *, leeway: float = 0, size: int = 20_000, clock=time.time
    ) -> None:
        self.leeway = leeway
        self.clock = clock
        self._verify = functools.lru_cache(maxsize=size)(
            lambda token: verify_token(secret, token, leeway=leeway)
        )

    def verify(self, token: Any) -> TokenClaims:
        """As :func:`verify_token`; raises :class:`Unauthorized`."""
        if not isinstance(token, str):  # unhashable ones too
            raise Unauthorized("token must be a non-empty string")
        claims = self._verify(token)
        if int(claims.exp) <= self.clock() - self.leeway:  # PyJWT's rule, to the letter
            raise Unauthorized("token expired")
        return claims


def _claims(claims: dict[str, Any]) -> TokenClaims:
    sub, admin = claims["sub"], claims.get("admin", False)
    service, jobs = claims.get("service", False), claims.get("jobs", [])
    if not isinstance(sub, str) or not USER_ID_RE.match(sub):
        raise InvalidPayload("sub must be a user id")
    if not isinstance(admin, bool) or not isinstance(service, bool):
        raise InvalidPayload("admin and service must be booleans")
    if (
        not isinstance(jobs, list)
        or len(jobs) > MAX_SHARED_JOBS
        or not all(isinstance(j, str) and JOB_ID_RE.match(j) for j in jobs)
    ):
        raise InvalidPayload("jobs must be a list of job ids")
    return TokenClaims(sub, float(claims["exp"]), admin, service, frozenset(jobs))


#: the ``aud`` claim of stream tokens; a token with any audience is refused
#: by :func:`verify_token`, so a stream token opens nothing but a stream
STREAM_AUDIENCE = "progresscast:stream"


@dataclass(frozen=True, slots=True)
class StreamClaims:
    """The verified content of a stream token: who, with which rights, and
    the one job it is bound to (None: any stream the user may open)."""

    claims: TokenClaims
    job: str | None = None
    #: when the access that minted it ends (epoch seconds): streams opened
    #: with it end then too; None: it was minted by an access that does not end
    until: float | None = None


def issue_stream_token(
    secret: str,
    sub: str,
    *,
    ttl: float = 60,
    admin: bool = False,
    service: bool = False,
    jobs: Iterable[str] | None = None,
    job: str | None = None,
    until: float | None = None,
    now: float | None = None,
) -> str:
    """Mint a short-lived token that opens SSE streams only (``?stream_token=``
    in the URL, where a browser ``EventSource`` cannot send headers).

    It carries the rights of the caller it was minted for (``admin``,
    ``service``, share-link ``jobs``); ``job`` binds it to one job's stream.
    ``until``: when the minting caller's own access ends; the token expires
    no later, and streams opened with it end then.
    """
    check_secret(secret)
    if not isinstance(sub, str) or not USER_ID_RE.match(sub):
        raise ValueError(f"invalid user id {sub!r}: 1-128 letters, digits and _.@:-")
    if not 0 < ttl <= 3600:
        raise ValueError("a stream token lives at most an hour (ttl in (0, 3600])")
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": sub,
        "iat": int(now),
        "exp": int(now + ttl if until is None else min(now + ttl, until)),
        "aud": STREAM_AUDIENCE,
    }
    if until is not None:
        claims["until"] = int(until)
    if admin:
        claims["admin"] = True
    if service:
        claims["service"] = True
    if jobs:
        claims["jobs"] = sorted(jobs)
    if job is not None:
        if not isinstance(job, str) or not JOB_ID_RE.match(job):
            raise ValueError(f"invalid job id {job!r}")
        claims["job"] = job
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_stream_token(secret: str, token: Any, *, leeway: float = 0) -> StreamClaims:
    """Verify a stream token (:func:`issue_stream_token`); raise
    :class:`Unauthorized` for anything else, ordinary access tokens included:
    a long-lived token never works from a URL."""
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise Unauthorized("stream_token must be a non-empty string")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=STREAM_AUDIENCE,
            leeway=leeway,
            options={"require": ["sub", "exp", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("stream token expired; mint another") from None
    except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError):
        raise Unauthorized(
            "not a stream token: mint one with POST <prefix>/api/stream-tokens"
        ) from None
    except jwt.PyJWTError:
        raise Unauthorized("stream token is invalid") from None
    job = claims.get("job")
    try:
        parsed = _claims(claims)
        if job is not None and not (isinstance(job, str) and JOB_ID_RE.match(job)):
            raise InvalidPayload("job must be a job id")
        until = claims.get("until")
        if until is not None and (type(until) is not int or until < 0):
            raise InvalidPayload("until must be a time")
    except InvalidPayload as exc:
        raise Unauthorized(f"stream token claims are invalid: {exc.message}") from None
    return StreamClaims(parsed, job, until)

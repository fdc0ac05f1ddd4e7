"""Access tokens: every way a token can be wrong is refused with `unauthorized`."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from progresscast import Unauthorized
from progresscast.tokens import (
    MIN_SECRET_LENGTH,
    VerifiedTokens,
    check_secret,
    issue_token,
    verify_token,
)

SECRET = "s" * MIN_SECRET_LENGTH
NOW = time.time()


def forge(header: dict, claims: dict, key: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(key, body.encode(), hashlib.sha256).digest() if key else b""
    return body + "." + b64(sig)


def test_round_trip_with_every_claim():
    token = issue_token(SECRET, "alice", ttl=60, admin=True, service=True, jobs=["j1", "j2"])
    claims = verify_token(SECRET, token)
    assert claims.sub == "alice" and claims.admin and claims.service
    assert claims.jobs == frozenset({"j1", "j2"})
    assert NOW + 50 < claims.exp <= time.time() + 61


def test_a_plain_token_grants_nothing_extra():
    claims = verify_token(SECRET, issue_token(SECRET, "bob"))
    assert (claims.admin, claims.service, claims.jobs) == (False, False, frozenset())


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (lambda: issue_token(SECRET, "alice", ttl=1, now=NOW - 10), "expired"),
        (lambda: issue_token("t" * 40, "alice"), "signature"),
        (lambda: issue_token(SECRET, "alice")[:-3] + "abc", "signature"),
        (
            lambda: forge({"alg": "none", "typ": "JWT"}, {"sub": "alice", "exp": NOW + 3600}),
            "algorithm",
        ),
        (
            lambda: forge({"alg": "HS512"}, {"sub": "alice", "exp": NOW + 3600}, SECRET.encode()),
            "algorithm",
        ),
        (lambda: jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"), "exp"),
        (lambda: jwt.encode({"exp": NOW + 3600}, SECRET, algorithm="HS256"), "sub"),
        (
            lambda: jwt.encode({"sub": "a b", "exp": NOW + 3600}, SECRET, algorithm="HS256"),
            "claims",
        ),
        (lambda: jwt.encode({"sub": 5, "exp": NOW + 3600}, SECRET, algorithm="HS256"), "token"),
        (
            lambda: jwt.encode(
                {"sub": "a", "exp": NOW + 3600, "admin": "yes"}, SECRET, algorithm="HS256"
            ),
            "claims",
        ),
        (
            lambda: jwt.encode(
                {"sub": "a", "exp": NOW + 3600, "jobs": "j1"}, SECRET, algorithm="HS256"
            ),
            "claims",
        ),
        (
            lambda: jwt.encode(
                {"sub": "a", "exp": NOW + 3600, "jobs": ["bad id!"]}, SECRET, algorithm="HS256"
            ),
            "claims",
        ),
        (lambda: "not-a-jwt", "malformed"),
        (lambda: "a.b.c", "malformed"),
        (lambda: "", "non-empty"),
        (lambda: None, "non-empty"),
        (lambda: 12345, "non-empty"),
        (lambda: "x" * 9000, "non-empty"),
    ],
)
def test_bad_tokens_are_refused(token, message):
    with pytest.raises(Unauthorized, match=message) as info:
        verify_token(SECRET, token())
    assert info.value.code == "unauthorized"


def test_leeway_tolerates_small_clock_skew():
    token = issue_token(SECRET, "alice", ttl=1, now=time.time() - 3)
    with pytest.raises(Unauthorized):
        verify_token(SECRET, token)
    assert verify_token(SECRET, token, leeway=10).sub == "alice"


@pytest.mark.parametrize("secret", [None, "", "short", "x" * (MIN_SECRET_LENGTH - 1), 12345])
def test_weak_secrets_are_refused(secret):
    with pytest.raises(ValueError, match="at least"):
        check_secret(secret)
    with pytest.raises(ValueError):
        issue_token(secret, "alice")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sub": "a b"},
        {"sub": ""},
        {"ttl": 0},
        {"ttl": -5},
        {"jobs": ["bad id!"]},
        {"jobs": [f"j{i}" for i in range(101)]},
    ],
)
def test_issue_refuses_bad_input(kwargs):
    args = {"sub": "alice", **kwargs}
    with pytest.raises(ValueError):
        issue_token(SECRET, args.pop("sub"), **args)


# ------------------------------------------------------------- stream tokens


def test_a_stream_token_round_trips_with_its_rights_and_job():
    from progresscast.tokens import issue_stream_token, verify_stream_token

    token = issue_stream_token(SECRET, "alice", admin=True, jobs=["j2"], job="j1")
    got = verify_stream_token(SECRET, token)
    assert got.job == "j1" and got.claims.sub == "alice" and got.claims.admin
    assert got.claims.jobs == frozenset({"j2"})
    assert got.claims.exp - time.time() <= 60
    assert verify_stream_token(SECRET, issue_stream_token(SECRET, "bob")).job is None


def test_stream_tokens_and_access_tokens_do_not_stand_in_for_each_other():
    from progresscast.tokens import issue_stream_token, verify_stream_token

    with pytest.raises(Unauthorized, match="only as \\?stream_token="):
        verify_token(SECRET, issue_stream_token(SECRET, "alice"))
    with pytest.raises(Unauthorized, match="not a stream token"):
        verify_stream_token(SECRET, issue_token(SECRET, "alice"))
    other_audience = jwt.encode(
        {"sub": "alice", "exp": int(NOW + 60), "aud": "elsewhere"}, SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthorized):
        verify_stream_token(SECRET, other_audience)
    expired = issue_stream_token(SECRET, "alice", ttl=1, now=NOW - 10)
    with pytest.raises(Unauthorized, match="expired"):
        verify_stream_token(SECRET, expired)
    with pytest.raises(ValueError):
        issue_stream_token(SECRET, "alice", ttl=7200)  # stream tokens are short-lived


def test_a_stream_token_ends_with_the_access_that_minted_it():
    import time as _time

    from progresscast.tokens import issue_stream_token, verify_stream_token

    secret = "s" * 32
    now = _time.time()
    token = issue_stream_token(secret, "ann", ttl=60, until=now + 5, now=now)
    claims = verify_stream_token(secret, token)
    assert claims.until == int(now + 5)
    assert jwt_exp(token) == int(now + 5)  # never past the minting access
    free = verify_stream_token(secret, issue_stream_token(secret, "ann", ttl=60, now=now))
    assert free.until is None


def jwt_exp(token: str) -> int:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})["exp"]


def test_verified_tokens_check_a_token_once_then_only_its_expiry(monkeypatch):
    now = [time.time()]
    tokens = VerifiedTokens(SECRET, leeway=5, size=2, clock=lambda: now[0])
    token = issue_token(SECRET, "alice", ttl=60, jobs=["j1"], now=now[0])
    decoded = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    first = tokens.verify(token)
    assert tokens.verify(token) == first == verify_token(SECRET, token)
    assert first.sub == "alice" and first.jobs == frozenset({"j1"})
    assert len(decoded) == 2  # ours once, verify_token's once: the second verify was remembered
    # expiry still counts, with the same leeway as PyJWT's
    now[0] = first.exp + 4
    assert tokens.verify(token) == first
    now[0] = first.exp + 5
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token)


def test_verified_tokens_never_remember_a_refusal_and_keep_at_most_size():
    tokens = VerifiedTokens(SECRET, size=2)
    bad = issue_token("another-secret-" + "x" * 40, "mallory")
    for _ in range(2):
        with pytest.raises(Unauthorized, match="signature"):
            tokens.verify(bad)
    for token in (None, 7, ["list"], {"a": 1}, ""):
        with pytest.raises(Unauthorized, match="non-empty string"):
            tokens.verify(token)
    for user in ("a", "b", "c"):
        assert tokens.verify(issue_token(SECRET, user)).sub == user
    assert tokens._verify.cache_info().currsize == 2

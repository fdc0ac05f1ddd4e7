"""Access tokens: every way a token can be wrong is refused with `unauthorized`."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from progresscast import Unauthorized
from progresscast.tokens import MIN_SECRET_LENGTH, check_secret, issue_token, verify_token

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

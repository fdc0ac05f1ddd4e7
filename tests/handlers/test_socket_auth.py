"""Who may connect, who may see which job, and ping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from socketio import packet

from progresscast.tokens import issue_token

from .helpers import (
    NS,
    STAGES,
    TEST_SECRET,
    as_user,
    assert_error,
    assert_error_ack,
    parse_iso_ms,
    token_for,
)

# ------------------------------------------------------------------- connect


def _forged(header: dict, claims: dict, key: str = "") -> str:
    """A JWT with any header and claims, signed with HS256 by ``key`` ("" = unsigned)."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(key.encode(), body.encode(), hashlib.sha256).digest() if key else b""
    return body + "." + b64(sig)


def _claims(**extra):
    return {"sub": "alice", "exp": int(time.time()) + 600, **extra}


BAD_TOKENS = [
    pytest.param(None, id="no-auth"),
    pytest.param({}, id="empty-auth"),
    pytest.param({"token": None}, id="token-null"),
    pytest.param({"user": "alice"}, id="plain-user-id-is-not-enough"),
    pytest.param("alice", id="auth-not-an-object"),
    pytest.param({"token": ""}, id="empty"),
    pytest.param({"token": 5}, id="number"),
    pytest.param({"token": ["x"]}, id="list"),
    pytest.param({"token": "not.a.jwt"}, id="garbage"),
    pytest.param({"token": "x" * 10_000}, id="huge"),
    pytest.param(lambda: {"token": token_for("alice", ttl=1, now=time.time() - 60)}, id="expired"),
    pytest.param(lambda: {"token": issue_token("y" * 48, "alice")}, id="wrong-secret"),
    pytest.param(
        lambda: {"token": _forged({"alg": "none", "typ": "JWT"}, _claims())}, id="alg-none"
    ),
    pytest.param(
        lambda: {"token": _forged({"alg": "HS512", "typ": "JWT"}, _claims(), TEST_SECRET)},
        id="alg-hs512",
    ),
    pytest.param(
        lambda: {"token": _forged({"alg": "HS256", "typ": "JWT"}, {"sub": "alice"}, TEST_SECRET)},
        id="no-exp",
    ),
    pytest.param(
        lambda: {
            "token": _forged(
                {"alg": "HS256", "typ": "JWT"}, {"exp": int(time.time()) + 60}, TEST_SECRET
            )
        },
        id="no-sub",
    ),
    pytest.param(
        lambda: {
            "token": _forged({"alg": "HS256", "typ": "JWT"}, _claims(sub="bad user"), TEST_SECRET)
        },
        id="bad-sub",
    ),
    pytest.param(
        lambda: {
            "token": _forged({"alg": "HS256", "typ": "JWT"}, _claims(admin="yes"), TEST_SECRET)
        },
        id="bad-admin",
    ),
]


@pytest.mark.parametrize("auth", BAD_TOKENS)
def test_connect_without_a_valid_token_is_refused(connect, auth):
    peer = connect(auth=auth() if callable(auth) else auth)
    assert not peer.connected


def test_a_refused_connection_gets_connect_error_unauthorized(connect, socketio, monkeypatch):
    peer = connect(auth=None)
    assert not peer.connected
    sent = []
    send = socketio.server._send_packet

    def spy(eio_sid, pkt):
        sent.append(pkt)
        send(eio_sid, pkt)

    monkeypatch.setattr(socketio.server, "_send_packet", spy)

    peer.raw.connect(namespace=NS)  # try again, watching what the server sends

    [pkt] = sent
    assert pkt.packet_type == packet.CONNECT_ERROR
    # Socket.IO's connect_error: err.message, and err.data = the protocol's error object
    assert_error(pkt.data["data"], "unauthorized")
    assert pkt.data["message"] == pkt.data["data"]["message"]
    assert socketio.server.namespace_handlers[NS].connections == {}


@pytest.fixture
def demo_app(make_app):
    # DEMO_CONCURRENCY 0: the demo pipeline starts no job in tests.
    return make_app(DEMO=True, DEMO_CONCURRENCY=0)


@pytest.mark.parametrize(
    "auth", [None, {}, {"token": None}], ids=["no-auth", "empty-auth", "null-token"]
)
def test_demo_mode_connects_without_auth_as_the_demo_user(connect, demo_app, auth):
    tracker = demo_app.extensions["progresscast"].tracker
    tracker.create_job("d", STAGES, owner="demo", job_id="d1")
    tracker.create_job("a", STAGES, owner="alice", job_id="a1")

    # Twice: the second connect takes the fast path for tokens, which a
    # null token must not enter (found in review).
    assert connect(auth=auth, app=demo_app).connected
    peer = connect(auth=auth, app=demo_app)

    assert peer.connected
    assert [job["job_id"] for job in peer.ok("watch_jobs", {})["jobs"]] == ["d1"]
    assert peer.ok("join_job", {"job_id": "d1"})["job"]["owner"] == "demo"
    assert peer.request("join_job", {"job_id": "a1"})["error"]["code"] == "not_found"


def test_demo_mode_still_honours_a_named_user(connect, demo_app):
    tracker = demo_app.extensions["progresscast"].tracker
    tracker.create_job("a", STAGES, owner="alice", job_id="a1")

    peer = connect("alice", app=demo_app)

    assert [job["job_id"] for job in peer.ok("watch_jobs", {})["jobs"]] == ["a1"]


def test_demo_mode_http_without_a_user_is_the_demo_user(demo_app):
    r = demo_app.test_client().post("/api/jobs", json={"name": "d", "stages": STAGES})

    assert r.status_code == 201 and r.get_json()["owner"] == "demo"


# -------------------------------------------------------------------- access


def same_shape(error_a: dict, id_a: str, error_b: dict, id_b: str) -> bool:
    """The two errors are identical but for the job id they name."""

    def masked(error: dict, job_id: str) -> dict:
        return {**error, "message": error["message"].replace(job_id, "<id>")}

    return masked(error_a, id_a) == masked(error_b, id_b)


@pytest.mark.parametrize("since", [None, 0], ids=["join", "resume"])
def test_another_users_job_is_not_found_like_a_missing_one(bob, tracker, since):
    tracker.create_job("secret", STAGES, owner="alice", job_id="alices", start=True)
    extra = {} if since is None else {"since": since}

    theirs = assert_error_ack(bob.request("join_job", {"job_id": "alices", **extra}), "not_found")
    missing = assert_error_ack(bob.request("join_job", {"job_id": "nosuch", **extra}), "not_found")

    assert same_shape(theirs, "alices", missing, "nosuch")
    assert "alice" not in theirs["message"].replace("alices", "")  # no owner leaked


def test_a_refused_join_does_not_join_the_room(bob, tracker):
    tracker.create_job("secret", STAGES, owner="alice", job_id="alices", start=True)
    tracker.create_job("mine", STAGES, owner="bob", job_id="bobs", start=True)
    assert_error_ack(bob.request("join_job", {"job_id": "alices"}), "not_found")
    bob.ok("join_job", {"job_id": "bobs"})

    tracker.record("alices", "progress_update", stage_progress=50)
    tracker.record("bobs", "progress_update", stage_progress=50)  # sentinel

    assert [(e["job_id"], e["seq"]) for e in bob.wait_for("bobs", 2)] == [("bobs", 2)]


def test_another_users_job_is_not_found_over_http(http, tracker):
    tracker.create_job("secret", STAGES, owner="alice", job_id="alices", start=True)
    bob = as_user("bob")

    for path in ("/api/jobs/{}", "/api/jobs/{}/events"):
        theirs = http.get(path.format("alices"), headers=bob)
        missing = http.get(path.format("nosuch"), headers=bob)
        assert theirs.status_code == missing.status_code == 404
        assert same_shape(
            assert_error(theirs.get_json(), "not_found"),
            "alices",
            assert_error(missing.get_json(), "not_found"),
            "nosuch",
        )
    event = {"type": "job_cancelled"}
    r = http.post("/api/jobs/alices/events", json=event, headers=bob)
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"
    assert tracker.get("alices").status == "running"  # untouched
    assert http.get("/api/jobs", headers=bob).get_json() == []


# ---------------------------------------------------------------------- ping


def test_ping_acks_the_server_time(alice):
    before = datetime.now(UTC)

    ack = alice.request("ping", {})

    assert set(ack) == {"ok", "server_time", "instance"} and ack["ok"] is True
    assert ack["instance"]  # names the instance that answered (extension)
    server_time = parse_iso_ms(ack["server_time"])
    tolerance = timedelta(seconds=1)  # the ms truncation, plus slack
    assert before - tolerance <= server_time <= datetime.now(UTC) + tolerance

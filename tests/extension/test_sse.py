"""SSE streams in an app with the extension (threading mode, Flask's test
client): the session cookie opens a stream, live events reach it through
the client manager, stream tokens and the cross-site rule for minting them,
streams and sockets under one connection limit; the hub on its own."""

from __future__ import annotations

import threading

import pytest

from progresscast.flask.sse import SSEHub, message
from tests.harness import token_for
from tests.sse_client import parse

from .conftest import signed_in, socket_for

FOREIGN = "http://evil.example"
FAST = {"PROGRESSCAST_SSE_HEARTBEAT": 0.05, "PROGRESSCAST_SSE_RETRY_MS": 100}


def messages(chunks) -> list:
    blocks = b"".join(chunks).split(b"\n\n")
    return [m for m in (parse(b)[0] for b in blocks if b) if m is not None]


def job_of(app, user: str = "alice") -> str:
    response = signed_in(app, user).post("/work")
    assert response.status_code == 200, response.data
    return response.get_json()["job_id"]


def chunks_until(body, needle: bytes, limit: int = 200) -> list[bytes]:
    """Chunks of a streamed body until one holds ``needle`` (bounded: a
    heartbeat every 50 ms, so ``limit`` chunks are a few seconds)."""
    got = []
    for chunk in body:
        got.append(chunk)
        if needle in chunk or len(got) >= limit:
            break
    return got


def test_the_session_cookie_opens_a_stream_that_goes_live_to_the_end(make_app):
    app = make_app(**FAST)
    tracker = app.extensions["progresscast"].tracker
    job = job_of(app)
    response = signed_in(app, "alice").get(f"/progress/api/jobs/{job}/stream", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    body = iter(response.response)
    first = chunks_until(body, b"event: snapshot")
    assert first[0].startswith(b"retry: 100\n\n")
    tracker.apply(job, "job_started")
    tracker.apply(job, "job_completed")
    rest = chunks_until(body, b"event: job_completed")
    got = messages(first + rest)
    assert [(m.event, m.id) for m in got] == [
        ("snapshot", "1"),
        ("job_started", "2"),
        ("stage_completed", "3"),
        ("job_completed", "4"),
    ]
    assert list(body) == []  # the response ended
    response.close()
    assert app.extensions["progresscast"].sse.count == 0
    # another user: not found, like a missing job
    assert signed_in(app, "bob").get(f"/progress/api/jobs/{job}/stream").status_code == 404


def test_minting_a_stream_token_follows_the_cross_site_rule(make_app):
    app = make_app(**FAST)
    job = job_of(app)
    alice = signed_in(app, "alice")
    refused = alice.post("/progress/api/stream-tokens", json={}, headers={"Origin": FOREIGN})
    assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden"
    minted = alice.post("/progress/api/stream-tokens", json={"job_id": job})
    assert minted.status_code == 201
    token = minted.get_json()["token"]
    # no cookie: the token alone opens the job's stream, and nothing else
    anonymous = app.test_client()
    opened = anonymous.get(f"/progress/api/jobs/{job}/stream?stream_token={token}", buffered=False)
    assert opened.status_code == 200
    opened.close()
    assert anonymous.get(f"/progress/api/jobs/{job}?stream_token={token}").status_code == 401
    bad = alice.post("/progress/api/stream-tokens", json={"job_id": job, "x": 1})
    assert bad.status_code == 422
    malformed = alice.post(
        "/progress/api/stream-tokens", data="{", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.get_json()["code"] == "invalid_payload"
    # no body at all is {}: a token for every stream the caller may open
    assert alice.post("/progress/api/stream-tokens").status_code == 201


def test_streams_and_sockets_share_the_per_user_limit(make_app):
    app = make_app(PROGRESSCAST_MAX_CONNECTIONS_PER_USER=1, **FAST)
    job = job_of(app)
    alice = signed_in(app, "alice")
    stream = alice.get(f"/progress/api/jobs/{job}/stream", buffered=False)
    next(iter(stream.response))
    try:
        client = socket_for(app, alice)
        assert not client.is_connected("/progress")
        again = alice.get(f"/progress/api/jobs/{job}/stream")
        assert again.status_code == 429 and again.get_json()["code"] == "too_many_connections"
    finally:
        stream.close()
    assert socket_for(app, signed_in(app, "alice")).is_connected("/progress")


def test_the_user_stream_lists_then_follows_the_users_jobs(make_app):
    app = make_app(**FAST)
    tracker = app.extensions["progresscast"].tracker
    old = job_of(app)
    response = app.test_client().get(
        "/progress/api/stream",
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        buffered=False,
    )
    body = iter(response.response)
    first = messages(chunks_until(body, b"event: jobs"))
    assert [j["job_id"] for j in first[0].data["jobs"]] == [old]
    new = job_of(app)  # created after: included
    job_of(app, "bob")  # someone else's: not
    tracker.apply(new, "job_started")
    got = messages(chunks_until(body, b"event: job_started"))
    response.close()
    assert [(m.event, m.id) for m in got] == [
        ("job_queued", f"{new}:1"),
        ("job_started", f"{new}:2"),
    ]


class FakeSock:
    def __init__(self):
        self.shut = False

    def shutdown(self, how):
        self.shut = True


def test_the_hub_cuts_a_stream_past_its_backlog_and_keeps_the_others():
    hub = SSEHub(threading.Event, max_backlog=3)
    slow_sock = FakeSock()
    slow = hub.open("ann", job_id="j1", sock=slow_sock)
    fast = hub.open("ann", job_id="j1")
    owners = hub.open("ann", owner="ann")
    everyone = hub.open("root")
    other = hub.open("bob", job_id="j2")
    assert hub.count == 5 and hub.per_user["ann"] == 3
    rooms = ["job:j1", "user:ann", "jobs:all"]
    for seq in range(1, 5):
        hub.publish({"job_id": "j1", "seq": seq}, rooms)
        assert [q.event["seq"] for q in fast.take(0)] == [seq]
        assert [q.event["seq"] for q in owners.take(0)] == [seq]
    # the two that did not read were cut at the 4th event; the others were not
    assert slow.cut == everyone.cut == "slow_reader" and slow_sock.shut
    assert slow.take(0) == [] and fast.cut is None and owners.cut is None
    assert other.take(0) == []
    for stream in (slow, fast, owners, everyone, other, slow):  # closing twice is harmless
        hub.close(stream)
    assert hub.count == 0 and not hub.per_user and not hub.by_job and not hub.by_owner


@pytest.mark.parametrize(
    ("args", "wire"),
    [
        (
            ({"a": "x\ny"}, "progress_update", 3),
            b'id: 3\nevent: progress_update\ndata: {"a":"x\\ny"}\n\n',
        ),
        (({"jobs": []}, "jobs", None), b'event: jobs\ndata: {"jobs":[]}\n\n'),
    ],
)
def test_a_message_is_one_data_line_of_json(args, wire):
    assert message(*args) == wire


@pytest.mark.parametrize(
    ("name", "value"),
    [("SSE_HEARTBEAT", 0), ("SSE_TOKEN_TTL", 7200), ("SSE_MAX_BACKLOG", 0), ("SSE_HEARTBEAT", "x")],
)
def test_sse_settings_are_checked(name, value):
    from progresscast.flask.settings import read_settings

    with pytest.raises(ValueError, match=name):
        read_settings({f"PROGRESSCAST_{name}": value})


def test_a_head_request_opens_no_stream_for_good(make_app):
    """A HEAD never starts the body, so a release in its `finally` never ran:
    ten of them locked the user out until a restart."""
    app = make_app(**FAST)
    job = job_of(app)
    alice = signed_in(app, "alice")
    for _ in range(3):
        for url in (f"/progress/api/jobs/{job}/stream", "/progress/api/stream"):
            response = alice.head(url)
            assert response.status_code == 200
            response.close()  # what the server does with every response
    assert app.extensions["progresscast"].sse.count == 0


def test_another_site_cannot_open_streams_with_the_cookie(make_app):
    app = make_app(**FAST)
    job = job_of(app)
    alice = signed_in(app, "alice")
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": FOREIGN}):
        refused = alice.get(f"/progress/api/jobs/{job}/stream", headers=headers)
        assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden"
    assert app.extensions["progresscast"].sse.count == 0
    same = alice.get(
        f"/progress/api/jobs/{job}/stream",
        headers={"Sec-Fetch-Site": "same-origin"},
        buffered=False,
    )
    assert same.status_code == 200
    same.close()


def test_resuming_an_ended_job_at_its_end_answers_204(make_app):
    """EventSource reconnects after every end; 204 stops it."""
    app = make_app(**FAST)
    tracker = app.extensions["progresscast"].tracker
    job = job_of(app)
    tracker.apply(job, "job_started")
    end = tracker.apply(job, "job_completed")[1].seq
    alice = signed_in(app, "alice")
    done = alice.get(f"/progress/api/jobs/{job}/stream", headers={"Last-Event-ID": str(end)})
    assert done.status_code == 204
    # one behind: the missed end, then the response ends
    behind = alice.get(f"/progress/api/jobs/{job}/stream?since={end - 1}")
    assert [m.event for m in messages([behind.data])] == ["snapshot", "job_completed"]
    assert app.extensions["progresscast"].sse.count == 0


def test_an_admins_disconnect_and_a_lost_queue_end_open_streams(make_app):
    app = make_app(**FAST)
    progress = app.extensions["progresscast"]
    job = job_of(app)
    response = signed_in(app, "alice").get(f"/progress/api/jobs/{job}/stream", buffered=False)
    body = iter(response.response)
    chunks_until(body, b"event: snapshot")
    assert progress.namespace.run_admin({"action": "disconnect", "user": "bob"}) == 0
    assert progress.namespace.run_admin({"action": "disconnect", "user": "alice"}) == 1
    assert list(body) == []  # the response ended
    response.close()
    other = signed_in(app, "alice").get("/progress/api/stream", buffered=False)
    rest = iter(other.response)
    chunks_until(rest, b"event: jobs")
    assert progress.sse.cut_all("queue_lost") == 1
    assert list(rest) == []
    other.close()
    assert progress.sse.count == 0


def test_an_event_is_encoded_once_for_all_the_streams_that_follow_it():
    hub = SSEHub(threading.Event, max_backlog=10)
    streams = [hub.open(f"u{i}", job_id="j1") for i in range(3)]
    owners = hub.open("ann", owner="ann")
    event = {"job_id": "j1", "seq": 7, "type": "progress_update", "message": "café\nok"}
    hub.publish(event, ["job:j1", "user:ann"])
    queued = [s.take(0) for s in (*streams, owners)]
    assert all(len(q) == 1 for q in queued)
    assert len({id(q[0]) for q in queued}) == 1  # one object, so one encoding
    item = queued[0][0]
    assert item.job_message() is item.job_message()
    # byte for byte what message() writes: one line of data, the newline escaped
    assert item.job_message() == message(event, "progress_update", 7)
    assert (
        item.job_message()
        == (
            'id: 7\nevent: progress_update\ndata: {"job_id":"j1","seq":7,'
            '"type":"progress_update","message":"café\\nok"}\n\n'
        ).encode()
    )

"""The fast request path (issue 16): token connects and requests run without
a Flask request context, in the green thread that received them, and still
enforce everything the slow path did."""

from __future__ import annotations

import json
import time

import pytest
from socketio import packet

from progresscast.flask.jsonutil import TolerantPacket, loads
from progresscast.tokens import issue_token

from .helpers import TEST_SECRET, assert_error_ack
from .test_socket_auth import BAD_TOKENS

STAGES = {"parse": 1.0}


@pytest.fixture
def contexts(app, monkeypatch):
    """How many Flask request contexts the app has made."""
    made = []
    original = app.request_context

    def counting(environ):
        made.append(environ)
        return original(environ)

    monkeypatch.setattr(app, "request_context", counting)
    return made


def test_requests_and_token_connects_make_no_request_context(connect, tracker, contexts):
    tracker.create_job("r", STAGES, owner="alice", job_id="j1", start=True)
    first = connect("alice")  # the first connect finds the app's state in its context
    contexts.clear()

    second = connect("alice")
    assert second.ok("ping")["server_time"].endswith("Z")
    assert second.ok("join_job", {"job_id": "j1", "since": 0})["events"][0]["seq"] == 1
    assert second.ok("leave_job", {"job_id": "j1"})
    assert_error_ack(second.request("join_job", {"job_id": "nope"}), "not_found")
    assert_error_ack(second.request("ping", {"x": 1}), "invalid_payload")  # still validated
    assert first.ok("ping")

    assert contexts == []


def test_a_cookie_connect_still_gets_its_request_context(make_app, connect, contexts, app):
    connect("alice")
    contexts.clear()
    peer = connect(auth=None)  # no token: the app's sign-in, which needs the request
    assert not peer.connected  # this app has no user_loader
    assert len(contexts) == 1


@pytest.mark.parametrize("auth", BAD_TOKENS)
def test_the_fast_connect_refuses_what_the_slow_one_does(connect, socketio, auth):
    assert connect("alice").connected  # later connects take the fast path
    peer = connect(auth=auth() if callable(auth) else auth)
    assert not peer.connected
    assert len(socketio.server.namespace_handlers["/progress"].connections) == 1


def test_the_fast_connect_keeps_limits_and_expiry(make_app, connect):
    app = make_app(MAX_CONNECTIONS_PER_USER=2)
    assert connect("alice", app=app).connected and connect("alice", app=app).connected
    assert not connect("alice", app=app).connected  # the user's third
    expired = issue_token(TEST_SECRET, "bob", ttl=1, now=time.time() - 10)
    assert not connect(auth={"token": expired}, app=app).connected
    ns = app.extensions["socketio"].server.namespace_handlers["/progress"]
    assert ns.per_user == {"alice": 2}


def test_requests_run_in_the_receiving_green_thread(socketio):
    # python-socketio would start one more green thread per request
    assert socketio.server.async_handlers is False


def test_acks_with_bytes_are_still_binary():
    assert TolerantPacket.data_is_binary([{"ok": True, "blob": [1, {"b": b"\x00"}]}])
    assert not TolerantPacket.data_is_binary([{"ok": True, "events": [{"seq": 1}] * 50}])
    assert not TolerantPacket.data_is_binary([{"big": 2**70}])  # beyond orjson, still JSON
    ack = TolerantPacket(packet.ACK, namespace="/progress", data=[{"b": b"\x01"}], id=1)
    assert ack.packet_type == packet.BINARY_ACK


@pytest.mark.parametrize(
    "bad",
    [
        "NaN",
        "[Infinity]",
        "1e400",
        '["\\ud800"]',
        b'"\xff"',
        "[" * 5000 + "]" * 5000,
        '{"a":"\x01"}',
    ],
)
def test_strict_json_still_refuses_what_browsers_cannot_read(bad):
    with pytest.raises(json.JSONDecodeError):
        loads(bad)


@pytest.mark.parametrize("big_int", ["", "12345678901234567890123"])  # orjson's path, json's
def test_json_nested_past_the_limit_is_refused_before_anything_walks_it(big_int):
    from progresscast.flask.jsonutil import MAX_NESTING
    from progresscast.jsoncodec import dumps

    def nested(depth: int, inner: str = "1") -> str:
        return "[" * depth + (big_int or inner) + "]" * depth

    # 512 levels pass, and encode again (the fallback encoder gives up near 1,000)
    assert dumps(loads(nested(MAX_NESTING))).count("[") == MAX_NESTING
    for depth in (MAX_NESTING + 1, 1000, 1024):  # orjson alone read up to 1,024
        with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
            loads(nested(depth))
    # many brackets side by side are not nesting
    wide = "[" + ",".join(["[{}]"] * 2000) + "]"
    assert len(loads(wide)) == 2000


def test_strict_json_keeps_big_integers_exact():
    assert loads("[12345678901234567890123, 1.5]") == [12345678901234567890123, 1.5]
    assert loads(b'{"seq": 7, "p": 0.25}') == {"seq": 7, "p": 0.25}


@pytest.fixture
def event_reads(tracker, monkeypatch):
    """The ``since`` of every read of stored events."""
    reads = []
    original = tracker.store.events_since

    def counting(job_id, since, limit):
        reads.append(since)
        return original(job_id, since, limit)

    monkeypatch.setattr(tracker.store, "events_since", counting)
    return reads


def test_rejoins_share_the_events_the_first_read(connect, tracker, event_reads):
    job = tracker.job("r", STAGES, owner="alice", job_id="j1", min_interval=0)
    for i in range(5):
        job.update(i, 10)  # seq 2..6
    a, b = connect("alice"), connect("alice")

    first = a.ok("join_job", {"job_id": "j1", "since": 1})["events"]
    assert [e["seq"] for e in first] == [2, 3, 4, 5, 6]
    assert event_reads == [1]
    second = b.ok("join_job", {"job_id": "j1", "since": 3})
    assert second["events"] == first[2:] and second["job"]["seq"] == 6
    assert event_reads == [1]  # nothing read again

    job.update(5, 10)
    job.update(6, 10)  # seq 7, 8: only those are read
    third = b.ok("join_job", {"job_id": "j1", "since": 1})
    assert [e["seq"] for e in third["events"]] == [2, 3, 4, 5, 6, 7, 8]
    assert third["job"]["seq"] == 8 and event_reads == [1, 6]
    assert third["events"] == tracker.events_page("j1", 1, 100).events


def test_a_job_created_again_under_its_id_gets_its_own_events(connect, tracker, event_reads):
    job = tracker.job("r", STAGES, owner="alice", job_id="j1", min_interval=0)
    job.update(1, 10)
    job.complete()
    peer = connect("alice")
    old = peer.ok("join_job", {"job_id": "j1", "since": 1})["events"]
    assert tracker.prune(-1) == 1  # every ended job

    again = tracker.job("r2", STAGES, owner="alice", job_id="j1", min_interval=0)
    again.update(7, 10)
    again.complete()
    new = peer.ok("join_job", {"job_id": "j1", "since": 1})["events"]
    assert new == tracker.events_page("j1", 1, 100).events and new != old


def test_rejoins_read_the_events_that_carry_a_result_from_the_store(connect, tracker, event_reads):
    # The replay counts events, not bytes: it keeps none of those whose size
    # the caller chooses (metadata, result: up to 16 KiB each; found in review).
    job = tracker.job("r", STAGES, owner="alice", job_id="j1", min_interval=0)
    job.update(1, 10)  # seq 2
    job.complete(result={"report": "x" * 10_000})  # stage_completed, job_completed
    a, b = connect("alice"), connect("alice")
    first = a.ok("join_job", {"job_id": "j1", "since": 1})["events"]
    assert event_reads == [1]
    second = b.ok("join_job", {"job_id": "j1", "since": 1})["events"]
    completed = next(e["seq"] for e in first if e["type"] == "job_completed")
    assert event_reads == [1, completed - 1]  # the small ones came from the replay
    assert second == first == tracker.events_page("j1", 1, 100).events


def test_the_replay_drops_a_job_whose_store_went_back():
    # A store restored from a backup lost its newest events; the seqs after
    # it are written again with other content, and must come from the store.
    from progresscast.flask.replay import Replay
    from progresscast.state import new_job

    replay = Replay()
    state = new_job("j1", "r", [{"name": "a", "weight": 1.0}], "alice", {}, 1000.0)
    events = [{"seq": seq, "type": "progress_update", "job_id": "j1"} for seq in range(2, 7)]
    state.seq = 6
    replay.keep(state, events)
    assert replay.events(state, 1) == (events, 6)
    state.seq = 4  # restored: 5 and 6 are gone (and may be written again)
    assert replay.events(state, 1) == ([], 1)
    assert len(replay) == 0
    state.seq = 6  # written again: nothing stale is served
    assert replay.events(state, 1) == ([], 1)

"""Malformed requests: each gets ``invalid_payload`` and the connection stays usable."""

from __future__ import annotations

import pytest

from .helpers import STAGES, assert_error_ack

J = {"job_id": "j1"}

MALFORMED = [
    # non-dict payloads where a dict is needed
    pytest.param("join_job", ("j1",), id="join-string"),
    pytest.param("join_job", (42,), id="join-number"),
    pytest.param("join_job", (["j1"],), id="join-list"),
    pytest.param("join_job", (True,), id="join-bool"),
    pytest.param("join_job", (None,), id="join-null"),
    pytest.param("join_job", (), id="join-no-payload"),
    pytest.param("leave_job", (None,), id="leave-null"),
    pytest.param("leave_job", ("j1",), id="leave-string"),
    pytest.param("watch_jobs", ("all",), id="watch-string"),
    pytest.param("watch_jobs", ([],), id="watch-list"),
    pytest.param("unwatch_jobs", (7,), id="unwatch-number"),
    pytest.param("ping", ("hello",), id="ping-string"),
    pytest.param("ping", (0,), id="ping-number"),
    pytest.param("ping", ([{}],), id="ping-list"),
    # job_id
    pytest.param("join_job", ({},), id="join-missing-job_id"),
    pytest.param("join_job", ({"since": 0},), id="join-since-without-job_id"),
    pytest.param("leave_job", ({},), id="leave-missing-job_id"),
    pytest.param("join_job", ({"job_id": 5},), id="job_id-number"),
    pytest.param("join_job", ({"job_id": None},), id="job_id-null"),
    pytest.param("join_job", ({"job_id": ["j1"]},), id="job_id-list"),
    pytest.param("join_job", ({"job_id": {"$ne": ""}},), id="job_id-object"),
    pytest.param("join_job", ({"job_id": ""},), id="job_id-empty"),
    pytest.param("join_job", ({"job_id": "x" * 129},), id="job_id-too-long"),
    pytest.param("join_job", ({"job_id": "a b"},), id="job_id-space"),
    pytest.param("join_job", ({"job_id": "../j1"},), id="job_id-path"),
    pytest.param("join_job", ({"job_id": "-j1"},), id="job_id-leading-dash"),
    pytest.param("join_job", ({"job_id": "j1:x"},), id="job_id-colon"),
    pytest.param("join_job", ({"job_id": "j\u00e9"},), id="job_id-non-ascii"),
    pytest.param("leave_job", ({"job_id": "x" * 129},), id="leave-job_id-too-long"),
    # since
    pytest.param("join_job", ({**J, "since": -1},), id="since-negative"),
    pytest.param("join_job", ({**J, "since": 1.5},), id="since-float"),
    pytest.param("join_job", ({**J, "since": 1.0},), id="since-integral-float"),
    pytest.param("join_job", ({**J, "since": "3"},), id="since-string"),
    pytest.param("join_job", ({**J, "since": True},), id="since-bool"),
    pytest.param("join_job", ({**J, "since": [1]},), id="since-list"),
    # unknown fields
    pytest.param("join_job", ({**J, "user": "bob"},), id="join-unknown-field"),
    pytest.param("leave_job", ({**J, "since": 0},), id="leave-unknown-field"),
    pytest.param("watch_jobs", ({"user": "bob"},), id="watch-unknown-field"),
    pytest.param("unwatch_jobs", ({"all": True},), id="unwatch-unknown-field"),
    pytest.param("ping", ({"x": 1},), id="ping-unknown-field"),
    # two arguments
    pytest.param("join_job", (J, {}), id="join-two-args"),
    pytest.param("join_job", (J, J), id="join-two-payloads"),
    pytest.param("watch_jobs", ({}, {}), id="watch-two-args"),
    pytest.param("ping", ({}, None), id="ping-two-args"),
    # unknown event names, server event names included
    pytest.param("nope", ({},), id="unknown-event"),
    pytest.param("JOIN_JOB", (J,), id="wrong-case"),
    pytest.param("join-job", (J,), id="dash-instead-of-underscore"),
    pytest.param("message", ("hi",), id="send-message"),
    pytest.param("job_completed", ({**J, "seq": 9},), id="server-event-name"),
    pytest.param("on_join_job", (J,), id="handler-method-name"),
    pytest.param("trigger_event", (J,), id="namespace-method-name"),
    pytest.param(5, ({},), id="event-name-number"),
]


@pytest.fixture
def job(tracker):
    tracker.create_job("r", STAGES, owner="alice", job_id="j1", start=True)
    return "j1"


@pytest.mark.parametrize(("event", "args"), MALFORMED)
def test_malformed_request_gets_invalid_payload(alice, job, event, args):
    ack = alice.request(event, *args)

    assert_error_ack(ack, "invalid_payload")
    assert alice.connected
    assert alice.ok("ping", {})["ok"] is True


def test_a_malformed_join_does_not_join_the_room(alice, tracker, job):
    assert_error_ack(alice.request("join_job", {**J, "since": -1}), "invalid_payload")
    tracker.create_job("s", STAGES, owner="alice", job_id="s", start=True)
    alice.ok("join_job", {"job_id": "s"})

    tracker.record(job, "progress_update", stage_progress=50)
    tracker.record("s", "progress_update", stage_progress=50)  # sentinel

    assert [(e["job_id"], e["seq"]) for e in alice.wait_for("s", 2)] == [("s", 2)]


def test_invalid_payload_names_the_offending_field(alice, job):
    error = assert_error_ack(alice.request("join_job", {**J, "since": "3"}), "invalid_payload")

    assert "since" in error["details"]


def test_ping_and_watch_accept_no_payload_or_null(alice):
    # The JS client sends no argument for `socket.emit("ping", ack)`.
    assert alice.ok("ping")["server_time"]
    assert alice.ok("ping", None)["server_time"]
    assert alice.ok("watch_jobs", None)["jobs"] == []


@pytest.mark.parametrize("payload", [{"user": "bob"}, {"token": "x"}, None, "bob"])
def test_client_emitted_connect_does_not_change_identity(connect, tracker, payload):
    tracker.create_job("a", STAGES, owner="alice", job_id="a1")
    tracker.create_job("b", STAGES, owner="bob", job_id="b1")
    peer = connect("alice")

    assert_error_ack(peer.request("connect", payload), "invalid_payload")

    assert peer.connected
    assert [job["job_id"] for job in peer.ok("watch_jobs", {})["jobs"]] == ["a1"]
    assert peer.request("join_job", {"job_id": "b1"})["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="no-args"),
        pytest.param(({},), id="empty-object"),
        pytest.param(("io client disconnect",), id="reason-string"),
        pytest.param(({}, {}), id="two-args"),
        pytest.param(
            (1, 2, 3),
            id="three-args",
        ),
    ],
)
def test_client_emitted_disconnect_does_not_break_the_session(alice, tracker, job, args):
    alice.ok("join_job", J)

    assert_error_ack(alice.request("disconnect", *args), "invalid_payload")

    assert alice.connected
    assert alice.ok("ping", {})["ok"] is True
    assert [j["job_id"] for j in alice.ok("watch_jobs", {})["jobs"]] == [job]  # still alice
    tracker.record(job, "progress_update", stage_progress=10)
    assert [e["seq"] for e in alice.wait_for(job, 2)] == [2]  # still in the job's room


def test_a_real_disconnect_forgets_the_connection(connect, socketio):
    namespace = socketio.server.namespace_handlers["/progress"]
    peer = connect("alice")
    assert len(namespace.connections) == 1

    peer.raw.disconnect("/progress")

    assert namespace.connections == {}

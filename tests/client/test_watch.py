"""``progresscast.client.watch``/``watch_all`` against a real gunicorn+eventlet
server: resume across a restart, a dropped connection and an expired token;
every state exactly once, in seq order, ending on the server's snapshot."""

from __future__ import annotations

import itertools
import signal
import socket
import threading
import time

import engineio.base_client
import pytest

from progresscast import ProgressTracker, open_store
from progresscast.client import WatchError, WatchTimeout, apply_event, watch, watch_all
from tests.harness import ServerProcess, free_port, token_for, wait_until

from .conftest import Follower, create_job, post, snapshot, stored_events

pytestmark = pytest.mark.server


def assert_each_state_once(server, job_id, items, first_seq):
    """(event, snapshot) pairs: every seq once, in order, each state the one its
    event makes of the previous, ending on the server's final snapshot."""
    seqs = [snap["seq"] for _, snap in items]
    assert seqs == list(range(first_seq, first_seq + len(seqs))), seqs
    assert items[0][0] is None  # the snapshot we joined on
    assert [event for event, _ in items[1:]] == stored_events(server, job_id, since=first_seq)
    for (_, before), (event, after) in itertools.pairwise(items):
        expected = apply_event(before, event)
        # a running job's elapsed time in the server's own snapshots counts up to "now"
        expected["elapsed_seconds"] = after["elapsed_seconds"]
        assert after == expected, f"seq {event['seq']} {event['type']}"
    assert items[-1][1] == snapshot(server, job_id)
    assert items[-1][1]["status"] in {"completed", "failed", "cancelled"}


def the_connection():
    """The python-socketio (Engine.IO) client our watcher holds."""
    (conn,) = engineio.base_client.connected_clients
    return conn


def test_resume_across_a_server_restart(server):
    job_id = create_job(server)  # seq 1: job_started
    post(server, job_id, type="progress_update", stage="parsing", stage_progress=50)  # seq 2
    follower = Follower(watch(server.url, job_id, token_for("alice"), events=True, timeout=30))
    follower.wait_seq(2)
    post(server, job_id, type="progress_update", stage="parsing", stage_progress=100)  # live
    follower.wait_seq(3)

    port = server.port
    server.stop()
    # The pipeline goes on while the server is down, straight into the store.
    tracker = ProgressTracker(open_store(server.env["PROGRESSCAST_STORE_URL"]))
    tracker.record(job_id, "stage_completed")  # seq 4
    tracker.record(job_id, "progress_update", stage_progress=40, message="offline")  # seq 5
    tracker.store.close()
    assert [snap["seq"] for _, snap in follower.items] == [2, 3]

    server.start(port=port)
    post(server, job_id, type="progress_update", stage="analyzing", stage_progress=80)
    post(server, job_id, type="progress_update", stage="integrating", stage_progress=50)
    post(server, job_id, type="job_completed", result={"issues": 3})

    items = follower.join()
    assert_each_state_once(server, job_id, items, first_seq=2)
    types = [event["type"] for event, _ in items[1:]]
    assert types[1:3] == ["stage_completed", "progress_update"]  # the ones from the store
    assert items[3][1]["message"] == "offline"
    assert items[-1][1]["result"] == {"issues": 3}


def test_resume_after_the_connection_drops(server):
    job_id = create_job(server)
    follower = Follower(watch(server.url, job_id, token_for("alice"), events=True, timeout=30))
    follower.wait_seq(1)
    post(server, job_id, type="progress_update", stage="parsing", stage_progress=30)
    follower.wait_seq(2)

    first = the_connection()
    first.ws.sock.shutdown(socket.SHUT_RDWR)  # the network goes away under the client
    for pct in (60, 90):
        post(server, job_id, type="progress_update", stage="parsing", stage_progress=pct)
    post(server, job_id, type="progress_update", stage="analyzing", stage_progress=10)
    wait_until(
        lambda: (
            engineio.base_client.connected_clients
            and the_connection() is not first
            and the_connection().state == "connected"
        ),
        15,
        what="the watcher to reconnect",
    )
    post(server, job_id, type="job_failed", error={"message": "bad page", "type": "ValueError"})

    items = follower.join()
    assert_each_state_once(server, job_id, items, first_seq=1)
    final = items[-1][1]
    assert final["status"] == "failed"
    assert final["error"] == {"message": "bad page", "stage": "analyzing", "type": "ValueError"}


def test_a_fresh_token_after_session_expired(tmp_path):
    server = ServerProcess(tmp_path, env={"PROGRESSCAST_EXPIRY_SWEEP_SECONDS": "0.2"}).start()
    try:
        issued = []
        refreshed = threading.Event()

        def fresh_token():
            issued.append(time.monotonic())
            refreshed.set()
            return token_for("alice", ttl=1.5)

        job_id = create_job(server)
        follower = Follower(watch(server.url, job_id, fresh_token, events=True, timeout=30))
        follower.wait_seq(1)
        pct = 0
        deadline = time.monotonic() + 15
        while len(issued) < 3 and time.monotonic() < deadline:  # expired twice: two refreshes
            pct += 1
            post(server, job_id, type="progress_update", stage="parsing", stage_progress=pct)
            follower.wait_seq(pct + 1)
            refreshed.clear()
            refreshed.wait(0.2)  # paces the loop (HTTP rate limit), or wakes at a refresh
        assert len(issued) >= 3, "the token was never refreshed"
        post(server, job_id, type="job_cancelled", reason="enough")
        items = follower.join()
        assert_each_state_once(server, job_id, items, first_seq=1)
        assert items[-1][0]["reason"] == "enough"
    finally:
        server.stop(signal.SIGQUIT)


def test_an_ended_job_yields_its_snapshot_once(shared_server):
    job_id = create_job(shared_server)
    post(shared_server, job_id, type="job_completed", result=[1, 2])
    assert list(watch(shared_server.url, job_id, token_for("alice"))) == [
        snapshot(shared_server, job_id)
    ]


def test_breaking_out_early_closes_the_connection(shared_server):
    job_id = create_job(shared_server)
    for snap in watch(shared_server.url, job_id, lambda: token_for("alice")):
        assert snap["status"] == "running"
        break
    wait_until(lambda: not engineio.base_client.connected_clients, 5, what="disconnect")


@pytest.mark.parametrize(
    ("who", "job", "code"),
    [
        ("alice", "no-such-job", "not_found"),
        ("bob", None, "not_found"),  # another user's job looks like no job at all
        ("alice", "bad id!", "invalid_payload"),
        ("garbage", None, "unauthorized"),
        ("expired", None, "unauthorized"),
    ],
)
def test_refusals_raise_watch_error(shared_server, who, job, code):
    job_id = create_job(shared_server)
    token = {
        "garbage": "not-a-jwt",
        "expired": token_for("alice", ttl=1, now=time.time() - 60),
    }.get(who) or token_for(who)
    with pytest.raises(WatchError) as info:
        next(watch(shared_server.url, job or job_id, token))
    assert info.value.code == code, info.value


def test_a_token_function_is_asked_once_more_then_it_is_unauthorized(shared_server):
    job_id = create_job(shared_server)
    calls = []

    def bad_token():
        calls.append(1)
        return "not-a-jwt"

    with pytest.raises(WatchError, match="unauthorized"):
        list(watch(shared_server.url, job_id, bad_token))
    assert len(calls) == 2


def test_no_server():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(WatchError) as info:
        next(watch(url, "j1", "t", reconnect=False))
    assert info.value.code == "unreachable"
    started = time.monotonic()
    with pytest.raises(WatchTimeout):
        next(watch(url, "j1", "t", timeout=1))
    assert time.monotonic() - started < 5


def test_watch_all_follows_every_job_of_the_caller(server):
    old = create_job(server)
    post(server, old, type="job_completed")
    running = create_job(server)
    others = create_job(server, user="bob")
    made: list[str] = []

    def all_ended(items):
        ended = {s["job_id"] for s in items if s["status"] in ("completed", "failed")}
        return len(made) == 1 and {running, made[0]} <= ended

    follower = Follower(watch_all(server.url, token_for("alice"), timeout=30), stop=all_ended)
    follower.wait(lambda items: {old, running} <= {s["job_id"] for s in items}, what="both jobs")
    new = create_job(server, start=False)  # queued: a job that did not exist when we started
    made.append(new)
    follower.wait(lambda items: any(s["job_id"] == new for s in items), what="the new job")
    post(server, new, type="job_started")
    post(server, running, type="progress_update", stage="analyzing", stage_progress=10)
    follower.wait(lambda items: any(s["seq"] == 3 and s["job_id"] == running for s in items))

    first = the_connection()
    first.ws.sock.shutdown(socket.SHUT_RDWR)
    post(server, running, type="progress_update", stage="analyzing", stage_progress=60)
    post(server, new, type="progress_update", stage="parsing", stage_progress=50)
    wait_until(
        lambda: engineio.base_client.connected_clients and the_connection() is not first,
        15,
        what="the watcher to reconnect",
    )
    post(server, running, type="job_completed")
    post(server, new, type="job_failed", error="no")

    items = follower.join()
    by_job: dict[str, list[dict]] = {}
    for snap in items:
        by_job.setdefault(snap["job_id"], []).append(snap)
    assert set(by_job) == {old, running, new}  # never bob's
    assert others not in by_job
    for job_id, snaps in by_job.items():
        seqs = [s["seq"] for s in snaps]
        assert seqs == sorted(set(seqs)), (job_id, seqs)  # each state once, in order
        # computed from events: times to the millisecond of the events' ts
        loose = ("elapsed_seconds", "created_at")
        final = snapshot(server, job_id)
        assert {k: v for k, v in snaps[-1].items() if k not in loose} == {
            k: v for k, v in final.items() if k not in loose
        }
    assert by_job[old] == [snapshot(server, old)]
    assert by_job[new][0]["seq"] == 1 and by_job[new][0]["status"] == "queued"
    assert by_job[running][-1]["status"] == "completed"
    assert by_job[new][-1]["status"] == "failed"

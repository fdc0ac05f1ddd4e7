"""watch_jobs / unwatch_jobs: the caller's dashboard (room ``user:<id>``)."""

from __future__ import annotations

from .helpers import SNAPSHOT_KEYS, STAGES, as_user


def test_watch_acks_the_callers_jobs_only(alice, tracker):
    tracker.create_job("a1", STAGES, owner="alice", job_id="a1")
    tracker.create_job("a2", STAGES, owner="alice", job_id="a2", start=True)
    tracker.create_job("b1", STAGES, owner="bob", job_id="b1", start=True)

    ack = alice.ok("watch_jobs", {})

    assert set(ack) == {"ok", "jobs"}
    assert sorted(job["job_id"] for job in ack["jobs"]) == ["a1", "a2"]
    assert all(set(job) >= SNAPSHOT_KEYS and job["owner"] == "alice" for job in ack["jobs"])


def test_watch_with_no_jobs_acks_an_empty_list(alice):
    assert alice.request("watch_jobs", {}) == {"ok": True, "jobs": []}


def test_watch_receives_the_callers_new_jobs_never_another_users(alice, tracker, http):
    tracker.create_job("a1", STAGES, owner="alice", job_id="a1", start=True)
    tracker.create_job("b1", STAGES, owner="bob", job_id="b1", start=True)
    alice.ok("watch_jobs", {})

    tracker.record("b1", "progress_update", stage_progress=10)
    tracker.create_job("b2", STAGES, owner="bob", job_id="b2")
    body = {"name": "new", "stages": STAGES, "job_id": "a2"}
    r = http.post("/api/jobs", json=body, headers=as_user("alice"))
    assert r.status_code == 201
    tracker.record("b2", "job_started")
    tracker.record("a1", "progress_update", stage_progress=20)
    tracker.record("a2", "job_started")

    received = alice.wait_for("a2", 2)
    assert [(e["job_id"], e["seq"], e["type"]) for e in received] == [
        ("a2", 1, "job_queued"),
        ("a1", 2, "progress_update"),
        ("a2", 2, "job_started"),
    ]


def test_unwatch_stops_the_dashboard_events(alice, tracker):
    tracker.create_job("a1", STAGES, owner="alice", job_id="a1", start=True)
    alice.ok("watch_jobs", {})
    tracker.record("a1", "progress_update", stage_progress=10)
    assert [e["seq"] for e in alice.wait_for("a1", 2)] == [2]

    assert alice.request("unwatch_jobs", {}) == {"ok": True}
    tracker.record("a1", "progress_update", stage_progress=20)
    tracker.create_job("a2", STAGES, owner="alice", job_id="a2", start=True)
    # Sentinel: a job alice joined (room job:a3, not her dashboard's room).
    tracker.create_job("a3", STAGES, owner="alice", job_id="a3", start=True)
    alice.ok("join_job", {"job_id": "a3"})
    tracker.record("a3", "progress_update", stage_progress=30)

    received = alice.wait_for("a3", 2)
    assert [(e["job_id"], e["seq"]) for e in received] == [("a3", 2)]


def test_another_connection_of_the_same_user_sees_the_same_dashboard(connect, tracker):
    first, second = connect("alice"), connect("alice")
    first.ok("watch_jobs", {})
    second.ok("watch_jobs", {})

    tracker.create_job("a1", STAGES, owner="alice", job_id="a1")

    assert [e["type"] for e in first.wait_for("a1", 1)] == ["job_queued"]
    assert [e["type"] for e in second.wait_for("a1", 1)] == ["job_queued"]

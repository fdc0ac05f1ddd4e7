"""join_job / leave_job: snapshot, live events, resume with ``since``, rooms."""

from __future__ import annotations

import pytest

from .helpers import (
    SNAPSHOT_KEYS,
    STAGE_KEYS,
    STAGES,
    as_user,
    assert_event_shape,
    parse_iso_ms,
    seqs,
)


def progress(tracker, job_id: str, n: int) -> None:
    """Record ``n`` progress updates of the running stage."""
    for i in range(1, n + 1):
        tracker.record(job_id, "progress_update", stage_progress=min(100, 10 * i))


# ------------------------------------------------------------ join, snapshot


def test_join_acks_the_snapshot_then_live_events_arrive(alice, tracker):
    job = tracker.job(
        "report", STAGES, owner="alice", job_id="j1", metadata={"k": 1}, min_interval=0
    )

    ack = alice.ok("join_job", {"job_id": "j1"})

    assert set(ack) == {"ok", "job"}  # no `events` without `since`
    snap = ack["job"]
    assert set(snap) >= SNAPSHOT_KEYS
    assert snap["job_id"] == "j1" and snap["owner"] == "alice" and snap["name"] == "report"
    assert snap["status"] == "running" and snap["stage"] == "parsing" and snap["seq"] == 1
    assert snap["metadata"] == {"k": 1}
    assert [s["name"] for s in snap["stages"]] == ["parsing", "analyzing"]
    assert all(set(s) >= STAGE_KEYS for s in snap["stages"])
    assert [s["weight"] for s in snap["stages"]] == [0.25, 0.75]  # normalised
    assert parse_iso_ms(snap["started_at"]) >= parse_iso_ms(snap["created_at"])
    assert snap["finished_at"] is None and snap["error"] is None

    # Live, through the pipeline-side emitter.
    job.update(5, total=10, message="half")
    job.stage("analyzing")
    job.complete({"pages": 3})

    events = alice.wait_until(lambda inbox: any(e["type"] == "job_completed" for e in inbox))
    assert [e["type"] for e in events] == [
        "progress_update",
        "stage_completed",
        "stage_completed",
        "job_completed",
    ]
    assert seqs(events) == [2, 3, 4, 5]
    assert {e["job_id"] for e in events} == {"j1"}
    for event in events:
        assert_event_shape(event)
    assert events[0]["stage_progress"] == 50 and events[0]["message"] == "half"
    assert events[0]["progress"] == 12.5
    assert events[1]["stage"] == "parsing" and events[1]["next_stage"] == "analyzing"
    assert events[-1]["result"] == {"pages": 3} and events[-1]["progress"] == 100


def test_join_then_events_posted_over_http_arrive(alice, tracker, http):
    tracker.create_job("report", STAGES, owner="alice", job_id="j1")  # queued, seq 1
    assert alice.ok("join_job", {"job_id": "j1"})["job"]["status"] == "queued"

    r = http.post("/api/jobs/j1/events", json={"type": "job_started"}, headers=as_user("alice"))
    assert r.status_code == 201

    [event] = alice.wait_for("j1", 2)
    assert event["type"] == "job_started" and event["owner"] == "alice"
    assert event == r.get_json()["events"][0]


def test_a_job_that_completed_still_joins_with_its_final_snapshot(alice, tracker):
    with tracker.job("r", STAGES, owner="alice", job_id="j1") as job:
        job.complete("done")

    snap = alice.ok("join_job", {"job_id": "j1"})["job"]

    assert snap["status"] == "completed" and snap["progress"] == 100 and snap["result"] == "done"
    assert snap["finished_at"] is not None


# -------------------------------------------------------------------- resume


@pytest.fixture
def job7(tracker):
    """A running job of alice's whose history is seq 1..7."""
    tracker.create_job("r", STAGES, owner="alice", job_id="j1", start=True)
    progress(tracker, "j1", 6)
    assert tracker.get("j1").seq == 7
    return "j1"


@pytest.mark.parametrize("since", [0, 1, 4, 6])
def test_resume_gives_exactly_the_missing_events(alice, tracker, job7, since):
    ack = alice.ok("join_job", {"job_id": job7, "since": since})

    assert ack["job"]["seq"] == 7
    assert "truncated" not in ack
    assert seqs(ack["events"]) == list(range(since + 1, 8))
    assert ack["events"] == tracker.store.events_since(job7, since)

    # Live events continue right after the replay: no gap, no duplicate.
    progress(tracker, job7, 1)
    live = alice.wait_for(job7, 8)
    assert seqs(ack["events"] + live) == list(range(since + 1, 9))


def test_resume_from_the_current_seq_gives_no_events(alice, job7):
    ack = alice.ok("join_job", {"job_id": job7, "since": 7})

    assert ack["events"] == [] and "truncated" not in ack


@pytest.mark.parametrize("since", [8, 1000, 2**63 - 1])
def test_resume_from_beyond_the_current_seq_is_truncated(alice, job7, since):
    ack = alice.ok("join_job", {"job_id": job7, "since": since})

    assert ack["truncated"] is True and ack["events"] == []
    assert ack["job"]["seq"] == 7  # the client starts over from the snapshot


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (0, None),  # history starts at seq 4 now
        (2, None),
        (3, [4, 5, 6, 7, 8]),  # reaches back exactly far enough
        (6, [7, 8]),
        (8, []),
    ],
)
def test_resume_over_history_trimmed_by_the_store(make_app, connect, tmp_path, since, expected):
    app = make_app(STORE_URL=f"sqlite:///{tmp_path / 'pc.db'}?max_events_per_job=5")
    tracker = app.extensions["progresscast"].tracker
    tracker.create_job("r", STAGES, owner="alice", job_id="j1", start=True)
    progress(tracker, "j1", 7)  # seq 1..8; the store keeps the last 5
    assert tracker.store.first_seq("j1") == 4
    peer = connect("alice", app=app)

    ack = peer.ok("join_job", {"job_id": "j1", "since": since})

    assert ack["job"]["seq"] == 8
    if expected is None:
        assert ack["truncated"] is True and ack["events"] == []
    else:
        assert "truncated" not in ack and seqs(ack["events"]) == expected


def test_resume_further_back_than_join_max_events_is_truncated(make_app, connect):
    app = make_app(JOIN_MAX_EVENTS=3)
    tracker = app.extensions["progresscast"].tracker
    tracker.create_job("r", STAGES, owner="alice", job_id="j1", start=True)
    progress(tracker, "j1", 6)  # seq 1..7
    peer = connect("alice", app=app)

    assert peer.ok("join_job", {"job_id": "j1", "since": 3})["truncated"] is True
    ack = peer.ok("join_job", {"job_id": "j1", "since": 4})
    assert "truncated" not in ack and seqs(ack["events"]) == [5, 6, 7]


# --------------------------------------------------------------------- rooms


def test_rooms_of_two_jobs_stay_separate(connect, tracker):
    tracker.create_job("a", STAGES, owner="alice", job_id="A", start=True)
    tracker.create_job("b", STAGES, owner="alice", job_id="B", start=True)
    on_a, on_b = connect("alice"), connect("alice")
    on_a.ok("join_job", {"job_id": "A"})
    on_b.ok("join_job", {"job_id": "B"})

    for _ in range(3):  # interleaved
        progress(tracker, "A", 1)
        progress(tracker, "B", 1)

    got_a, got_b = on_a.wait_for("A", 4), on_b.wait_for("B", 4)
    assert [(e["job_id"], e["seq"]) for e in got_a] == [("A", 2), ("A", 3), ("A", 4)]
    assert [(e["job_id"], e["seq"]) for e in got_b] == [("B", 2), ("B", 3), ("B", 4)]


def test_after_leave_job_nothing_more_arrives(alice, tracker):
    tracker.create_job("a", STAGES, owner="alice", job_id="A", start=True)
    tracker.create_job("c", STAGES, owner="alice", job_id="C", start=True)
    alice.ok("join_job", {"job_id": "A"})
    alice.ok("join_job", {"job_id": "C"})
    progress(tracker, "A", 1)
    assert seqs(alice.wait_for("A", 2)) == [2]

    assert alice.request("leave_job", {"job_id": "A"}) == {"ok": True}
    progress(tracker, "A", 2)
    tracker.record("A", "job_completed")
    progress(tracker, "C", 1)  # sentinel: C is still joined

    received = alice.wait_for("C", 2)
    assert [(e["job_id"], e["seq"]) for e in received] == [("C", 2)]


def test_joined_and_watching_receives_each_event_once(alice, tracker):
    tracker.create_job("a", STAGES, owner="alice", job_id="A", start=True)
    alice.ok("join_job", {"job_id": "A"})
    alice.ok("watch_jobs", {})

    progress(tracker, "A", 2)

    assert seqs(alice.wait_for("A", 3)) == [2, 3]

"""watch_jobs {batch: true}: job_events frames instead of one frame per event."""

from __future__ import annotations

import time

from .helpers import NS, STAGES


def batches(peer, timeout=3.0, until=None):
    """job_events frames received, polling until ``until(frames)`` holds."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        for pkt in peer.raw.get_received(NS):
            assert pkt["name"] == "job_events", pkt["name"]  # nothing unbatched
            frames.append(pkt["args"][0])
        if until is None or until(frames) or time.monotonic() > deadline:
            return frames
        time.sleep(0.01)


def test_a_batching_dashboard_gets_every_event_in_few_frames(make_app, connect):
    app = make_app(BATCH_INTERVAL=0.2)
    tracker = app.extensions["progresscast"]
    dash = connect("alice", app=app)
    assert dash.ok("watch_jobs", {"batch": True})["jobs"] == []

    jobs = []
    for i in range(10):
        job = tracker.job(f"j{i}", STAGES, owner="alice", min_interval=0)
        for done in range(1, 6):
            job.update(done, 5)
        jobs.append(job)
    tracker.job("bob's", STAGES, owner="bob", min_interval=0)  # never shown to alice
    emitted = tracker.store.count_jobs("alice")
    expected = sum(len(tracker.store.events_since(j.job_id)) for j in jobs)

    def complete(frames):
        return sum(len(f["events"]) for f in frames) >= expected

    frames = batches(dash, until=complete)
    events = [e for f in frames for e in f["events"]]
    assert emitted == 10 and len(events) == expected
    assert len(frames) < expected / 5  # far fewer frames than events
    assert {e["job_id"] for e in events} == {j.job_id for j in jobs}
    for job in jobs:  # every job's events, each once, in seq order
        seqs = [e["seq"] for e in events if e["job_id"] == job.job_id]
        assert seqs == list(range(1, len(seqs) + 1))


def test_a_plain_watcher_still_gets_each_event(make_app, connect):
    app = make_app(BATCH_INTERVAL=0.05)
    tracker = app.extensions["progresscast"]
    plain, batching = connect("alice", app=app), connect("alice", app=app)
    plain.ok("watch_jobs")
    batching.ok("watch_jobs", {"batch": True})
    with tracker.job("j", STAGES, owner="alice") as job:
        pass
    n = len(tracker.store.events_since(job.job_id))
    assert [e["seq"] for e in plain.wait_until(lambda inbox: len(inbox) >= n)] == list(
        range(1, n + 1)
    )
    frames = batches(batching, until=lambda f: sum(len(x["events"]) for x in f) >= n)
    assert [e["seq"] for f in frames for e in f["events"]] == list(range(1, n + 1))


def test_unwatch_stops_batches_too(make_app, connect):
    app = make_app(BATCH_INTERVAL=0.05)
    tracker = app.extensions["progresscast"]
    dash = connect("alice", app=app)
    dash.ok("watch_jobs", {"batch": True})
    dash.ok("unwatch_jobs")
    with tracker.job("j", STAGES, owner="alice"):
        pass
    watcher = connect("alice", app=app)  # a sentinel that does watch
    watcher.ok("watch_jobs", {"batch": True})
    with tracker.job("k", STAGES, owner="alice") as k:
        pass
    batches(watcher, until=lambda f: any(e["job_id"] == k.job_id for x in f for e in x["events"]))
    assert batches(dash, timeout=0) == []

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
    tracker = app.extensions["progresscast"].tracker
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
    tracker = app.extensions["progresscast"].tracker
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
    tracker = app.extensions["progresscast"].tracker
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


def everything_received(peer, until, timeout=3.0):
    """Every job event the peer received, directly or inside job_events frames."""
    events = []
    deadline = time.monotonic() + timeout
    while not until(events):
        for pkt in peer.raw.get_received(NS):
            payload = pkt["args"][0]
            if pkt["name"] == "job_events":
                events += [{**e, "batched": True} for e in payload["events"]]
            else:
                events.append(payload)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; received {events}")
        time.sleep(0.01)
    return events


def run_job(tracker, owner="alice"):
    with tracker.job("j", STAGES, owner=owner, min_interval=0) as job:
        for done in range(1, 6):
            job.update(done, 5)
    return job.job_id, len(tracker.store.events_since(job.job_id))


def test_a_batched_watcher_that_also_joined_the_job_gets_each_event_once(make_app, connect):
    app = make_app(BATCH_INTERVAL=0.05)
    tracker = app.extensions["progresscast"].tracker
    peer = connect("alice", app=app)
    peer.ok("watch_jobs", {"batch": True})
    first = tracker.create_job("j0", STAGES, owner="alice")
    peer.ok("join_job", {"job_id": first.job_id})
    tracker.record(first.job_id, "job_started")
    tracker.record(first.job_id, "job_completed")
    other, n_other = run_job(tracker)  # watched only through the batch
    n_first = len(tracker.store.events_since(first.job_id))

    def done(events):
        return {(e["job_id"], e["seq"]) for e in events} >= {
            *((first.job_id, s) for s in range(1, n_first + 1)),
            *((other, s) for s in range(1, n_other + 1)),
        }

    events = everything_received(peer, done)
    keys = [(e["job_id"], e["seq"]) for e in events]
    assert len(keys) == len(set(keys)), f"an event arrived twice: {keys}"
    # Before the join, the job's event came in a batch; after it, directly.
    assert sorted(
        (e["seq"], e.get("batched", False)) for e in events if e["job_id"] == first.job_id
    ) == [
        (1, True),
        *((s, False) for s in range(2, n_first + 1)),
    ]


def test_an_admin_in_two_batched_rooms_gets_each_event_once(make_app, connect):
    app = make_app(BATCH_INTERVAL=0.05)
    tracker = app.extensions["progresscast"].tracker
    admin = connect("root", app=app, admin=True)
    admin.ok("watch_jobs", {"batch": True})
    admin.ok("watch_jobs", {"batch": True, "all": True})
    plain = connect("root", app=app, admin=True)  # shares the rooms' frames
    plain.ok("watch_jobs", {"batch": True, "all": True})
    own, n_own = run_job(tracker, owner="root")
    theirs, n_theirs = run_job(tracker, owner="bob")
    expected = {(own, s) for s in range(1, n_own + 1)} | {
        (theirs, s) for s in range(1, n_theirs + 1)
    }
    for peer in (admin, plain):
        events = everything_received(
            peer, lambda ev: {(e["job_id"], e["seq"]) for e in ev} >= expected
        )
        keys = [(e["job_id"], e["seq"]) for e in events]
        assert len(keys) == len(set(keys)) == len(expected), keys
        for job_id in (own, theirs):  # in seq order within each job
            assert [s for j, s in keys if j == job_id] == sorted(s for j, s in keys if j == job_id)

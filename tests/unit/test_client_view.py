"""``JobView``: the client's resume rules (docs/protocol.md, Resume), without a
server: duplicates and stale events dropped, early ones held until the gap
fills, acks replayed, ``truncated`` starting over. Also the CLI's formatting."""

from __future__ import annotations

import pytest

from progresscast import ProgressTracker, SQLiteStore
from progresscast.cli import jobs_table, status_line
from progresscast.client import JobView

from .fakes import DOC_STAGES, T0, FakeClock, RecordingEmitter


@pytest.fixture
def history():
    """A finished job's events (1..n), its final snapshot and the stored
    snapshots at a few seqs (seq 8: analyzing at 50%)."""
    clock = FakeClock(T0)
    sink = RecordingEmitter()
    store = SQLiteStore(":memory:")
    tracker = ProgressTracker(store, sink, clock=clock)
    job_id = tracker.create_job("h", DOC_STAGES, owner="u", job_id="job-h").job_id
    after: dict[int, dict] = {}
    tracker.record(job_id, "job_started")
    for stage in DOC_STAGES:
        for pct in (25, 50, 75):
            clock.advance(0.25)
            tracker.record(job_id, "progress_update", stage=stage, stage_progress=pct)
            if pct == 50:
                after[tracker.get(job_id).seq] = tracker.get(job_id).snapshot()
    clock.advance(0.25)
    tracker.record(job_id, "job_completed", result=1)
    events = sink.events
    final = tracker.get(job_id).snapshot()
    store.close()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    return events, final, after


def seqs(changes):
    return [snap["seq"] for _, snap in changes]


def test_in_order_then_duplicates_and_stale_are_dropped(history):
    events, final, _ = history
    view = JobView("job-h")
    out = []
    for event in events:
        out += view.offer(event)
    assert seqs(out) == list(range(1, len(events) + 1))
    assert [e for e, _ in out] == events
    assert view.snapshot == final and view.ended
    assert view.offer(events[3]) == [] and view.offer(events[-1]) == []
    assert view.offer({**events[-1], "seq": len(events) + 1}) == []  # nothing after the end


def test_out_of_order_events_are_held_until_the_gap_fills(history):
    events, final, _ = history
    clock = FakeClock(0.0)
    view = JobView("job-h", clock=clock)
    assert seqs(view.offer(events[0])) == [1]
    assert view.offer(events[2]) == [] and view.offer(events[3]) == []
    assert view.gap_age() == 0.0
    clock.advance(0.7)
    assert view.gap_age() == pytest.approx(0.7)
    assert seqs(view.offer(events[1])) == [2, 3, 4]
    assert view.gap_age() == 0.0 and not view.pending
    out = []
    for event in reversed(events[4:]):
        out += view.offer(event)
    assert seqs(out) == list(range(5, len(events) + 1))
    assert view.snapshot == final


def test_a_join_ack_replays_and_its_snapshot_replaces_the_last(history):
    events, _, after = history
    view = JobView("job-h")
    first = view.sync({"ok": True, "job": {"job_id": "job-h", "seq": 0, "status": "x"}})
    assert seqs(first) == [0] and first[0][0] is None
    # a live event that arrived before the ack of a rejoin is held
    view = JobView("job-h")
    for event in events[:5]:
        view.offer(event)
    assert view.offer(events[9]) == []
    server_at_8 = {**after[8], "elapsed_seconds": 99.0}  # the server counts up to now
    out = view.sync({"ok": True, "job": server_at_8, "events": events[5:8]})
    assert seqs(out) == [6, 7, 8]
    assert out[-1] == (events[7], server_at_8) and view.from_server
    # the ack's own duplicates are dropped; the held event goes on from there
    assert seqs(view.offer(events[8])) == [9, 10]
    assert not view.from_server


def test_truncated_or_a_store_gone_back_starts_over(history):
    events, final, _ = history
    view = JobView("job-h")
    for event in events[:6]:
        view.offer(event)
    out = view.sync({"ok": True, "job": final, "events": [], "truncated": True})
    assert out == [(None, final)] and view.ended
    view = JobView("job-h")
    for event in events[:6]:
        view.offer(event)
    reset = {**events[0], "seq": 2, "status": "running"}
    assert view.sync({"ok": True, "job": reset, "events": []}) == [(None, reset)]
    assert view.seq == 2


def test_a_short_replay_falls_back_to_the_snapshot(history):
    events, final, _ = history
    view = JobView("job-h")
    for event in events[:3]:
        view.offer(event)
    out = view.sync({"ok": True, "job": final, "events": events[3:6]})
    assert seqs(out) == [4, 5, 6, final["seq"]]
    assert out[-1] == (None, final)


def test_status_line_and_jobs_table():
    snap = {
        "job_id": "j1",
        "name": "report.pdf",
        "status": "running",
        "stages": [{"name": "parsing"}, {"name": "analyzing"}],
        "stage": "analyzing",
        "stage_progress": 50.0,
        "progress": 57.5,
        "eta_seconds": 75.2,
        "message": "page 41\nof 82",
        "cancel_requested": None,
        "created_at": "2023-11-14T22:10:20.000Z",
    }
    assert status_line(snap) == " 57.5% | analyzing (2/2) 50% | ETA about 1 min | page 41 of 82"
    done = {**snap, "status": "completed", "stage": None, "progress": 100.0, "message": None}
    assert status_line(done) == "100.0% | completed"
    failed = {**snap, "status": "failed", "message": None}
    assert status_line(failed) == " 57.5% | failed in analyzing (2/2) 50%"
    asked = {**snap, "cancel_requested": "user asked", "message": None, "eta_seconds": None}
    assert status_line(asked) == " 57.5% | analyzing (2/2) 50% | cancelling"
    lines = jobs_table([snap, {**done, "job_id": "j2", "name": "n" * 50}], now=T0)
    assert lines[0].split() == ["ID", "NAME", "STATUS", "PROGRESS", "STAGE", "AGE"]
    assert lines[1].split() == ["j1", "report.pdf", "running", "57.5%", "analyzing", "3m"]
    assert lines[2].split()[2:] == ["completed", "100.0%", "-", "3m"]
    assert "…" in lines[2]

"""``progresscast.client.apply_event`` mirrors the server's state machine.

Jobs are driven through a real :class:`ProgressTracker` (SQLite store, fake
clocks) whose Socket.IO sink records every event together with the stored
snapshot after it. Replaying the events on the client side, from nothing or
from the first snapshot, must give the server's snapshot at every step.

What the events do not carry (documented on ``apply_event``) is left out of
the comparison: ``cancel_requested`` is a request, not an event. The golden
fixtures (``test_golden_fixtures.py``) pin the same rules down event by event.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progresscast import Conflict, InvalidPayload, JobCancelled, ProgressTracker, SQLiteStore
from progresscast.client import apply_event

from .fakes import DOC_STAGES, T0, FakeClock


class StoredSnapshots:
    """A Socket.IO ``emit`` stand-in: every event, and the stored snapshot
    after each event that was the last of its request."""

    def __init__(self) -> None:
        self.tracker: ProgressTracker | None = None
        self.events: list[dict] = []
        self.after: dict[int, dict] = {}

    def emit(self, event, data, to=None, namespace=None):
        self.events.append(copy.deepcopy(data))
        state = self.tracker.store.get(data["job_id"])
        if state.seq == data["seq"]:
            # snapshot() without `now`: elapsed time as of the last event
            self.after[data["seq"]] = state.snapshot()


@pytest.fixture
def rig():
    clock, mono = FakeClock(T0), FakeClock(0.0)
    sink = StoredSnapshots()
    store = SQLiteStore(":memory:")
    tracker = ProgressTracker(store, sink, clock=clock, min_interval=0.1)
    sink.tracker = tracker
    yield tracker, sink, clock, mono
    store.close()


def replay(events, start=None):
    """Client-side snapshots after each event, by seq."""
    snap, out = start, {}
    for event in events:
        before = copy.deepcopy(snap)
        after = apply_event(snap, event)
        assert snap == before  # pure: the input is left as it was
        assert after["seq"] == event["seq"]
        out[event["seq"]] = snap = after
    return out


def assert_mirrors(sink, *, from_first=False, lossy=None):
    """Every stored snapshot equals the replayed one (``lossy``: seq → fields
    the events cannot carry, left out)."""
    events = sink.events
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    if from_first:
        first = events[0]["seq"]
        mine = replay(events[1:], start=copy.deepcopy(sink.after[first]))
        mine[first] = sink.after[first]
    else:
        mine = replay(events)
    assert set(sink.after) <= set(mine)
    for seq, server in sink.after.items():
        client = dict(mine[seq])
        server = dict(server)
        for field in (lossy or {}).get(seq, ()):
            client[field] = server[field]
        assert client == server, f"seq {seq} ({events[seq - 1]['type']})"


# ---------------------------------------------------------------- scenarios


def test_a_whole_job_from_the_emitter(rig):
    tracker, sink, clock, mono = rig
    with tracker.job("report", DOC_STAGES, owner="alice", metadata={"f": 1}, clock=mono) as job:
        for stage in DOC_STAGES:
            with job.stage(stage, total=8):
                for i in range(8):
                    clock.advance(0.125)
                    mono.advance(0.125)
                    job.advance(message=f"{stage} {i}")
        job.complete({"issues": 3})
    assert sink.after[len(sink.events)]["status"] == "completed"
    assert_mirrors(sink)
    assert_mirrors(sink, from_first=True)


def test_stage_jumps_skip_and_pending_progress_flushes_with_transitions(rig):
    tracker, sink, clock, mono = rig
    job = tracker.job("jumpy", DOC_STAGES, owner="alice", clock=mono)
    job.update(3, total=4, message="three of four")  # not sent: throttled
    clock.advance(0.5)
    job.stage("integrating")  # completes parsing with 75% pending, skips analyzing
    clock.advance(0.25)
    mono.advance(1)
    job.update(1, total=2)
    job.complete_stage()
    clock.advance(0.25)
    job.complete("done")  # completes formatting
    types = [e["type"] for e in sink.events]
    assert types.count("stage_completed") == 3
    assert [s["status"] for s in sink.after[len(types)]["stages"]] == [
        "completed",
        "skipped",
        "completed",
        "completed",
    ]
    assert_mirrors(sink)


def test_http_style_requests(rig):
    tracker, sink, clock, _ = rig
    job_id = tracker.create_job("import", DOC_STAGES, owner="bob").job_id  # queued
    clock.advance(1)
    tracker.record(job_id, "job_started")
    for stage, pct in (("parsing", 50), ("analyzing", 20), ("analyzing", 90), ("formatting", 10)):
        clock.advance(0.25)
        tracker.record(job_id, "progress_update", stage=stage, stage_progress=pct, message="m")
    clock.advance(0.5)
    tracker.record(job_id, "stage_completed")  # the last stage: stage becomes None
    clock.advance(0.5)
    tracker.record(job_id, "job_completed", result={"rows": 12})
    assert_mirrors(sink)


def test_failure_with_pending_progress(rig):
    tracker, sink, clock, mono = rig
    with pytest.raises(ValueError), tracker.job("f", DOC_STAGES, owner="a", clock=mono) as job:
        job.stage("analyzing", total=100)
        clock.advance(0.5)
        job.update(63, message="page 63")  # throttled: flushed with job_failed
        raise ValueError("bad page")
    last = len(sink.events)
    server = sink.after[last]
    assert server["status"] == "failed" and server["stage_progress"] == 63.0
    assert server["error"] == {"message": "bad page", "stage": "analyzing", "type": "ValueError"}
    # job_failed carries the flushed numbers (protocol extension): an exact mirror
    assert_mirrors(sink)
    mine = replay(sink.events)[last]
    assert mine["progress"] == server["progress"] and mine["message"] == "page 63"


def test_failure_without_pending_progress_is_exact(rig):
    tracker, sink, clock, _ = rig
    job_id = tracker.create_job("f", ["a", "b"], owner="a", start=True).job_id
    for pct in (10, 20, 30, 40):
        clock.advance(0.25)
        tracker.record(job_id, "progress_update", stage="b", stage_progress=pct, message="x")
    assert sink.after[len(sink.events)]["eta_seconds"] is not None
    clock.advance(0.25)
    tracker.record(job_id, "job_failed", error="disk full")
    assert sink.after[len(sink.events)]["eta_seconds"] is None
    assert_mirrors(sink)


def test_cancel_on_request_while_running(rig):
    tracker, sink, clock, mono = rig
    job = tracker.job("c", DOC_STAGES, owner="a", clock=mono)
    job.stage("analyzing", total=10)
    job.update(4)
    tracker.request_cancel(job.job_id, "user asked")
    mono.advance(1)
    clock.advance(0.5)
    job.update(5)  # pending: flushed with job_cancelled
    with pytest.raises(JobCancelled):
        job.check_cancelled()
    last = len(sink.events)
    assert sink.events[-1]["type"] == "job_cancelled"
    assert sink.events[-1]["reason"] == "user asked"
    # cancel_requested is a request, not an event; job_cancelled carries the
    # numbers flushed with it (protocol extension)
    assert sink.after[last]["stage_progress"] == 50.0
    assert_mirrors(sink, lossy={seq: ("cancel_requested",) for seq in sink.after})


def test_queued_job_cancelled_and_failed_before_start(rig):
    tracker, sink, clock, _ = rig
    a = tracker.create_job("q1", ["x"], owner="a").job_id
    clock.advance(1)
    tracker.request_cancel(a, "not needed")
    assert_mirrors(sink)
    sink.events.clear()
    sink.after.clear()
    b = tracker.create_job("q2", ["x"], owner="a").job_id
    tracker.record(b, "job_failed", error={"message": "no worker", "type": "Lost"})
    assert_mirrors(sink)
    assert sink.after[2]["elapsed_seconds"] is None and sink.after[2]["stage"] is None


def test_first_event_starts_from_nothing_only():
    event = {"job_id": "j", "seq": 1, "type": "progress_update", "ts": "2026-01-01T00:00:00.000Z"}
    with pytest.raises(ValueError, match="needs the job's snapshot"):
        apply_event(None, event)
    with pytest.raises(ValueError, match="unknown event type"):
        apply_event(None, {**event, "type": "job_exploded"})
    started = {**event, "type": "job_started", "name": "n", "owner": "o", "metadata": {}}
    snap = apply_event(None, {**started, "stages": [{"name": "a", "weight": 1.0}]})
    with pytest.raises(ValueError, match="event of job"):
        apply_event(snap, {**event, "job_id": "other", "seq": 2, "stage": "a"})


# ------------------------------------------------------------------ property


STAGE_NAMES = list(DOC_STAGES)
pct = st.one_of(st.none(), st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 4)))
pending = st.fixed_dictionaries(
    {}, optional={"stage_progress": pct, "message": st.one_of(st.none(), st.text(max_size=5))}
)
stage = st.one_of(st.none(), st.sampled_from(STAGE_NAMES))
progress = st.tuples(st.just("progress_update"), st.fixed_dictionaries({"stage": stage}), pending)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.sampled_from([0.125, 0.25, 1.0])),
        progress,  # three times as likely as the others: ETA needs a few updates
        progress,
        progress,
        st.tuples(
            st.just("stage_completed"),
            st.fixed_dictionaries({"stage": stage, "next_stage": stage}),
            pending,
        ),
        st.tuples(st.just("job_started"), st.just({}), st.just({})),
        st.tuples(st.just("request_cancel"), st.just("why")),
    ),
    min_size=4,
    max_size=40,
)
ending = st.one_of(
    st.none(),
    st.tuples(st.just("job_completed"), st.fixed_dictionaries({"result": st.integers()}), pending),
    st.tuples(
        st.just("job_failed"), st.fixed_dictionaries({"error": st.text(max_size=5)}), pending
    ),
    st.tuples(st.just("job_cancelled"), st.fixed_dictionaries({"reason": st.none()}), pending),
)
ops = st.tuples(steps, ending).map(lambda t: t[0] + ([t[1]] if t[1] else []))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.booleans(), ops=ops)
def test_any_sequence_of_requests_is_mirrored(start, ops):
    clock = FakeClock(T0)
    sink = StoredSnapshots()
    store = SQLiteStore(":memory:")
    try:
        tracker = ProgressTracker(store, sink, clock=clock)
        sink.tracker = tracker
        job_id = tracker.create_job("p", DOC_STAGES, owner="u", start=start).job_id
        cancel_asked = False
        for op in ops:
            kind = op[0]
            try:
                if kind == "tick":
                    clock.advance(op[1])
                elif kind == "request_cancel":
                    if tracker.get(job_id).status == "running":  # else it ends the job
                        tracker.request_cancel(job_id, op[1])
                        cancel_asked = True
                else:
                    tracker.record(job_id, kind, **op[1], **op[2])
            except (Conflict, InvalidPayload):
                pass
        # cancel_requested is a request, not an event
        lossy = {s: ("cancel_requested",) for s in sink.after} if cancel_asked else None
        assert_mirrors(sink, lossy=lossy)
    finally:
        store.close()

"""Counts, units, rates and indeterminate stages; job groups (docs/protocol.md,
"Counts, units and rates" and "Groups"). Fake clocks: every number is exact."""

from __future__ import annotations

import pytest

from progresscast import Conflict, InvalidPayload, JobStatus
from progresscast.eta import RateMeter
from progresscast.groups import BELOW_DONE, MAX_CHILDREN

from .fakes import T0


def kinds(events):
    return [e["type"] for e in events]


def running(tracker, stages=("load", "index"), **kw):
    return tracker.create_job("import", list(stages), owner="ann", start=True, **kw)


# ------------------------------------------------------------------ rates


def test_rate_is_none_until_two_reports_at_different_times():
    meter = RateMeter()
    assert meter.observe(0.0, 0) is None
    assert meter.observe(0.0, 10) is None  # no time has passed
    assert meter.observe(2.0, 100) == 50.0  # 100 units in 2 s (the first sample)


def test_rate_is_smoothed_and_ignores_a_count_going_back():
    meter = RateMeter()
    meter.observe(0.0, 0)
    meter.observe(1.0, 10)  # 10/s
    smoothed = meter.observe(2.0, 40)  # 30/s: the EMA lands between
    assert 10 < smoothed < 30
    assert meter.observe(3.0, 5) == smoothed  # a reset count says nothing of the rate
    assert RateMeter.from_dict(meter.to_dict()).rate == smoothed  # stored and read back


# ----------------------------------------------------------------- counts


def test_a_count_with_a_total_gives_the_stage_percent_and_a_rate(tracker, clock):
    job = running(tracker)
    events, st = tracker.apply(job.job_id, "progress_update", n=0, total=400, unit="rows")
    assert (st.n, st.total, st.unit, st.rate, st.stage_progress) == (0, 400, "rows", None, 0.0)
    clock.advance(2.0)
    events, st = tracker.apply(job.job_id, "progress_update", n=100)
    (update,) = events
    assert update["stage_progress"] == 25.0 and update["progress"] == 12.5
    assert (update["n"], update["total"], update["unit"], update["rate"]) == (
        100,
        400,
        "rows",
        50.0,
    )
    snap = st.snapshot()
    assert (snap["n"], snap["total"], snap["unit"], snap["rate"]) == (100, 400, "rows", 50.0)


def test_a_reported_percent_wins_over_the_count(tracker):
    job = running(tracker)
    _, st = tracker.apply(job.job_id, "progress_update", n=10, total=100, stage_progress=50)
    assert st.stage_progress == 50.0


def test_an_indeterminate_stage_has_a_count_and_a_rate_but_no_percent_or_eta(tracker, clock):
    job = running(tracker, stages=("scan", "load"))
    for i in range(1, 5):  # enough samples that the ETA would exist
        clock.advance(1.0)
        events, st = tracker.apply(job.job_id, "progress_update", n=i * 250, unit="rows")
    (update,) = events
    assert update["total"] is None and update["n"] == 1000 and update["rate"] == 250.0
    assert update["stage_progress"] == 0.0 and update["progress"] == 0.0  # a lower bound
    assert update["eta_seconds"] is None
    # the next stage has a total again, so an ETA can come back
    tracker.apply(job.job_id, "stage_completed")
    for i in range(1, 4):
        clock.advance(1.0)
        _, st = tracker.apply(job.job_id, "progress_update", n=i, total=10)
    assert st.eta_seconds is not None and st.progress == 50 + 15


def test_a_count_belongs_to_its_stage(tracker, clock):
    job = running(tracker)
    tracker.apply(job.job_id, "progress_update", n=5, total=10, unit="rows")
    _, st = tracker.apply(job.job_id, "stage_completed")
    assert (st.n, st.total, st.unit, st.rate) == (None, None, None, None)
    _, st = tracker.apply(job.job_id, "progress_update", n=3)
    assert (st.n, st.total, st.unit) == (3, None, None)


def test_terminal_events_carry_the_count_as_it_was(tracker):
    job = running(tracker)
    tracker.apply(job.job_id, "progress_update", n=7, total=10, unit="files")
    (failed,) = tracker.apply(job.job_id, "job_failed", error="disk full", n=8)[0]
    assert (failed["n"], failed["total"], failed["unit"]) == (8, 10, "files")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"n": -1}, "n"),
        ({"n": float("inf")}, "n"),
        ({"n": True}, "n"),
        ({"n": "3"}, "n"),
        ({"total": 0}, "total"),
        ({"total": -5}, "total"),
        ({"unit": ""}, "unit"),
        ({"unit": "x" * 33}, "unit"),
        ({"unit": 5}, "unit"),
        ({"children": {"total": -1}}, "children"),
        ({"children": {"bogus": 1}}, "children"),
    ],
)
def test_bad_counts_are_refused_with_the_field_named(tracker, fields, field):
    job = running(tracker)
    with pytest.raises(InvalidPayload) as err:
        tracker.apply(job.job_id, "progress_update", **fields)
    assert field in err.value.details
    assert tracker.get(job.job_id).seq == 1  # nothing stored


def test_the_emitter_sends_counts_for_a_counted_stage(tracker, mono, clock):
    emitter = tracker.job("import", ["load", "index"], owner="ann", clock=mono)
    with emitter.stage("load", total=4, unit="rows"):
        for _ in range(4):
            mono.advance(0.2)
            clock.advance(0.2)  # the tracker's time, which the rate is measured in
            emitter.advance()
    with emitter.stage("index"):  # counted without a total: indeterminate
        for _ in range(3):
            mono.advance(0.2)
            emitter.advance()
        mid = tracker.get(emitter.job_id)
        assert mid.n == 3 and mid.total is None and mid.unit is None
    emitter.complete()
    events = tracker.store.events_since(emitter.job_id)
    loading = [e for e in events if e["type"] == "progress_update" and e["stage"] == "load"]
    assert loading and all((e["total"], e["unit"]) == (4, "rows") for e in loading)
    counts = [e["n"] for e in loading]
    assert counts == sorted(counts) and 0 < counts[-1] <= 4
    assert any(e["rate"] for e in loading[1:])


def test_a_stage_that_never_counts_sends_no_count(tracker, mono):
    emitter = tracker.job("import", ["load"], owner="ann", clock=mono)
    mono.advance(1.0)
    emitter.message("reading")
    (update,) = [
        e for e in tracker.store.events_since(emitter.job_id) if e["type"] == "progress_update"
    ]
    assert update["n"] is None and update["message"] == "reading"


# ----------------------------------------------------------------- groups


def group(tracker, n=3, **kw):
    return tracker.group(
        "import 3 videos",
        [(f"video {i}", ["fetch", "encode"]) for i in range(n)],
        owner="ann",
        **kw,
    )


def test_a_group_is_a_queued_parent_with_queued_children(tracker):
    parent, kids = group(tracker)
    assert parent.status is JobStatus.QUEUED and parent.parent_id is None
    assert parent.children == {
        "total": 3,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "running": 0,
        "queued": 3,
    }
    assert [s.name for s in parent.stages] == ["jobs"]
    assert [k.parent_id for k in kids] == [parent.job_id] * 3
    assert {k.owner for k in kids} == {"ann"}
    assert [k.job_id for k in tracker.children(parent.job_id)] == [k.job_id for k in kids]
    (queued,) = tracker.store.events_since(parent.job_id)
    assert queued["children"]["total"] == 3 and queued["parent_id"] is None
    assert tracker.store.events_since(kids[0].job_id)[0]["parent_id"] == parent.job_id


def test_the_parent_starts_with_its_first_child_and_follows_the_weighted_mean(tracker, clock):
    parent, kids = tracker.group(
        "g",
        [{"name": "a", "stages": ["x"], "weight": 3}, {"name": "b", "stages": ["x"]}],
        owner="ann",
    )
    tracker.start(kids[0].job_id)
    assert tracker.get(parent.job_id).status is JobStatus.RUNNING
    clock.advance(1.0)
    tracker.apply(kids[0].job_id, "progress_update", stage_progress=40)
    p = tracker.get(parent.job_id)
    assert p.progress == 30.0  # (3 × 40 + 1 × 0) / 4
    assert p.children["running"] == 1 and p.children["queued"] == 1
    assert (p.n, p.total, p.unit) == (0, 2, "jobs")


def test_plain_progress_reaches_the_parent_at_most_once_per_interval(tracker, clock):
    parent, kids = group(tracker, n=1)
    tracker.start(kids[0].job_id)
    seq = tracker.get(parent.job_id).seq
    tracker.apply(kids[0].job_id, "progress_update", stage_progress=10)
    tracker.apply(kids[0].job_id, "progress_update", stage_progress=20)  # same instant: held back
    assert tracker.get(parent.job_id).seq == seq + 1
    clock.advance(0.2)
    tracker.apply(kids[0].job_id, "progress_update", stage_progress=30)
    p = tracker.get(parent.job_id)
    assert p.seq == seq + 2 and p.progress == 15.0
    # a stage change is never held back
    tracker.apply(kids[0].job_id, "stage_completed")
    assert tracker.get(parent.job_id).seq == seq + 3


def test_the_parent_reaches_100_exactly_when_the_last_child_completes(tracker, clock):
    parent, kids = group(tracker, n=10)
    for i, kid in enumerate(kids):
        tracker.start(kid.job_id)
        clock.advance(0.5)
        tracker.apply(kid.job_id, "progress_update", stage="encode", stage_progress=100)
        before = tracker.get(parent.job_id)
        assert before.progress < 100 and before.status is JobStatus.RUNNING
        tracker.apply(kid.job_id, "job_completed")
        after = tracker.get(parent.job_id)
        if i < 9:
            assert after.progress <= BELOW_DONE and after.status is JobStatus.RUNNING
            assert after.children["completed"] == i + 1
    p = tracker.get(parent.job_id)
    assert p.status is JobStatus.COMPLETED and p.progress == 100.0
    tail = kinds(tracker.store.events_since(parent.job_id))[-3:]
    assert tail == ["progress_update", "stage_completed", "job_completed"]
    final = tracker.store.events_since(parent.job_id)[-3]
    assert final["children"]["completed"] == 10 and final["n"] == 10 and final["rate"] > 0


def test_a_failed_child_fails_the_parent_naming_it_once_all_have_ended(tracker):
    parent, kids = group(tracker)
    for kid in kids:
        tracker.start(kid.job_id)
    tracker.apply(kids[1].job_id, "job_failed", error="codec missing")
    assert tracker.get(parent.job_id).status is JobStatus.RUNNING  # the others still run
    tracker.apply(kids[0].job_id, "job_completed")
    tracker.apply(kids[2].job_id, "job_completed")
    p = tracker.get(parent.job_id)
    assert p.status is JobStatus.FAILED
    assert p.error["type"] == "children_failed"
    assert p.error["message"] == "1 of 3 jobs failed: video 1"
    assert p.children == {
        "total": 3,
        "completed": 2,
        "failed": 1,
        "cancelled": 0,
        "running": 0,
        "queued": 0,
    }


def test_cancelling_the_parent_cancels_every_child_still_going(tracker):
    parent, kids = group(tracker)
    tracker.start(kids[0].job_id)
    tracker.apply(kids[1].job_id, "job_started")
    tracker.apply(kids[1].job_id, "job_completed")
    state = tracker.request_cancel(parent.job_id, "changed my mind")
    assert state.cancel_requested == "changed my mind"
    assert tracker.get(kids[2].job_id).status is JobStatus.CANCELLED  # queued: at once
    assert tracker.get(kids[0].job_id).cancel_requested == "changed my mind"  # running: asked
    assert tracker.get(parent.job_id).status is JobStatus.RUNNING
    tracker.apply(kids[0].job_id, "job_cancelled", reason="changed my mind")
    p = tracker.get(parent.job_id)
    assert p.status is JobStatus.CANCELLED
    assert kinds(tracker.store.events_since(parent.job_id))[-1] == "job_cancelled"
    # it ends where its children left it (1 of 3 completed), not at 100
    assert p.progress == pytest.approx(100 / 3, abs=0.01)
    assert tracker.store.events_since(parent.job_id)[-1]["progress"] == p.progress
    with pytest.raises(Conflict):
        tracker.request_cancel(parent.job_id)


def test_a_queued_group_cancelled_whole_ends_cancelled(tracker):
    parent, kids = group(tracker)
    tracker.request_cancel(parent.job_id)
    assert tracker.get(parent.job_id).status is JobStatus.CANCELLED
    assert {tracker.get(k.job_id).status for k in kids} == {JobStatus.CANCELLED}


def test_a_parent_is_never_failed_as_stalled_nor_cancelled_as_overdue(tracker, clock):
    parent, kids = group(tracker, n=2)
    tracker.start(kids[0].job_id)
    clock.advance(10_000)
    assert tracker.fail_stalled(600) == [kids[0].job_id]  # the child, not the parent
    assert tracker.get(parent.job_id).status is JobStatus.RUNNING  # kids[1] still queued
    tracker.request_cancel(parent.job_id)
    clock.advance(100)
    assert tracker.cancel_overdue(10) == []
    assert tracker.get(parent.job_id).status is JobStatus.FAILED  # 1 stalled, 1 cancelled


@pytest.mark.parametrize(
    "children",
    [[], "abc", [("a",)], [{"name": "a"}], [{"name": "a", "stages": ["x"], "weight": 0}],
     [{"name": "a", "stages": ["x"], "job_id": "same"},
      {"name": "b", "stages": ["x"], "job_id": "same"}],
     [("a", ["x"])] * (MAX_CHILDREN + 1)],
)  # fmt: skip
def test_bad_groups_are_refused_and_store_nothing(tracker, children):
    with pytest.raises(InvalidPayload):
        tracker.group("g", children, owner="ann")
    assert tracker.store.count_jobs() == 0


def test_a_taken_child_id_is_a_conflict_before_anything_is_stored(tracker):
    tracker.create_job("x", ["a"], owner="ann", job_id="taken")
    with pytest.raises(Conflict):
        tracker.group("g", [{"name": "a", "stages": ["x"], "job_id": "taken"}], owner="ann")
    assert tracker.store.count_jobs() == 1


def test_time_is_the_trackers(tracker, clock):
    parent, _ = group(tracker, n=1)
    assert parent.created_at == T0


def test_a_group_run_in_a_process_that_died_fails_its_children_and_then_itself(store, clock):
    from progresscast import ProgressTracker

    before = ProgressTracker(store, clock=clock, runner="srv")
    parent, kids = before.group("batch", [("a", ["x"]), ("b", ["x"])], owner="ann", run_here=True)
    before.start(kids[0].job_id)
    clock.advance(5)
    after = ProgressTracker(store, clock=clock, runner="srv")  # the restarted server
    failed = after.fail_interrupted(started_before=clock())
    assert sorted(failed) == sorted(k.job_id for k in kids)  # the queued child too
    p = after.get(parent.job_id)
    assert p.status is JobStatus.FAILED and p.error["message"].startswith("2 of 2 jobs failed")


def test_a_child_is_never_failed_for_its_parent(tracker, monkeypatch, caplog):
    from progresscast import StoreUnavailable

    parent, kids = group(tracker, n=2)

    def down(parent_id):
        raise StoreUnavailable("the parent's side is down")

    monkeypatch.setattr(tracker.store, "list_children", down)
    events, state = tracker.apply(kids[0].job_id, "job_started")  # the child's write stands
    assert state.status is JobStatus.RUNNING and kinds(events) == ["job_started"]
    assert "could not bring group" in caplog.text
    monkeypatch.undo()
    tracker.apply(kids[0].job_id, "progress_update", stage_progress=50)  # the parent catches up
    assert tracker.get(parent.job_id).status is JobStatus.RUNNING


# ------------------------------------------------------ found in review


def test_two_processes_ending_the_last_children_still_end_the_parent(tmp_path, clock):
    """Two trackers on one store (a server and a worker). B reads the parent
    queued; before B starts it, A starts it and reports older counts. B's
    writes expect the seq it read with the children, so it reads again and
    ends the parent instead of giving up."""
    from progresscast import ProgressTracker, SQLiteStore
    from progresscast.groups import aggregate, report
    from progresscast.state import EventType

    path = str(tmp_path / "shared.db")
    a = ProgressTracker(SQLiteStore(path), clock=clock)
    b = ProgressTracker(SQLiteStore(path), clock=clock)
    try:
        parent, (c1, c2) = a.group("g", [("a", ["s"]), ("b", ["s"])], owner="ann")
        a._child_changed = lambda *args: None  # A's own update comes late, below
        a.record(c1.job_id, EventType.JOB_CANCELLED, reason="x")
        stale = aggregate(a.store.list_children(parent.job_id))  # c1 ended, c2 queued
        apply = b.apply

        def racing_apply(job_id, kind, **kw):
            if job_id == parent.job_id and kind is EventType.JOB_STARTED:
                a.apply(parent.job_id, EventType.JOB_STARTED)  # lands in between
                a.apply(parent.job_id, EventType.PROGRESS_UPDATE, **report(stale))
            return apply(job_id, kind, **kw)

        b.apply = racing_apply
        b.record(c2.job_id, EventType.JOB_CANCELLED, reason="y")
        assert a.get(parent.job_id).status is JobStatus.CANCELLED
    finally:
        a.close()
        b.close()


def test_a_parent_that_missed_its_last_update_is_ended_by_the_sweep(tracker, monkeypatch, clock):
    parent, kids = group(tracker, n=1)
    tracker.start(kids[0].job_id)
    monkeypatch.setattr(tracker, "_update_parent", lambda parent_id: None)  # the update is lost
    tracker.apply(kids[0].job_id, "job_completed")
    assert tracker.get(parent.job_id).status is JobStatus.RUNNING
    monkeypatch.undo()
    clock.advance(1)
    assert tracker.fail_stalled(0.5) == []  # the sweep reconciles parents, never fails them
    assert tracker.get(parent.job_id).status is JobStatus.COMPLETED


def test_weights_are_bounded_and_progress_stays_within_0_and_100(tracker):
    with pytest.raises(InvalidPayload, match="weight"):
        tracker.group("g", [{"name": "a", "stages": ["x"], "weight": 1e307}], owner="ann")
    parent, kids = tracker.group(
        "g", [{"name": n, "stages": ["x"], "weight": 1e6} for n in "abc"], owner="ann"
    )
    for kid in kids:
        tracker.start(kid.job_id)
        tracker.apply(kid.job_id, "job_completed")
    assert tracker.get(parent.job_id).status is JobStatus.COMPLETED


def test_cancelling_a_big_group_updates_its_parent_once(tracker):
    parent, kids = tracker.group("g", [(f"c{i}", ["x"]) for i in range(200)], owner="ann")
    tracker.request_cancel(parent.job_id)
    assert {tracker.get(k.job_id).status for k in kids} == {JobStatus.CANCELLED}
    events = tracker.store.events_since(parent.job_id)
    assert kinds(events) == ["job_queued", "job_started", "progress_update", "job_cancelled"]
    assert events[-1]["reason"] == "200 of 200 jobs were cancelled"


def test_a_stage_with_no_items_at_all_completes(tracker, mono):
    with tracker.job("import", ["load", "index"], owner="ann", clock=mono) as job:
        with job.stage("load", total=0):  # an empty input: no share of anything
            pass
        with job.stage("index", total=0, unit="rows"):
            pass
    assert tracker.get(job.job_id).status is JobStatus.COMPLETED


def test_a_parent_is_driven_by_its_children_only(tracker):
    parent, _ = group(tracker)
    with pytest.raises(Conflict, match="starts with its first child"):
        tracker.start(parent.job_id)
    plain = running(tracker)
    with pytest.raises(InvalidPayload, match="only a group's parent"):
        tracker.apply(plain.job_id, "progress_update", children={"total": 1})


def test_a_group_that_cannot_be_created_whole_ends_what_was_made(tracker, monkeypatch):
    create = tracker._create
    made = []

    def flaky_create(state, kind, now):
        made.append(state.job_id)
        if len(made) == 3:  # the parent and one child are stored; the next fails
            raise RuntimeError("the store went away")
        return create(state, kind, now)

    monkeypatch.setattr(tracker, "_create", flaky_create)
    with pytest.raises(RuntimeError):
        tracker.group("g", [("a", ["x"]), ("b", ["x"]), ("c", ["x"])], owner="ann", job_id="g")
    parent = tracker.get("g")
    assert parent.status is JobStatus.FAILED and parent.error["type"] == "not_created"
    assert [c.status for c in tracker.children("g")] == [JobStatus.FAILED]

import logging

import pytest

from progresscast import (
    ALL_JOBS_ROOM,
    NAMESPACE,
    Conflict,
    InvalidPayload,
    JobNotFound,
    JobStatus,
    ProgressEmitter,
    ProgressTracker,
    job_room,
    user_room,
)
from progresscast.tracker import validate_job_id

from .fakes import DOC_STAGES, T0, BrokenEmitter


def kinds(events):
    return [e["type"] for e in events]


# ------------------------------------------------------------------- create


def test_create_job_emits_job_queued(tracker, sockets, clock):
    state = tracker.create_job(
        "report", DOC_STAGES, owner="alice", job_id="job-1", metadata={"file": "a.pdf"}
    )
    assert state.job_id == "job-1"
    assert state.status == "queued"
    assert state.seq == 1
    assert state.created_at == T0
    (event,) = tracker.store.events_since("job-1")
    assert event["type"] == "job_queued"
    assert event["seq"] == 1
    assert event["owner"] == "alice"
    assert event["metadata"] == {"file": "a.pdf"}
    assert tracker.get("job-1") == state
    (call,) = sockets.calls
    assert call.event == "job_queued"
    assert call.data == event
    assert call.to == [job_room("job-1"), user_room("alice"), ALL_JOBS_ROOM]
    assert call.to == ["job:job-1", "user:alice", "jobs:all"]
    assert call.namespace == NAMESPACE == "/progress"


def test_create_job_started(tracker):
    state = tracker.create_job("report", ["a"], owner="bob", start=True)
    assert state.status == "running"
    assert kinds(tracker.store.events_since(state.job_id)) == ["job_started"]


def test_generated_job_ids_are_valid_and_unique(tracker):
    ids = {tracker.create_job("r", ["a"], owner="u").job_id for _ in range(20)}
    assert len(ids) == 20
    assert all(validate_job_id(i) == i for i in ids)


def test_duplicate_job_id_is_a_conflict(tracker, sockets):
    tracker.create_job("first", ["a"], owner="alice", job_id="dup")
    with pytest.raises(Conflict) as info:
        tracker.create_job("second", ["b"], owner="mallory", job_id="dup")
    assert info.value.job_id == "dup"
    state = tracker.get("dup")
    assert (state.name, state.owner, state.seq) == ("first", "alice", 1)
    assert len(tracker.store.events_since("dup")) == 1
    assert len(sockets.calls) == 1


def test_create_job_validates_its_input(tracker, sockets):
    with pytest.raises(InvalidPayload):
        tracker.create_job("r", ["a"], owner="u", job_id="no spaces")
    with pytest.raises(InvalidPayload):
        tracker.create_job("", ["a"], owner="u")
    with pytest.raises(InvalidPayload):
        tracker.create_job("r", [], owner="u")
    assert tracker.store.count_jobs() == 0
    assert sockets.calls == []


@pytest.mark.parametrize(
    "job_id", ["a", "A9", "job-1", "x_y.z", "0" * 128, "550e8400-e29b-41d4-a716-446655440000"]
)
def test_valid_job_ids(job_id):
    assert validate_job_id(job_id) == job_id


@pytest.mark.parametrize(
    "job_id",
    ["", "-a", ".a", "_a", "a b", "a/b", "a:b", "é", "a\n", "0" * 129, None, 5, b"abc"],
)
def test_invalid_job_ids(job_id):
    with pytest.raises(InvalidPayload) as info:
        validate_job_id(job_id)
    assert info.value.details == {"job_id": ["invalid job id"]}


# -------------------------------------------------------------------- start


def test_start_a_queued_job(tracker, mono):
    tracker.create_job("report", DOC_STAGES, owner="alice", job_id="q")
    job = tracker.start("q", clock=mono, min_interval=0.5)
    assert isinstance(job, ProgressEmitter)
    assert job.job_id == "q"
    assert job.min_interval == 0.5
    assert [s.name for s in job.stages] == list(DOC_STAGES)
    assert job.current_stage == "parsing"
    with job:
        job.stage("formatting")
    assert kinds(tracker.store.events_since("q")) == [
        "job_queued",
        "job_started",
        "stage_completed",
        "stage_completed",
        "job_completed",
    ]


def test_start_twice_or_unknown(tracker):
    tracker.create_job("report", ["a"], owner="alice", job_id="q")
    tracker.start("q")
    with pytest.raises(Conflict):
        tracker.start("q")
    with pytest.raises(JobNotFound):
        tracker.start("nope")


def test_job_uses_the_trackers_default_min_interval(store):
    tracker = ProgressTracker(store, min_interval=2.5)
    assert tracker.job("r", ["a"], owner="u").min_interval == 2.5


# ------------------------------------------------------------------- record


def test_record_http_style_requests(tracker, sockets, clock):
    tracker.create_job("report", DOC_STAGES, owner="alice", job_id="h", start=True)
    clock.advance(4.0)
    events = tracker.record(
        "h", "progress_update", stage="analyzing", stage_progress=50, message="half"
    )
    assert kinds(events) == ["stage_completed", "progress_update"]
    assert [e["seq"] for e in events] == [2, 3]
    assert events[1]["progress"] == 45.0
    assert events[1]["elapsed_seconds"] == 4.0
    assert sockets.events[-2:] == events
    assert tracker.store.events_since("h", 1) == events
    clock.advance(1.0)
    (failed,) = tracker.record("h", "job_failed", error={"message": "oom", "type": "MemoryError"})
    assert failed["error"] == {"message": "oom", "type": "MemoryError"}
    state = tracker.get("h")
    assert state.status == "failed"
    assert state.seq == 4
    assert state.finished_at == T0 + 5.0


def test_rejected_requests_store_and_emit_nothing(tracker, sockets):
    tracker.create_job("report", ["a", "b"], owner="alice", job_id="r", start=True)
    before = tracker.get("r")
    with pytest.raises(InvalidPayload):
        tracker.record("r", "progress_update", stage_progress=150)
    with pytest.raises(InvalidPayload):
        tracker.record("r", "explode")
    with pytest.raises(Conflict):
        tracker.record("r", "job_started")
    assert tracker.get("r") == before
    assert len(tracker.store.events_since("r")) == 1
    assert len(sockets.calls) == 1


def test_record_for_an_unknown_job(tracker):
    with pytest.raises(JobNotFound) as info:
        tracker.record("ghost", "progress_update", stage_progress=1)
    assert info.value.code == "not_found"
    with pytest.raises(JobNotFound):
        tracker.get("ghost")
    with pytest.raises(JobNotFound):
        tracker.snapshot("ghost")


def test_snapshot_counts_elapsed_to_the_trackers_now(tracker, clock):
    tracker.create_job("report", ["a"], owner="alice", job_id="s", start=True)
    clock.advance(90.0)
    snap = tracker.snapshot("s")
    assert snap["elapsed_seconds"] == 90.0
    assert snap["started_at"] == "2023-11-14T22:13:20.000Z"


def test_list_jobs(tracker, clock):
    for i in range(3):
        clock.advance(1.0)
        tracker.create_job("r", ["a"], owner="alice", job_id=f"a{i}", start=i == 1)
    tracker.create_job("r", ["a"], owner="bob", job_id="b0")
    assert [s.job_id for s in tracker.list_jobs("alice")] == ["a2", "a1", "a0"]
    assert [s.job_id for s in tracker.list_jobs("alice", status=["running"])] == ["a1"]
    assert len(tracker.list_jobs(None)) == 4


# ------------------------------------------------------------------ history
# Reads (resume, history pages, listings) are tested on SQLite and Redis in
# test_tracker_reads.py.


# --------------------------------------------------------------------- races


class RacingStore:
    """A real store, except that another writer gets in right after the next
    ``races`` reads: the write based on that read loses the compare-and-set."""

    def __init__(self, store, other: ProgressTracker, races: int) -> None:
        self.store = store
        self.other = other
        self.races = races

    def get(self, job_id):
        state = self.store.get(job_id)
        if self.races:
            self.races -= 1
            self.other.record(job_id, "progress_update", message=f"other {self.races}")
        return state

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_write_that_loses_a_race_is_reapplied_on_the_new_state(store, clock):
    other = ProgressTracker(store, clock=clock)
    other.create_job("r", ["a", "b"], owner="u", job_id="race", start=True)
    tracker = ProgressTracker(RacingStore(store, other, races=2), clock=clock)
    events = tracker.record("race", "progress_update", stage="b", stage_progress=30)
    assert kinds(events) == ["stage_completed", "progress_update"]
    assert [e["seq"] for e in events] == [4, 5]
    stored = store.events_since("race")
    assert [e["seq"] for e in stored] == [1, 2, 3, 4, 5]
    assert [e.get("message") for e in stored[1:3]] == ["other 1", "other 0"]
    assert stored[3:] == events
    state = store.get("race")
    assert (state.seq, state.stage, state.stage_progress) == (5, "b", 30.0)


def test_a_writer_that_keeps_losing_gives_up_with_conflict(store, clock):
    other = ProgressTracker(store, clock=clock)
    other.create_job("r", ["a"], owner="u", job_id="race", start=True)
    tracker = ProgressTracker(
        RacingStore(store, other, races=ProgressTracker.max_retries), clock=clock
    )
    with pytest.raises(Conflict):
        tracker.record("race", "job_failed", error="x")
    state = store.get("race")
    assert state.status == "running"
    assert state.seq == 1 + ProgressTracker.max_retries
    assert "job_failed" not in kinds(store.events_since("race"))


# ---------------------------------------------------------------- publishing


def test_a_failing_socket_emitter_does_not_lose_the_event(store, clock, caplog):
    broken = BrokenEmitter()
    tracker = ProgressTracker(store, broken, clock=clock)
    with caplog.at_level(logging.ERROR, logger="progresscast.tracker"):
        tracker.create_job("r", ["a", "b"], owner="u", job_id="x", start=True)
        events = tracker.record("x", "progress_update", stage="b")
    assert kinds(events) == ["stage_completed", "progress_update"]
    assert broken.attempts == 3  # every event was tried, not just the first
    assert kinds(store.events_since("x")) == ["job_started", "stage_completed", "progress_update"]
    assert tracker.get("x").seq == 3
    assert len(caplog.records) == 3
    assert "seq=2" in caplog.records[1].getMessage()


def test_every_event_is_stored_before_it_is_emitted(store, clock):
    """DESIGN §4: an event a client sees is one a resume would give it, in seq order."""
    emitted = []

    class StoreChecking:
        def emit(self, event, data, to=None, namespace=None):
            stored = store.events_since(data["job_id"], data["seq"] - 1, limit=1)
            emitted.append((data["seq"], stored == [data]))

    tracker = ProgressTracker(store, StoreChecking(), clock=clock)
    with tracker.job("r", ["a", "b", "c"], owner="u", job_id="sb", min_interval=0) as job:
        job.update(1, 2)
        job.stage("c")  # completes a, skips b
        job.update(2, 2)
    assert [seq for seq, _ in emitted] == list(range(1, tracker.get("sb").seq + 1))
    assert all(stored for _, stored in emitted)


def test_a_tracker_without_emitter_only_stores(store, clock):
    tracker = ProgressTracker(store, clock=clock)
    tracker.create_job("r", ["a"], owner="u", job_id="quiet")
    assert len(store.events_since("quiet")) == 1


def test_the_first_event_is_stamped_with_the_jobs_creation_time(store, sockets):
    import itertools

    ticks = itertools.count(1_700_000_000.0, 0.0007)  # every clock read is a new instant
    tracker = ProgressTracker(store, sockets, clock=lambda: next(ticks))
    for start in (False, True):
        state = tracker.create_job("x", ["a"], owner="alice", start=start)
        first = store.events_since(state.job_id)[0]
        snap = state.snapshot()
        assert first["ts"] == snap["created_at"]
        if start:
            assert first["ts"] == snap["started_at"]


# ------------------------------------------- two writers, one store (state cache)


class CountingStore:
    """The real store, counting the reads of job states."""

    def __init__(self, store):
        self._store = store
        self.gets = 0

    def get(self, job_id):
        self.gets += 1
        return self._store.get(job_id)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_tracker_does_not_read_back_what_it_just_wrote(store, clock):
    counting = CountingStore(store)
    tracker = ProgressTracker(counting, clock=clock)
    tracker.create_job("r", DOC_STAGES, owner="alice", job_id="j", start=True)
    for i in range(10):
        tracker.record("j", "progress_update", stage="parsing", stage_progress=i * 10)
    assert counting.gets == 0
    assert store.get("j").seq == 11


def test_another_writer_in_between_is_noticed_and_seq_stays_gapless(store, clock, sockets):
    here = ProgressTracker(store, sockets, clock=clock)
    elsewhere = ProgressTracker(store, clock=clock)  # a worker, another instance
    here.create_job("r", DOC_STAGES, owner="alice", job_id="j", start=True)
    here.record("j", "progress_update", stage="parsing", stage_progress=10)
    elsewhere.record("j", "progress_update", stage="parsing", stage_progress=20)
    elsewhere.record("j", "stage_completed", stage="parsing")
    # `here` still holds seq 2 in memory; the store's compare-and-set refuses
    # it, `here` reads seq 4 and applies its update on top.
    (event,) = here.record("j", "progress_update", stage="analyzing", stage_progress=50)
    assert event["seq"] == 5
    assert [e["seq"] for e in store.events_since("j")] == [1, 2, 3, 4, 5]
    assert store.get("j").stage_status[0] == "completed"


def test_checks_made_on_a_stale_copy_are_made_again_on_the_store(store, clock):
    here = ProgressTracker(store, clock=clock)
    elsewhere = ProgressTracker(store, clock=clock)
    here.create_job("r", DOC_STAGES, owner="alice", job_id="j")  # queued, seq 1
    elsewhere.record("j", "job_started")  # seq 2, here still thinks queued at 1
    events = here.record("j", "progress_update", expect_seq=2, stage_progress=5)
    assert events[0]["seq"] == 3
    assert here.record("j", "progress_update", only_if=JobStatus.RUNNING, message="hi")
    # And a job that ended elsewhere is refused, not resurrected from memory.
    elsewhere.record("j", "job_cancelled", reason="stop")
    with pytest.raises(Conflict):
        here.record("j", "progress_update", stage_progress=60)
    assert store.get("j").status is JobStatus.CANCELLED

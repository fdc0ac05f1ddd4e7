"""The ETA's run history (docs/protocol.md, "ETA, history and learned
weights"; issue 14): what History learns from runs, what run_record keeps of
a job, which runs the tracker teaches and reads (kind, teach, history_runs,
history_days, reset), and history read back from SQLite and from Redis."""

from __future__ import annotations

import itertools
import json
import logging

import pytest

from progresscast import InvalidPayload, JobState, ProgressTracker, SQLiteStore
from progresscast.history import MIN_RANGE_RUNS, History, run_record
from progresscast.state import new_job, transition

from .fakes import T0, FakeClock
from .pipelines import DECLARED, REAL, drive

NAMES = list(REAL)
DAY = 86400.0


def record(job_id: str, finished_at: float = T0, **seconds: float) -> dict:
    """A run as the store keeps it: how long each named stage ran."""
    return {
        "job_id": job_id,
        "finished_at": finished_at,
        "elapsed": sum(seconds.values()),
        "stages": [[name, s] for name, s in seconds.items()],
    }


def warm_at_quarter(run) -> bool:
    r = run.at(0.25)
    return abs(r.eta - r.left) <= 0.10 * r.left


# ---------------------------------------------------------------- History.learn


def test_learn_takes_each_stages_median_over_the_runs():
    runs = [
        record("a", parsing=10, analyzing=1),
        record("b", parsing=90, analyzing=2),
        record("c", parsing=20),
    ]
    h = History.learn(["parsing", "analyzing"], runs)
    assert h.durations == [20.0, 1.5]  # an outlier does not move a median
    assert h.runs == 3
    assert History.learn(["parsing", "analyzing"], runs[::-1]) == h  # any order


def test_learn_gives_a_spread_only_from_three_whole_runs():
    assert MIN_RANGE_RUNS == 3
    runs = [record("a", x=10), record("b", x=20)]
    assert History.learn(["x"], runs).spread is None
    h = History.learn(["x"], [*runs, record("c", x=30)])
    # totals 10/20/30 over their median 20: 0.5/1/1.5; 10th and 90th percentiles
    assert h.spread == pytest.approx((0.6, 1.4))
    lo, hi = h.spread
    assert lo <= 1 <= hi


def test_learn_spread_always_holds_one():
    same = [record(str(i), x=5, y=5) for i in range(4)]
    assert History.learn(["x", "y"], same).spread == (1.0, 1.0)
    # skewed: a few much slower runs widen only the high end
    skewed = [record(str(i), x=t) for i, t in enumerate([10, 10, 10, 100, 100])]
    lo, hi = History.learn(["x"], skewed).spread
    assert lo <= 1 <= hi


def test_learn_unknown_stages_are_none():
    h = History.learn(["parsing", "new-stage"], [record("a", parsing=3, other=9)])
    assert h.durations == [3.0, None]
    assert History.learn(["nobody-ran-this"], [record("a", parsing=3)]) is None
    assert History.learn(["x"], []) is None


def test_learn_runs_with_partial_stages():
    runs = [
        record("a", x=1, y=10),
        record("b", x=3),  # knew only x (a skipped or renamed y)
        record("c", x=5, y=30),
        record("d", y=20, z=99),  # z is not a stage of this job
    ]
    h = History.learn(["x", "y"], runs)
    assert h.durations == [3.0, 20.0]
    assert h.runs == 4
    # only two runs knew every stage of the job: no range from them
    assert h.spread is None
    h = History.learn(["x", "y"], [*runs, record("e", x=2, y=20)])
    assert h.spread is not None  # three whole runs (totals 11, 35, 22)


def test_learn_ignores_values_that_are_not_durations():
    runs = [
        record("a", x=float("nan"), y=2),
        record("b", x=-1, y=4),
        record("c", x=True, y=6),
        {"job_id": "d", "finished_at": T0, "stages": [["x", "7"], ["y", None]]},
        {"job_id": "e", "finished_at": T0},  # no stages at all
        record("f", x=8),
    ]
    h = History.learn(["x", "y"], runs)
    assert h.durations == [8.0, 4.0]


def test_a_zero_second_stage_is_a_duration():
    h = History.learn(["x", "y"], [record("a", x=0, y=4), record("b", x=0, y=6)])
    assert h.durations == [0.0, 5.0]


# -------------------------------------------------------------- History.weights


def test_weights_are_proportional_to_the_learned_durations():
    assert History([40.0, 30.0, 20.0, 10.0], None, 1).weights() == [40.0, 30.0, 20.0, 10.0]


def test_weights_have_a_floor_of_one_percent_of_the_mean():
    weights = History([40.0, 0.0, 20.0, 0.001], None, 1).weights()
    floor = 0.01 * 60.001 / 4
    assert weights == pytest.approx([40.0, floor, 20.0, floor])
    assert min(weights) > 0


def test_weights_need_history_of_every_stage_and_some_time():
    assert History([40.0, None], None, 1).weights() is None
    assert History([0.0, 0.0], None, 1).weights() is None


def test_history_round_trips_through_json():
    for h in (History([1.5, None, 0.0], (0.8, 1.25), 7), History([2.0], None, 1)):
        back = History.from_dict(json.loads(json.dumps(h.to_dict())))
        assert back == h
    assert History.from_dict(None) is None
    assert History.from_dict({}) is None


# ------------------------------------------------------------------- run_record


def play(*requests, stages=("a", "b", "c")):
    """A job through the state machine: (seconds later, type, fields) steps."""
    now = T0
    state = new_job("j1", "pdf", list(stages), "alice", None, now)
    _, state = transition(state, "job_started", {}, now)
    for dt, kind, fields in requests:
        now += dt
        _, state = transition(state, kind, fields, now)
    return state


def test_run_record_of_a_completed_job():
    state = play(
        (2.0, "progress_update", {"stage_progress": 50}),
        (1.5, "stage_completed", {}),
        (4.25, "stage_completed", {}),
        (0.5, "job_completed", {}),
    )
    assert run_record(state) == {
        "job_id": "j1",
        "finished_at": T0 + 8.25,
        "elapsed": 8.25,
        "stages": [["a", 3.5], ["b", 4.25], ["c", 0.5]],
    }


def test_run_record_of_a_skipped_stage_is_zero():
    state = play(
        (2.0, "progress_update", {"stage": "c", "stage_progress": 10}),
        (3.0, "job_completed", {}),
    )
    assert state.stage_status[1] == "skipped"
    assert run_record(state)["stages"] == [["a", 2.0], ["b", 0.0], ["c", 3.0]]


@pytest.mark.parametrize(
    ("kind", "fields"),
    [("job_failed", {"error": "boom"}), ("job_cancelled", {"reason": "stop"})],
)
def test_run_record_of_a_job_that_did_not_complete_is_none(kind, fields):
    state = play((2.0, "stage_completed", {}), (1.0, kind, fields))
    assert state.status == kind.removeprefix("job_")
    assert run_record(state) is None
    assert run_record(play((2.0, "stage_completed", {}))) is None  # still running


@pytest.mark.parametrize(
    ("kind", "fields"),
    [("job_failed", {"error": "boom"}), ("job_cancelled", {"reason": "stop"})],
)
def test_run_record_of_a_job_that_ended_badly_after_its_last_stage_is_none(kind, fields):
    # every stage ran and has a duration, but the job did not complete
    state = play(*[(2.0, "stage_completed", {})] * 3, (1.0, kind, fields))
    assert state.stage_index is None and None not in state.eta["stage_seconds"]
    assert run_record(state) is None


def test_run_record_of_a_job_from_before_history_is_none():
    state = play((1.0, "job_completed", {}))
    state.eta = {"last_t": T0, "last_p": 50.0, "dp": [1.0, 3], "dt": [1.0, 3]}
    assert run_record(state) is None


# --------------------------------------------------------- what enters history


def test_a_completed_run_enters_its_kinds_history(tracker, clock, store):
    run = drive(tracker, clock, REAL)
    (kept,) = store.runs("pdf", 20)
    assert kept["job_id"] == run.job_id
    assert dict(kept["stages"]) == REAL
    assert kept["elapsed"] == pytest.approx(100.0)
    assert tracker.history("pdf") == [kept]


@pytest.mark.parametrize("end", ["failed", "cancelled"])
def test_a_failed_or_cancelled_run_does_not_enter_history(tracker, clock, store, end):
    drive(tracker, clock, REAL)
    before = store.runs("pdf", 20)
    run = drive(tracker, clock, REAL, end=end)
    assert run.status == end
    assert store.runs("pdf", 20) == before
    # a cancellation requested of a queued job ends it too: still nothing learned
    queued = tracker.create_job("pdf", DECLARED, owner="alice")
    tracker.request_cancel(queued.job_id)
    assert store.runs("pdf", 20) == before


def test_a_job_failed_after_its_last_stage_does_not_enter_history(tracker, clock, store):
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True)
    for stage in DECLARED:
        clock.advance(5.0)
        tracker.apply(state.job_id, "stage_completed", stage=stage)
    _, state = tracker.apply(state.job_id, "job_failed", error="the upload failed")
    assert state.status == "failed"
    assert store.runs("pdf", 20) == []


def test_a_completion_that_may_not_teach_is_not_recorded(tracker, clock, store):
    run = drive(tracker, clock, REAL, teach=False)  # e.g. HTTP, a user's token
    assert run.status == "completed"
    assert store.runs("pdf", 20) == []
    assert store.history_kinds() == []


class Spy:
    """The real store, counting the history calls made of it."""

    def __init__(self, store, fail: bool = False):
        self._store = store
        self.fail = fail
        self.calls: list[str] = []

    def runs(self, *args, **kwargs):
        self.calls.append("runs")
        if self.fail:
            raise ConnectionError("history unreachable")
        return self._store.runs(*args, **kwargs)

    def add_run(self, *args, **kwargs):
        self.calls.append("add_run")
        if self.fail:
            raise ConnectionError("history unreachable")
        return self._store.add_run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_history_runs_zero_reads_and_writes_nothing(store, clock):
    drive(ProgressTracker(store, clock=clock), clock, REAL)  # some history exists
    spy = Spy(store)
    off = ProgressTracker(spy, clock=clock, history_runs=0)
    run = drive(off, clock, REAL)
    assert run.status == "completed"
    assert spy.calls == []
    assert off.get(run.job_id).eta["history"] is None  # ran cold
    assert len(store.runs("pdf", 20)) == 1


def test_history_runs_bounds_what_is_kept_and_read(store, clock):
    tracker = ProgressTracker(store, clock=clock, history_runs=3)
    ids = [drive(tracker, clock, REAL).job_id for _ in range(5)]
    assert [r["job_id"] for r in store.runs("pdf", 20)] == ids[:1:-1]  # the newest 3
    spy = Spy(store)
    reader = ProgressTracker(spy, clock=clock, history_runs=2)
    state = reader.create_job("pdf", DECLARED, owner="alice", start=True)
    assert spy.calls == ["runs"]
    assert state.eta["history"]["runs"] == 2


def test_history_older_than_history_days_is_ignored(store, clock):
    tracker = ProgressTracker(store, clock=clock, history_days=2)
    drive(tracker, clock, REAL)
    clock.advance(1 * DAY)
    assert warm_at_quarter(drive(tracker, clock, REAL))  # a day old: learned from
    assert len(tracker.history("pdf")) == 2
    clock.advance(2.5 * DAY)  # both are now older than 2 days
    assert tracker.history("pdf") == []
    run = drive(tracker, clock, REAL)
    assert tracker.get(run.job_id).eta["history"] is None
    assert not warm_at_quarter(run)  # cold: the declared weights mislead it
    # and they are dropped from the store as a new run comes in
    assert [r["job_id"] for r in store.runs("pdf", 20)] == [run.job_id]


def test_a_store_that_cannot_serve_history_costs_only_the_eta(store, clock, caplog):
    spy = Spy(store, fail=True)
    tracker = ProgressTracker(spy, clock=clock)
    with caplog.at_level(logging.WARNING, logger="progresscast.tracker"):
        run = drive(tracker, clock, REAL)
    assert run.status == "completed"
    assert spy.calls == ["runs", "add_run"]
    assert "ETA history" in caplog.text


# ------------------------------------------------------------------------ reset


def test_reset_history_of_one_kind_and_of_every_kind(tracker, clock, store):
    drive(tracker, clock, REAL, name="pdf")
    drive(tracker, clock, REAL, name="pdf")
    drive(tracker, clock, REAL, name="csv")
    assert [k["kind"] for k in store.history_kinds()] == ["csv", "pdf"]
    # a job that started before the reset keeps what it learned
    running = tracker.create_job("pdf", DECLARED, owner="alice", start=True)
    assert tracker.reset_history("pdf") == 2
    assert tracker.history("pdf") == []
    assert len(tracker.history("csv")) == 1
    assert tracker.get(running.job_id).eta["history"]["runs"] == 2
    assert tracker.reset_history("pdf") == 0
    assert not warm_at_quarter(drive(tracker, clock, REAL, name="pdf"))  # cold again
    assert tracker.reset_history() == 2  # csv's run and the cold pdf run just made
    assert store.history_kinds() == []
    assert tracker.history("csv") == []


# ------------------------------------------------------------------------- kind


def test_kind_is_the_name_by_default(tracker, clock, store, sockets):
    run = drive(tracker, clock, REAL, name="report.pdf")
    state = tracker.get(run.job_id)
    assert state.kind is None and state.pipeline == "report.pdf"
    assert state.snapshot()["kind"] == "report.pdf"
    assert len(store.runs("report.pdf", 20)) == 1


def test_an_explicit_kind_shares_history_across_names(tracker, clock, store):
    drive(tracker, clock, REAL, name="report-1.pdf", kind="pdf-pipeline")
    drive(tracker, clock, REAL, name="report-2.pdf", kind="pdf-pipeline")
    assert [k["kind"] for k in store.history_kinds()] == ["pdf-pipeline"]
    run = drive(tracker, clock, REAL, name="report-3.pdf", kind="pdf-pipeline")
    assert tracker.get(run.job_id).eta["history"]["runs"] == 2
    assert warm_at_quarter(run)
    # the same name without the kind is another pipeline: cold
    assert not warm_at_quarter(drive(tracker, clock, REAL, name="report-1.pdf"))


@pytest.mark.parametrize("kind", ["", "   ", "x" * 201, 5, ["pdf"], "\ud800"])
def test_a_bad_kind_is_invalid(tracker, kind):
    with pytest.raises(InvalidPayload) as info:
        tracker.create_job("pdf", DECLARED, owner="alice", kind=kind)
    assert "kind" in info.value.details
    with pytest.raises(InvalidPayload):
        tracker.job("pdf", DECLARED, owner="alice", kind=kind)
    assert tracker.list_jobs(owner=None) == []


def test_a_kind_of_200_characters_is_fine(tracker):
    state = tracker.create_job("pdf", DECLARED, owner="alice", kind="k" * 200)
    assert state.snapshot()["kind"] == "k" * 200


@pytest.mark.parametrize("weights", ["learned", "AUTO", None, 1])
def test_bad_weights_are_invalid(tracker, weights):
    with pytest.raises(InvalidPayload) as info:
        tracker.create_job("pdf", DECLARED, owner="alice", weights=weights)
    assert "weights" in info.value.details


def test_snapshot_job_queued_and_job_started_carry_kind_and_weights(tracker, sockets):
    queued = tracker.create_job("a.pdf", DECLARED, owner="alice", kind="pdf")
    tracker.start(queued.job_id)
    auto = tracker.create_job("b.pdf", DECLARED, owner="alice", start=True, weights="auto")
    by_type = [(e["type"], e["kind"], e["weights"]) for e in sockets.events]
    assert by_type == [
        ("job_queued", "pdf", "declared"),
        ("job_started", "pdf", "declared"),
        ("job_started", "b.pdf", "declared"),  # auto, but no history yet
    ]
    for job_id, kind in [(queued.job_id, "pdf"), (auto.job_id, "b.pdf")]:
        snap = tracker.snapshot(job_id)
        assert (snap["kind"], snap["weights"]) == (kind, "declared")
        assert (snap["eta_seconds"], snap["eta_low"], snap["eta_high"]) == (None, None, None)


# ---------------------------------------------------------- read back from a store


def test_history_is_read_back_from_sqlite_by_a_new_tracker(tmp_path):
    path = str(tmp_path / "history.db")
    clock = FakeClock(T0)
    first = SQLiteStore(path)
    tracker = ProgressTracker(first, clock=clock)
    for _ in range(3):
        drive(tracker, clock, REAL)
    first.close()
    # another process, or this one restarted: nothing but the file
    again = SQLiteStore(path)
    try:
        run = drive(ProgressTracker(again, clock=clock), clock, REAL)
        assert run.reports[0].low is not None  # three runs: a range from the start
        for share in (0.25, 0.5, 0.75):
            r = run.at(share)
            assert r.eta == pytest.approx(r.left, rel=0.10)
        assert len(again.runs("pdf", 20)) == 4
    finally:
        again.close()


_prefixes = itertools.count()


@pytest.fixture
def redis_store_factory(redis_server):
    from progresscast.stores.redis import RedisStore

    prefix = f"hist{next(_prefixes)}"
    made = []

    def make():
        store = RedisStore(redis_server.url, prefix=prefix)
        made.append(store)
        return store

    yield make
    for key in made[0].redis.scan_iter(f"{prefix}:*"):
        made[0].redis.delete(key)
    for store in made:
        store.close()
        # RedisStore.close() leaves its own pool's sockets open (redis-py
        # closes only a pool it made itself): close them here
        store.redis.connection_pool.disconnect()


def test_history_is_read_back_from_redis_by_a_new_tracker(redis_store_factory):
    clock = FakeClock(T0)
    tracker = ProgressTracker(redis_store_factory(), clock=clock)
    cold = drive(tracker, clock, REAL)
    assert not warm_at_quarter(cold)
    for _ in range(2):
        drive(tracker, clock, REAL)
    fresh = redis_store_factory()  # another process's connection
    assert [k["kind"] for k in fresh.history_kinds()] == ["pdf"]
    run = drive(ProgressTracker(fresh, clock=clock), clock, REAL)
    assert run.reports[0].low is not None
    for share in (0.25, 0.5, 0.75):
        r = run.at(share)
        assert r.eta == pytest.approx(r.left, rel=0.10)
    assert len(fresh.runs("pdf", 20)) == 4
    assert fresh.reset_history("pdf") == 4


# ----------------------------------------------------- records from before history


def old_record(state: JobState) -> dict:
    """``state`` stored as a version before issue 14 stored it."""
    rec = json.loads(json.dumps(state.to_record()))
    for key in ("kind", "weights_mode", "eta_low", "eta_high"):
        del rec[key]
    rec["eta"] = {
        "last_t": state.updated_at,
        "last_p": state.progress,
        "dp": [1.2, 3],
        "dt": [0.8, 3],
    }
    return rec


def test_a_job_record_from_before_history_loads(tracker, clock):
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True)
    clock.advance(2.0)
    _, state = tracker.apply(state.job_id, "progress_update", stage_progress=50)
    old = JobState.from_record(old_record(state))
    assert (old.kind, old.weights_mode, old.eta_low, old.eta_high) == (None, "declared", None, None)
    snap = old.snapshot()
    assert (snap["kind"], snap["weights"]) == ("pdf", "declared")
    assert (snap["eta_low"], snap["eta_high"]) == (None, None)


def test_a_running_job_from_before_history_finishes_without_teaching(store, clock):
    tracker = ProgressTracker(store, clock=clock)
    drive(tracker, clock, REAL)
    before = store.runs("pdf", 20)
    state = tracker.create_job("pdf", DECLARED, owner="alice", start=True)
    # the upgrade happens here: its stored state is an old one
    clock.advance(2.0)
    events, state = transition(state, "progress_update", {"stage_progress": 50}, clock())
    store.append(events, JobState.from_record(old_record(state)))
    upgraded = ProgressTracker(store, clock=clock)  # nothing cached: reads the store
    # It gets a cold ETA at once, from its average pace since the start
    # (parsing, 15 % of the job, 60 % done in 3 s: 3 s per 9 %, 30.3 s for the
    # 91 % left), then from its own pace as it goes. (Before: none until it ended.)
    clock.advance(1.0)
    _, st = upgraded.apply(state.job_id, "progress_update", stage_progress=60)
    assert st.eta_seconds == pytest.approx(3.0 / 9.0 * 91.0, rel=0.01)
    clock.advance(1.0)
    _, st = upgraded.apply(state.job_id, "progress_update", stage_progress=70)
    plain = 4.0 / 10.5 * 89.5  # 70 % of parsing in 4 s, at that pace
    assert st.eta_seconds == pytest.approx(plain, rel=0.2)
    clock.advance(1.0)
    upgraded.apply(state.job_id, "stage_completed", next_stage="formatting")
    _, st = upgraded.apply(state.job_id, "job_completed")
    assert st.status == "completed"
    assert store.runs("pdf", 20) == before  # its stage durations are unknown

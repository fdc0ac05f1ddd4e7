"""The JobStore contract, written once for every back-end.

A back-end's test module subclasses :class:`StoreContract` and provides the
``make_store`` fixture: a factory ``make_store(**options) -> JobStore`` (the
only option used is ``max_events_per_job``) whose stores are closed at
teardown. See ``test_store_sqlite.py``.
"""

from __future__ import annotations

import threading

import pytest

from progresscast import JobStatus, ProgressTracker
from progresscast.errors import SeqConflict
from progresscast.state import JobState, new_job, transition

from .fakes import T0, FakeClock


def create(job_id="j1", owner="alice", now=T0, start=False, stages=("a", "b", "c")):
    """The events and state of a new job, as the tracker would append them."""
    state = new_job(job_id, f"job {job_id}", list(stages), owner, {"k": [1, 2]}, now)
    return transition(state, "job_started" if start else "job_queued", {}, now)


def step(state: JobState, kind: str, now: float | None = None, **fields):
    return transition(state, kind, fields, state.updated_at + 1 if now is None else now)


def seqs(events):
    return [e["seq"] for e in events]


def make_run(job_id, finished_at, elapsed=3.5, stages=(("a", 1.0), ("b", 2.5))):
    """A completed run as the ETA's history keeps it."""
    return {
        "job_id": job_id,
        "finished_at": finished_at,
        "elapsed": elapsed,
        "stages": [list(s) for s in stages],
    }


def job_ids(runs):
    return [r["job_id"] for r in runs]


class StoreContract:
    """Behaviour every JobStore must have (DESIGN §2: append + state, seq CAS)."""

    @pytest.fixture
    def make_store(self):
        raise NotImplementedError("a back-end's test class provides make_store")

    @pytest.fixture
    def store(self, make_store):
        return make_store()

    def put(self, store, events_and_state):
        events, state = events_and_state
        store.append(events, state)
        return events, state

    def long_job(self, store, job_id="long", updates=10):
        """A running job with ``updates`` progress events after job_started."""
        history, state = self.put(store, create(job_id, start=True))
        history = list(history)
        for i in range(updates):
            events, state = self.put(store, step(state, "progress_update", stage_progress=i))
            history += events
        return history, state

    # ------------------------------------------------------------------ append

    def test_append_creates_a_job_at_seq_1(self, store):
        events, state = self.put(store, create())
        assert seqs(events) == [1]
        assert store.get("j1") == state
        assert store.events_since("j1") == events
        assert store.first_seq("j1") == 1
        assert store.count_jobs() == 1

    def test_unknown_job(self, store):
        assert store.get("nope") is None
        assert store.events_since("nope") == []
        assert store.first_seq("nope") is None

    def test_get_returns_an_equal_state(self, store):
        _, state = self.put(store, create(start=True))
        for pct in (10, 40, 70):
            _, state = self.put(store, step(state, "progress_update", stage_progress=pct))
        _, state = self.put(store, step(state, "job_failed", error=ValueError("x")))
        assert state.eta and state.error
        got = store.get("j1")
        assert got == state
        assert got.snapshot(now=T0 + 99) == state.snapshot(now=T0 + 99)
        assert isinstance(got.status, JobStatus)

    def test_each_read_is_a_state_of_its_own(self, store):
        # Reads of an unchanged job share their decoding (stores/base.py,
        # decode_state): what one reader changes must not reach the next.
        _, state = self.put(store, create(start=True))
        first = store.get("j1")
        first.stage_pct[0] = 99.0
        first.stage_status[0] = None
        first.cancel_requested = "mine"
        first.seq = 1234
        again = store.get("j1")
        assert again == state
        assert again is not first and again.stage_pct is not first.stage_pct
        assert store.request_cancel("j1", "stop") is True
        assert store.get("j1").cancel_requested == "stop"
        assert store.get("j1").stage_pct == state.stage_pct

    def test_what_a_reader_changes_inside_a_state_stays_its_own(self, store):
        _, state = self.put(store, create(start=True))
        _, state = self.put(store, step(state, "progress_update", stage_progress=40))
        _, state = self.put(store, step(state, "job_failed", error=ValueError("x")))
        assert state.metadata and state.eta and state.error
        for read in (store.get("j1"), store.list_jobs()[0]):
            read.metadata["k"].append(3)
            read.metadata["new"] = True
            read.error["message"] = "changed"
            read.eta.clear()
            snapshot = read.snapshot(now=T0 + 99)
            snapshot["metadata"]["k"].append(4)
        again = store.get("j1")
        assert again == state
        assert again.metadata == {"k": [1, 2]}
        assert store.list_jobs()[0] == state

    def test_append_stores_every_event_of_a_request_in_order(self, store):
        first, state = self.put(store, create(start=True))
        events, state = self.put(store, step(state, "progress_update", stage="c"))
        assert [e["type"] for e in events] == ["stage_completed", "progress_update"]
        assert store.events_since("j1") == first + events
        assert store.get("j1").seq == 3

    def test_events_round_trip_exactly(self, store):
        events, _ = self.put(store, create(stages=("α", "β")))
        assert store.events_since("j1") == events
        assert store.events_since("j1")[0]["stages"][0]["name"] == "α"

    # ------------------------------------------------------ compare-and-set

    def test_a_stale_append_raises_and_stores_nothing(self, store):
        history, s1 = self.put(store, create(start=True))
        winner = step(s1, "progress_update", stage_progress=10)
        loser = step(s1, "job_failed", error="late")  # computed from the same seq
        self.put(store, winner)
        with pytest.raises(SeqConflict) as info:
            store.append(*loser)
        assert (info.value.job_id, info.value.expected, info.value.actual) == ("j1", 1, 2)
        assert store.get("j1") == winner[1]
        assert store.events_since("j1") == history + winner[0]

    def test_creating_an_existing_job_raises_and_changes_nothing(self, store):
        events, state = self.put(store, create(owner="alice"))
        with pytest.raises(SeqConflict):
            store.append(*create(owner="mallory", start=True))
        assert store.get("j1") == state
        assert store.events_since("j1") == events
        assert store.count_jobs(owner="mallory") == 0

    def test_a_gap_is_refused(self, store):
        history, s1 = self.put(store, create(start=True))
        _, s2 = step(s1, "progress_update", stage_progress=1)
        events, s3 = step(s2, "progress_update", stage_progress=2)  # seq 3, store has 1
        with pytest.raises(SeqConflict) as info:
            store.append(events, s3)
        assert (info.value.expected, info.value.actual) == (2, 1)
        assert store.get("j1") == s1
        assert store.events_since("j1") == history

    def test_a_new_job_must_start_at_seq_1(self, store):
        _, s1 = create()
        events, s2 = step(s1, "job_started")
        with pytest.raises(SeqConflict) as info:
            store.append(events, s2)
        assert info.value.actual is None
        assert store.get("j1") is None
        assert store.events_since("j1") == []
        assert store.count_jobs() == 0

    def test_a_multi_event_append_is_all_or_nothing(self, store):
        _, s1 = self.put(store, create(start=True))
        self.put(store, step(s1, "progress_update", stage_progress=5))
        two_events = step(s1, "progress_update", stage="c")  # seq 2 and 3: stale
        with pytest.raises(SeqConflict):
            store.append(*two_events)
        assert seqs(store.events_since("j1")) == [1, 2]
        assert store.get("j1").stage == "a"

    def test_two_threads_through_a_tracker_never_leave_a_gap(self, store):
        tracker = ProgressTracker(store, clock=FakeClock())
        tracker.create_job("r", ["a", "b"], owner="alice", job_id="race", start=True)
        n = 150
        errors = []

        def work(offset):
            try:
                for i in range(n):
                    tracker.record("race", "progress_update", stage_progress=(i + offset) % 100)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        events = store.events_since("race")
        assert seqs(events) == list(range(1, 2 * n + 2))
        assert store.get("race").seq == 2 * n + 1

    # ------------------------------------------------------------------ reads

    def test_events_since_is_ascending_and_limited(self, store):
        history, _ = self.long_job(store, updates=9)  # seq 1..10
        assert store.events_since("long") == history
        assert seqs(store.events_since("long", 4)) == [5, 6, 7, 8, 9, 10]
        assert seqs(store.events_since("long", 4, limit=3)) == [5, 6, 7]
        assert seqs(store.events_since("long", 0, limit=1)) == [1]
        assert store.events_since("long", 4, limit=0) == []
        assert store.events_since("long", 10) == []
        assert store.events_since("long", 99) == []

    def test_histories_are_per_job(self, store):
        self.long_job(store, "x", updates=3)
        self.long_job(store, "y", updates=1)
        assert seqs(store.events_since("x")) == [1, 2, 3, 4]
        assert seqs(store.events_since("y")) == [1, 2]
        assert {e["job_id"] for e in store.events_since("y")} == {"y"}

    @pytest.fixture
    def jobs(self, store):
        """Six jobs created a second apart: (job_id, owner, final status)."""
        plan = [
            ("a1", "alice", "queued"),
            ("b1", "bob", "running"),
            ("a2", "alice", "running"),
            ("a3", "alice", "completed"),
            ("b2", "bob", "failed"),
            ("a4", "alice", "cancelled"),
        ]
        for i, (job_id, owner, status) in enumerate(plan):
            now = T0 + i
            _, state = self.put(store, create(job_id, owner, now=now, start=status != "queued"))
            if status == "completed":
                self.put(store, step(state, "job_completed", now=now + 0.5))
            elif status == "failed":
                self.put(store, step(state, "job_failed", now=now + 0.5, error="x"))
            elif status == "cancelled":
                self.put(store, step(state, "job_cancelled", now=now + 0.5))
        return plan

    def ids(self, states):
        return [s.job_id for s in states]

    def test_list_jobs_newest_first(self, store, jobs):
        assert self.ids(store.list_jobs()) == ["a4", "b2", "a3", "a2", "b1", "a1"]
        assert self.ids(store.list_jobs(owner="alice")) == ["a4", "a3", "a2", "a1"]
        assert self.ids(store.list_jobs(owner="bob")) == ["b2", "b1"]
        assert store.list_jobs(owner="carol") == []
        assert store.list_jobs(owner="alice")[1] == store.get("a3")

    def test_list_jobs_by_status(self, store, jobs):
        running = [JobStatus.RUNNING]
        assert self.ids(store.list_jobs(status=running)) == ["a2", "b1"]
        assert self.ids(store.list_jobs(owner="alice", status=running)) == ["a2"]
        ended = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]
        assert self.ids(store.list_jobs(status=ended)) == ["a4", "b2", "a3"]
        assert self.ids(store.list_jobs(owner="bob", status=["failed", "queued"])) == ["b2"]
        assert store.list_jobs(owner="bob", status=[JobStatus.QUEUED]) == []

    def test_list_jobs_pages(self, store, jobs):
        assert self.ids(store.list_jobs(limit=2)) == ["a4", "b2"]
        assert self.ids(store.list_jobs(limit=2, offset=2)) == ["a3", "a2"]
        assert self.ids(store.list_jobs(limit=2, offset=4)) == ["b1", "a1"]
        assert store.list_jobs(limit=2, offset=6) == []
        assert self.ids(store.list_jobs(owner="alice", limit=3, offset=1)) == ["a3", "a2", "a1"]

    def test_count_jobs(self, store, jobs):
        assert store.count_jobs() == 6
        assert store.count_jobs(owner="alice") == 4
        assert store.count_jobs(owner="carol") == 0
        assert store.count_jobs(status=[JobStatus.RUNNING, JobStatus.QUEUED]) == 3
        assert store.count_jobs(owner="alice", status=[JobStatus.COMPLETED]) == 1

    # ------------------------------------------------------------------ prune

    def test_prune_removes_only_terminal_jobs_finished_before_the_cutoff(self, store):
        old = T0
        for job_id, kind in [
            ("done", "job_completed"),
            ("bad", "job_failed"),
            ("stop", "job_cancelled"),
        ]:
            _, state = self.put(store, create(job_id, start=True, now=old))
            self.put(store, step(state, kind, now=old + 10))
        _, state = self.put(store, create("recent", start=True, now=old))
        self.put(store, step(state, "job_completed", now=old + 1000))
        _, state = self.put(store, create("edge", start=True, now=old))
        self.put(store, step(state, "job_completed", now=old + 500))
        self.put(store, create("old-running", start=True, now=old - 10_000))
        self.put(store, create("old-queued", now=old - 10_000))

        assert store.prune(finished_before=old + 500) == 3
        for gone in ("done", "bad", "stop"):
            assert store.get(gone) is None
            assert store.events_since(gone) == []
            assert store.first_seq(gone) is None
        kept = {"recent", "edge", "old-running", "old-queued"}
        assert set(self.ids(store.list_jobs())) == kept
        assert all(store.events_since(job_id) for job_id in kept)
        assert store.count_jobs() == 4
        assert store.prune(finished_before=old + 500) == 0

    def test_a_parents_children_are_listed_in_creation_order(self, store):
        tracker = ProgressTracker(store, clock=FakeClock())
        _, kids = tracker.group(
            "g", [(f"c{i}", ["x"]) for i in range(12)], owner="alice", job_id="p"
        )
        tracker.create_job("other", ["x"], owner="alice")
        assert self.ids(store.list_children("p")) == [k.job_id for k in kids]
        assert [s.parent_id for s in store.list_children("p")] == ["p"] * 12
        assert store.list_children(kids[0].job_id) == [] and store.list_children("nope") == []
        # the states read back are the children's current ones
        tracker.start(kids[3].job_id)
        assert store.list_children("p")[3].status is JobStatus.RUNNING
        assert store.get("p").status is JobStatus.RUNNING

    def test_pruning_a_child_takes_it_off_its_parents_list(self, store):
        tracker = ProgressTracker(store, clock=FakeClock())
        _, kids = tracker.group("g", [("a", ["x"]), ("b", ["x"])], owner="alice", job_id="p")
        tracker.request_cancel(kids[0].job_id)
        assert store.prune(finished_before=T0 + 1) == 1
        assert self.ids(store.list_children("p")) == [kids[1].job_id]

    # --------------------------------------------------------------- trimming

    def test_trimming_keeps_a_gapless_suffix(self, make_store):
        store = make_store(max_events_per_job=5)
        history, state = self.long_job(store, updates=11)  # seq 1..12
        assert seqs(store.events_since("long")) == [8, 9, 10, 11, 12]
        assert store.events_since("long") == history[-5:]
        assert store.first_seq("long") == 8
        assert store.events_since("long", 9, limit=2) == history[9:11]
        assert store.get("long") == state
        # a request of two events keeps the newest five, still gapless
        events, state = self.put(store, step(state, "job_completed"))
        assert seqs(events) == [13, 14]
        assert seqs(store.events_since("long")) == [10, 11, 12, 13, 14]
        assert store.get("long").seq == 14

    def test_trimming_is_per_job(self, make_store):
        store = make_store(max_events_per_job=3)
        self.long_job(store, "big", updates=6)
        self.long_job(store, "small", updates=1)
        assert seqs(store.events_since("big")) == [5, 6, 7]
        assert seqs(store.events_since("small")) == [1, 2]

    def test_ping(self, store):
        store.ping()

    # --- cancellation requests live beside the state, outside the seq CAS

    def test_a_cancel_request_is_kept_and_read_back(self, store):
        _, state = self.put(store, create("c1", start=True))
        assert store.cancel_reason("c1") is None
        assert store.request_cancel("c1", "stop") is True
        assert store.cancel_reason("c1") == "stop"
        assert store.get("c1").cancel_requested == "stop"
        assert store.get("c1").seq == state.seq  # a request is not an event

    def test_a_cancel_request_survives_later_appends(self, store):
        _, state = self.put(store, create("c1", start=True))
        store.request_cancel("c1", "stop")
        self.put(store, step(state, "progress_update", stage_progress=50))
        assert store.cancel_reason("c1") == "stop"
        assert [j.cancel_requested for j in store.list_jobs(owner="alice")] == ["stop"]

    def test_append_returns_the_pending_cancel_reason(self, store):
        events, state = create("c1", start=True)
        assert store.append(events, state) is None  # a new job has no request
        state = self.put(store, step(state, "progress_update", stage_progress=10))[1]
        store.request_cancel("c1", "stop")
        events, state = step(state, "progress_update", stage_progress=20)
        assert store.append(events, state) == "stop"  # learnt with the write itself

    def test_the_first_reason_wins(self, store):
        self.put(store, create("c1", start=True))
        store.request_cancel("c1", "first")
        store.request_cancel("c1", "second")
        assert store.cancel_reason("c1") == "first"

    def test_no_cancel_request_for_unknown_or_ended_jobs(self, store):
        assert store.request_cancel("nope", "stop") is False
        assert store.cancel_reason("nope") is None
        _, state = self.put(store, create("done", start=True))
        self.put(store, step(state, "job_completed"))
        assert store.request_cancel("done", "stop") is False
        assert store.cancel_reason("done") is None

    def test_overdue_cancel_requests_are_listed_by_their_time(self, store):
        self.put(store, create("early", start=True))
        self.put(store, create("late", start=True))
        self.put(store, create("queued"))
        self.put(store, create("none", start=True))
        store.request_cancel("early", "stop", requested_at=100.0)
        store.request_cancel("late", "stop", requested_at=200.0)
        store.request_cancel("queued", "stop", requested_at=150.0)
        store.request_cancel("early", "again", requested_at=300.0)  # keeps the first time
        assert store.cancel_overdue(100.0) == []  # strictly before
        assert store.cancel_overdue(100.5) == ["early"]
        assert sorted(store.cancel_overdue(250.0)) == ["early", "late", "queued"]

    def test_an_ended_job_leaves_the_overdue_list(self, store):
        _, state = self.put(store, create("c1", start=True))
        store.request_cancel("c1", "stop", requested_at=100.0)
        self.put(store, step(state, "job_cancelled", reason="stop"))
        assert store.cancel_overdue(1e12) == []

    def test_status_follows_every_kind_of_commit(self, store):
        # A store may skip rewriting the status on commits that cannot change
        # it (SQLite does); the listings must still see every change.
        _, state = self.put(store, create("s", now=T0))
        assert [j.job_id for j in store.list_jobs(status=[JobStatus.QUEUED])] == ["s"]
        _, state = self.put(store, step(state, "job_started"))
        _, state = self.put(store, step(state, "progress_update", stage_progress=10))
        _, state = self.put(store, step(state, "stage_completed", stage="a"))
        assert [j.job_id for j in store.list_jobs(status=[JobStatus.RUNNING])] == ["s"]
        assert store.list_jobs(status=[JobStatus.QUEUED]) == []
        # the stage still running completes and the job ends, in one commit
        events, state = step(state, "job_completed", stage_progress=90)
        assert [e["type"] for e in events] == ["stage_completed", "job_completed"]
        self.put(store, (events, state))
        done = store.list_jobs(status=[JobStatus.COMPLETED])
        assert [(j.job_id, j.finished_at) for j in done] == [("s", state.finished_at)]
        assert store.list_jobs(status=[JobStatus.RUNNING]) == []
        assert store.stalled(state.updated_at + 1000) == []

    # --- stall detection reads running jobs by the time of their last event

    def test_stalled_lists_running_jobs_idle_since_before_the_cutoff(self, store):
        _, old = self.put(store, create("old", start=True, now=T0))
        self.put(store, create("fresh", start=True, now=T0 + 100))
        self.put(store, create("queued", now=T0))
        _, done = self.put(store, create("done", start=True, now=T0))
        self.put(store, step(done, "job_completed", now=T0 + 1))
        assert store.stalled(T0 + 50) == ["old"]
        self.put(store, step(old, "progress_update", now=T0 + 60, stage_progress=5))
        assert store.stalled(T0 + 50) == []
        assert sorted(store.stalled(T0 + 200)) == ["fresh", "old"]

    # --- the ETA's run history: per kind, the newest completed runs

    def test_a_run_round_trips_as_an_equal_dict(self, store):
        run = make_run("r1", T0, stages=[["parsing", 1.5], ["analyzing", 0.0], ["b", 2]])
        run["extra"] = {"n": [1, 2]}
        store.add_run("pdf", run, keep=20)
        [back] = store.runs("pdf", 10)
        assert back == run
        assert [s[0] for s in back["stages"]] == ["parsing", "analyzing", "b"]
        assert all(type(s) is list for s in back["stages"])
        assert store.runs("other", 10) == [] and store.runs("pdf", 0) == []

    def test_runs_are_newest_first_by_finished_at(self, store):
        for i in (3, 1, 4, 0, 2):  # added out of order
            store.add_run("k", make_run(f"r{i}", T0 + i), keep=20)
        assert job_ids(store.runs("k", 10)) == ["r4", "r3", "r2", "r1", "r0"]
        assert job_ids(store.runs("k", 2)) == ["r4", "r3"]

    def test_runs_that_finished_together_are_ordered_by_job_id(self, store):
        for job_id in ("b", "c", "a"):
            store.add_run("k", make_run(job_id, T0), keep=20)
        assert job_ids(store.runs("k", 10)) == ["c", "b", "a"]
        store.add_run("k", make_run("d", T0), keep=2)  # and the smaller ids go first
        assert job_ids(store.runs("k", 10)) == ["d", "c"]

    def test_keep_trims_to_the_newest(self, store):
        for i in range(8):
            store.add_run("k", make_run(f"r{i}", T0 + i), keep=5)
        assert job_ids(store.runs("k", 100)) == ["r7", "r6", "r5", "r4", "r3"]
        # an older run than all kept ones is trimmed at once
        store.add_run("k", make_run("late", T0 - 100), keep=5)
        assert job_ids(store.runs("k", 100)) == ["r7", "r6", "r5", "r4", "r3"]
        # a smaller keep trims what was kept under a larger one
        store.add_run("k", make_run("r8", T0 + 8), keep=2)
        assert job_ids(store.runs("k", 100)) == ["r8", "r7"]
        assert store.history_kinds() == [{"kind": "k", "runs": 2, "last_finished_at": T0 + 8}]

    def test_keep_0_stores_nothing(self, store):
        store.add_run("k", make_run("r", T0), keep=0)
        assert store.runs("k", 10) == [] and store.history_kinds() == []

    def test_the_same_job_is_counted_once(self, store):
        store.add_run("k", make_run("r", T0, elapsed=5), keep=5)
        store.add_run("k", make_run("r", T0 + 1, elapsed=6), keep=5)  # e.g. a retried write
        assert store.runs("k", 10) == [make_run("r", T0 + 1, elapsed=6)]
        store.add_run("other", make_run("r", T0), keep=5)  # another kind's is its own
        assert [k["runs"] for k in store.history_kinds()] == [1, 1]

    def test_since_keeps_runs_finished_at_or_after_it(self, store):
        for i in range(5):
            store.add_run("k", make_run(f"r{i}", T0 + 10 * i), keep=20)
        assert job_ids(store.runs("k", 10, since=T0 + 20)) == ["r4", "r3", "r2"]
        assert job_ids(store.runs("k", 2, since=T0 + 1)) == ["r4", "r3"]
        assert store.runs("k", 10, since=T0 + 41) == []
        assert len(store.runs("k", 10, since=T0 - 1e9)) == 5

    def test_max_age_forgets_runs_that_finished_that_long_before(self, store):
        day = 86400.0
        store.add_run("k", make_run("old", T0), keep=20, max_age=30 * day)
        store.add_run("k", make_run("edge", T0 + 10 * day), keep=20, max_age=30 * day)
        store.add_run("k", make_run("mid", T0 + 20 * day), keep=20, max_age=30 * day)
        assert job_ids(store.runs("k", 10)) == ["mid", "edge", "old"]
        store.add_run("k", make_run("new", T0 + 40 * day), keep=20, max_age=30 * day)
        assert job_ids(store.runs("k", 10)) == ["new", "mid", "edge"]  # 30 days: kept
        store.add_run("k", make_run("newer", T0 + 41 * day), keep=20, max_age=30 * day)
        assert job_ids(store.runs("k", 10)) == ["newer", "new", "mid"]
        # without max_age nothing goes for age
        store.add_run("k", make_run("later", T0 + 400 * day), keep=20)
        assert len(store.runs("k", 10)) == 4

    def test_max_age_may_forget_other_kinds_as_old(self, store):
        day = 86400.0
        store.add_run("stale", make_run("s", T0), keep=20, max_age=30 * day)
        store.add_run("recent", make_run("r", T0 + 5 * day), keep=20, max_age=30 * day)
        store.add_run("now", make_run("n", T0 + 31 * day), keep=20, max_age=30 * day)
        kinds = [k["kind"] for k in store.history_kinds()]
        assert "recent" in kinds and "now" in kinds
        # "stale" may be kept or forgotten, but is never read as recent
        assert store.runs("stale", 10, since=T0 + day) == []

    @pytest.mark.parametrize(
        "kinds",
        [
            ["a", "a:b", "a:b:c", "a:"],
            ["x", "x*", "x?", "[x]", "x\\", "x y", "x/y", "x\ny"],
            ["héllo", "日本語", "emoji 🚀", "a" * 200, "history", "runs:a", "-runs:a"],
        ],
    )
    def test_kinds_are_opaque_strings(self, store, kinds):
        for i, kind in enumerate(kinds):
            for j in range(i + 1):  # kind i has i + 1 runs
                store.add_run(kind, make_run(f"{i}-{j}", T0 + j), keep=20)
        for i, kind in enumerate(kinds):
            assert job_ids(store.runs(kind, 100)) == [f"{i}-{j}" for j in reversed(range(i + 1))]
        assert store.history_kinds() == [
            {"kind": kind, "runs": i + 1, "last_finished_at": T0 + i}
            for i, kind in sorted(enumerate(kinds), key=lambda pair: pair[1])
        ]
        assert store.reset_history(kinds[1]) == 2
        assert store.runs(kinds[1], 100) == []
        assert len(store.runs(kinds[0], 100)) == 1 and len(store.runs(kinds[2], 100)) == 3

    def test_history_kinds_counts_runs_and_the_newest(self, store):
        assert store.history_kinds() == []
        for i in range(3):
            store.add_run("beta", make_run(f"b{i}", T0 + 100 - i), keep=20)
        store.add_run("alpha", make_run("a", T0 + 0.25), keep=20)
        assert store.history_kinds() == [
            {"kind": "alpha", "runs": 1, "last_finished_at": T0 + 0.25},
            {"kind": "beta", "runs": 3, "last_finished_at": T0 + 100},
        ]

    def test_reset_one_kind_or_all(self, store):
        for kind, n in (("a", 3), ("b", 2), ("c", 1)):
            for i in range(n):
                store.add_run(kind, make_run(f"{kind}{i}", T0 + i), keep=20)
        assert store.reset_history("b") == 2
        assert [k["kind"] for k in store.history_kinds()] == ["a", "c"]
        assert store.runs("b", 10) == [] and len(store.runs("a", 10)) == 3
        assert store.reset_history("b") == 0 and store.reset_history("nope") == 0
        assert store.reset_history() == 4
        assert store.history_kinds() == [] and store.runs("a", 10) == []
        assert store.reset_history() == 0
        # history starts again after a reset
        store.add_run("a", make_run("again", T0), keep=20)
        assert job_ids(store.runs("a", 10)) == ["again"]

    def test_history_is_apart_from_jobs(self, store):
        _, state = self.put(store, create("j1", start=True))
        self.put(store, step(state, "job_completed", now=T0 + 10))
        store.add_run("job j1", make_run("j1", T0 + 10), keep=20)
        assert store.prune(finished_before=T0 + 1000) == 1  # the job goes, its run stays
        assert job_ids(store.runs("job j1", 10)) == ["j1"]
        self.put(store, create("j2"))
        assert store.reset_history() == 1
        assert self.ids(store.list_jobs()) == ["j2"]  # and a reset leaves jobs alone

    @pytest.mark.parametrize(
        ("kind", "run"),
        [
            ("", make_run("r", T0)),
            ("k", {"finished_at": T0, "elapsed": 1.0, "stages": []}),
            ("k", {"job_id": "", "finished_at": T0}),
            ("k", {"job_id": "r", "elapsed": 1.0, "stages": []}),
            ("k", {"job_id": "r", "finished_at": "yesterday"}),
            ("k", {"job_id": "r", "finished_at": float("nan")}),
        ],
    )
    def test_a_malformed_run_is_refused(self, store, kind, run):
        with pytest.raises(ValueError):
            store.add_run(kind, run, keep=20)
        assert store.history_kinds() == []

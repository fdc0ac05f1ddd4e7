"""The tracker's reads: resume (``read_since``), history pages (``events_page``),
listings and operations, on SQLite and on a real redis-server.

``truncated`` has one rule: the reader cannot continue from ``since`` when
the store no longer holds the events right after it, when more than
``limit`` are missing (a resume only: a page is just shorter), or when
``since`` is past the job's ``seq`` (the store was reset).
"""

from __future__ import annotations

import itertools

import pytest

from progresscast import JobNotFound, JobRead, JobStatus, ProgressTracker, SQLiteStore
from progresscast.stores.redis import RedisStore

from .fakes import T0, FakeClock

_prefixes = itertools.count()


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """``make_store(**options)``: a fresh store of the parametrised back-end."""
    made = []
    redis_url = request.getfixturevalue("redis_server").url if request.param == "redis" else None

    def make(**options):
        if redis_url is None:
            store = SQLiteStore(str(tmp_path / f"reads{len(made)}.db"), **options)
        else:
            store = RedisStore(redis_url, prefix=f"reads{next(_prefixes)}", **options)
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, RedisStore):
            for key in store.redis.scan_iter(f"{store.prefix}:*"):
                store.redis.delete(key)
        store.close()


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def tracker(make_store, clock):
    """A tracker whose job ``full`` has its whole history, seq 1..7."""
    tracker = ProgressTracker(make_store(), clock=clock)
    tracker.create_job("r", ["a", "b"], owner="u", job_id="full", start=True)
    for pct in range(10, 70, 10):
        tracker.record("full", "progress_update", stage_progress=pct)
    assert tracker.get("full").seq == 7
    return tracker


@pytest.fixture
def trimmed(make_store, clock):
    """A tracker whose job ``t`` has 13 events, of which the store keeps the
    last 5 (seq 9..13)."""
    tracker = ProgressTracker(make_store(max_events_per_job=5), clock=clock)
    tracker.create_job("r", ["a"], owner="u", job_id="t", start=True)
    for pct in range(10, 110, 10):
        tracker.record("t", "progress_update", stage_progress=pct)
    tracker.record("t", "job_completed")
    assert tracker.get("t").seq == 13  # ... + stage_completed + job_completed
    return tracker


def seqs(read: JobRead) -> list[int]:
    return [e["seq"] for e in read.events]


# ---------------------------------------------------------------- read_since


def test_without_since_a_read_is_the_snapshot_alone(tracker, clock):
    clock.advance(3)
    read = tracker.read_since("full", None, limit=100)

    assert read.events is None and read.truncated is False
    assert read.seq == read.state.seq == read.snapshot["seq"] == 7
    assert read.snapshot == tracker.get("full").snapshot(clock())  # elapsed counted up to now


def test_since_0_replays_the_whole_history(tracker):
    read = tracker.read_since("full", 0, limit=100)

    assert (seqs(read), read.truncated) == ([1, 2, 3, 4, 5, 6, 7], False)
    assert read.events == tracker.store.events_since("full")


@pytest.mark.parametrize("since", [1, 4, 6])
def test_since_gives_exactly_the_missing_events(tracker, since):
    read = tracker.read_since("full", since, limit=100)

    assert (seqs(read), read.truncated) == (list(range(since + 1, 8)), False)


def test_since_the_current_seq_gives_nothing_and_is_not_truncated(tracker, trimmed):
    for read in (tracker.read_since("full", 7, limit=100), trimmed.read_since("t", 13, limit=1)):
        assert (read.events, read.truncated) == ([], False)


@pytest.mark.parametrize("since", [8, 1000, 2**63 - 1])
def test_since_past_the_jobs_seq_is_truncated(tracker, since):
    """The reader is ahead of the store (it was reset): it starts over."""
    read = tracker.read_since("full", since, limit=100)

    assert (read.events, read.truncated, read.seq) == ([], True, 7)


def test_more_than_limit_missing_is_truncated(tracker):
    assert tracker.read_since("full", 0, limit=6).truncated is True
    assert tracker.read_since("full", 0, limit=6).events == []
    assert tracker.read_since("full", 3, limit=3).truncated is True
    read = tracker.read_since("full", 3, limit=4)
    assert (seqs(read), read.truncated) == ([4, 5, 6, 7], False)
    read = tracker.read_since("full", 0, limit=7)
    assert (len(read.events), read.truncated) == (7, False)


@pytest.mark.parametrize("since", [0, 3, 7])
def test_trimmed_history_is_truncated(trimmed, since):
    read = trimmed.read_since("t", since, limit=100)

    assert (read.events, read.truncated, read.seq) == ([], True, 13)


def test_trimmed_history_reaches_back_to_the_oldest_kept_event(trimmed):
    read = trimmed.read_since("t", 8, limit=100)
    assert (seqs(read), read.truncated) == ([9, 10, 11, 12, 13], False)
    read = trimmed.read_since("t", 9, limit=100)
    assert (seqs(read), read.truncated) == ([10, 11, 12, 13], False)


def test_trimmed_history_within_limit_only(trimmed):
    assert trimmed.read_since("t", 9, limit=3).truncated is True
    read = trimmed.read_since("t", 9, limit=4)
    assert (len(read.events), read.truncated) == (4, False)


def test_reading_a_job_that_does_not_exist_is_not_found(tracker):
    with pytest.raises(JobNotFound):
        tracker.read_since("ghost", 0, limit=10)
    with pytest.raises(JobNotFound):
        tracker.events_page("ghost", 0, limit=10)


class NoHistory:
    """The real store, but it holds no event of any job (e.g. it lost them)."""

    def __init__(self, store):
        self._store = store

    def events_since(self, job_id, since=0, limit=None):
        return []

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_job_whose_events_are_all_gone_is_truncated(tracker, clock):
    bare = ProgressTracker(NoHistory(tracker.store), clock=clock)

    read = bare.read_since("full", 0, 100)
    assert (read.events, read.truncated) == ([], True)
    page = bare.events_page("full", 2, 100)
    assert (page.events, page.truncated, page.seq) == ([], True, 7)


class WriterInBetween:
    """The real store, except that another writer stores an event right after
    the next read of the job's state."""

    def __init__(self, store, other: ProgressTracker):
        self._store = store
        self.other = other
        self.armed = True

    def get(self, job_id):
        state = self._store.get(job_id)
        if self.armed:
            self.armed = False
            self.other.record(job_id, "progress_update", message="after the read")
        return state

    def __getattr__(self, name):
        return getattr(self._store, name)


@pytest.mark.parametrize("read", ["read_since", "events_page"])
def test_events_stop_at_the_snapshots_seq(tracker, clock, read):
    """An event stored after the read of the state is not in the events: the
    reader gets it live (it subscribed first) and the snapshot agrees with
    the events it was given."""
    racing = ProgressTracker(WriterInBetween(tracker.store, tracker), clock=clock)

    got = getattr(racing, read)("full", 3, 100)

    assert got.seq == 7 and seqs(got) == [4, 5, 6, 7] and got.truncated is False
    assert tracker.get("full").seq == 8


# --------------------------------------------------------------- events_page


@pytest.mark.parametrize(
    ("since", "limit", "expected"),
    [
        (0, 100, [1, 2, 3, 4, 5, 6, 7]),
        (3, 100, [4, 5, 6, 7]),
        (1, 2, [2, 3]),  # a page is shorter, not truncated
        (0, 1, [1]),
        (6, 1, [7]),
        (7, 100, []),
    ],
)
def test_a_page_holds_at_most_limit_events(tracker, since, limit, expected):
    page = tracker.events_page("full", since, limit)

    assert (seqs(page), page.truncated, page.seq) == (expected, False, 7)
    assert page.snapshot["seq"] == 7 and page.state.job_id == "full"


def test_a_page_of_trimmed_history_holds_what_the_store_kept(trimmed):
    old = trimmed.events_page("t", 1, 100)
    right_before = trimmed.events_page("t", 8, 100)
    short = trimmed.events_page("t", 0, 2)

    assert (seqs(old), old.truncated) == ([9, 10, 11, 12, 13], True)
    assert (seqs(right_before), right_before.truncated) == ([9, 10, 11, 12, 13], False)
    assert (seqs(short), short.truncated) == ([9, 10], True)


@pytest.mark.parametrize("since", [8, 1000])
def test_a_page_past_the_jobs_seq_is_truncated(tracker, since):
    page = tracker.events_page("full", since, 100)

    assert (page.events, page.truncated, page.seq) == ([], True, 7)


# -------------------------------------------------------- listings, operations


def test_listings_and_counts(make_store, clock):
    tracker = ProgressTracker(make_store(), clock=clock)
    for i in range(5):
        clock.advance(1)
        tracker.create_job("r", ["a"], owner="alice" if i < 4 else "bob", job_id=f"j{i}")
    tracker.record("j1", "job_started")
    tracker.record("j2", "job_started")

    assert tracker.count_jobs("alice") == 4 and tracker.count_jobs(None) == 5
    assert tracker.count_jobs("alice", [JobStatus.RUNNING]) == 2
    assert tracker.count_jobs("carol") == 0
    assert [s.job_id for s in tracker.list_jobs("alice")] == ["j3", "j2", "j1", "j0"]
    assert [s.job_id for s in tracker.list_jobs("alice", limit=2, offset=1)] == ["j2", "j1"]
    assert [s.job_id for s in tracker.list_jobs("alice", [JobStatus.QUEUED])] == ["j3", "j0"]
    assert [s.job_id for s in tracker.list_jobs(None, limit=1)] == ["j4"]


def test_prune_removes_jobs_that_ended_longer_ago_than_asked(make_store, clock):
    tracker = ProgressTracker(make_store(), clock=clock)
    tracker.create_job("r", ["a"], owner="u", job_id="old", start=True)
    tracker.record("old", "job_completed")
    clock.advance(100)
    tracker.create_job("r", ["a"], owner="u", job_id="recent", start=True)
    tracker.record("recent", "job_completed")
    tracker.create_job("r", ["a"], owner="u", job_id="running", start=True)
    clock.advance(100)

    assert tracker.prune(older_than=150) == 1
    assert tracker.prune(older_than=150) == 0
    with pytest.raises(JobNotFound):
        tracker.get("old")
    assert {s.job_id for s in tracker.list_jobs(None)} == {"recent", "running"}


def test_ping_and_checkpoints(make_store, clock):
    store = make_store()
    tracker = ProgressTracker(store, clock=clock)
    tracker.ping()
    manual = tracker.manual_checkpoints()
    assert manual is isinstance(store, SQLiteStore)  # Redis has no checkpoints to take over
    tracker.create_job("r", ["a"], owner="u", job_id="c", start=True)
    tracker.checkpoint()
    assert tracker.get("c").seq == 1

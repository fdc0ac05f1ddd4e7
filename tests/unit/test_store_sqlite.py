import os
import threading

import pytest

from progresscast import ProgressTracker, SQLiteStore, open_store

from .fakes import T0, FakeClock
from .store_contract import StoreContract, job_ids, make_run, seqs


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def db_path(self, tmp_path):
        return str(tmp_path / "data" / "progress.db")

    @pytest.fixture
    def make_store(self, db_path):
        opened = []

        def make(path=db_path, **options):
            store = SQLiteStore(path, **options)
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()

    def test_data_survives_a_restart(self, make_store, db_path):
        clock = FakeClock()
        before = make_store()
        tracker = ProgressTracker(before, clock=clock)
        tracker.create_job("r", ["a", "b"], owner="alice", job_id="keep", start=True)
        tracker.record("keep", "progress_update", stage_progress=40, message="m")
        state, events = before.get("keep"), before.events_since("keep")
        before.close()

        after = make_store()  # the server restarted
        assert after.get("keep") == state
        assert after.events_since("keep") == events
        assert after.count_jobs(owner="alice") == 1
        ProgressTracker(after, clock=clock).record("keep", "job_completed")
        assert seqs(after.events_since("keep")) == [1, 2, 3, 4]
        assert after.get("keep").status == "completed"

    def test_two_stores_on_one_file_never_leave_a_gap(self, make_store):
        clock = FakeClock()
        first, second = make_store(), make_store()  # like two processes
        ProgressTracker(first, clock=clock).create_job(
            "r", ["a"], owner="alice", job_id="shared", start=True
        )
        n = 150
        errors = []

        def work(store, offset):
            tracker = ProgressTracker(store, clock=clock)
            try:
                for i in range(n):
                    tracker.record("shared", "progress_update", stage_progress=(i + offset) % 100)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=a) for a in ((first, 0), (second, 50))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for store in (first, second):
            assert seqs(store.events_since("shared")) == list(range(1, 2 * n + 2))
            assert store.get("shared").seq == 2 * n + 1

    def test_a_closed_store_refuses_work(self, make_store):
        store = make_store()
        store.close()
        store.close()  # twice is fine
        with pytest.raises(RuntimeError):
            store.get("x")
        with pytest.raises(RuntimeError):
            store.ping()

    def test_open_store_url(self, tmp_path):
        store = open_store(f"sqlite:///{tmp_path}/u.db?max_events_per_job=3")
        try:
            assert isinstance(store, SQLiteStore)
            assert store.path == f"{tmp_path}/u.db"
            assert store.max_events_per_job == 3
        finally:
            store.close()
        for bad in ("sqlite:///", "postgres://x/y", "memcached://x"):
            with pytest.raises(ValueError):
                open_store(bad)


def _checkpointed_seq(db_path: str, job_id: str) -> int | None:
    """The job's seq as the database file alone has it, WAL ignored."""
    import sqlite3

    uri = f"file:{db_path}?immutable=1"
    db = sqlite3.connect(uri, uri=True)
    try:
        row = db.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    except sqlite3.OperationalError:  # not even the schema has been checkpointed
        return None
    finally:
        db.close()
    return row[0] if row else None


def test_manual_checkpoints_leave_the_wal_to_a_checkpoint_run_from_another_thread(tmp_path):
    path = str(tmp_path / "progress.db")
    store = SQLiteStore(path)
    try:
        store.manual_checkpoints()
        tracker = ProgressTracker(store, clock=FakeClock())
        tracker.create_job("r", ["a", "b"], owner="alice", job_id="j", start=True)
        # Past SQLite's automatic threshold (1,000 WAL pages): with it on, a
        # commit would have copied the WAL into the file by now.
        for i in range(1500):
            tracker.record("j", "progress_update", stage_progress=i % 100, message="m" * 500)
        seq = store.get("j").seq
        assert _checkpointed_seq(path, "j") is None  # all of it still in the WAL

        result = []
        worker = threading.Thread(target=lambda: result.append(store.checkpoint()))
        worker.start()
        worker.join(10)
        frames, moved = result[0]
        assert frames > 1000 and moved == frames
        assert _checkpointed_seq(path, "j") == seq
        # The store goes on as before.
        tracker.record("j", "progress_update", stage_progress=1)
        assert store.get("j").seq == seq + 1
    finally:
        store.close()


def _wal_pages(wal_path: str, since: int) -> list[int]:
    """Page numbers of the frames written to the WAL after byte ``since``."""
    import struct

    with open(wal_path, "rb") as f:
        data = f.read()
    page_size = struct.unpack(">I", data[8:12])[0]
    offset, pages = max(since, 32), []
    while offset + 24 + page_size <= len(data):
        pages.append(struct.unpack(">I", data[offset : offset + 4])[0])
        offset += 24 + page_size
    return pages


def test_a_progress_report_commits_its_row_and_its_event_only(tmp_path):
    path = str(tmp_path / "progress.db")
    store = SQLiteStore(path)
    try:
        store.manual_checkpoints()  # the WAL only grows: every commit's pages stay in it
        tracker = ProgressTracker(store, clock=FakeClock())
        for j in range(20):
            tracker.create_job("r", ["a", "b"], owner="alice", job_id=f"j{j}", start=True)
        db = store._conn()
        indexes = dict(db.execute("SELECT name, rootpage FROM sqlite_master WHERE type='index'"))
        assert "jobs_status" in indexes and "jobs_status_updated" not in indexes
        before = os.path.getsize(path + "-wal")
        tracker.record("j7", "progress_update", stage_progress=50, message="halfway")
        pages = _wal_pages(path + "-wal", before)
        # The job's row and its new event: no index page, the status index
        # least of all (it used to be rewritten by every report).
        assert len(pages) == 2
        assert not set(pages) & set(indexes.values())
        # A status change does write the status index, and listings see it.
        before = os.path.getsize(path + "-wal")
        tracker.record("j7", "job_completed")
        assert indexes["jobs_status"] in _wal_pages(path + "-wal", before)
        assert [j.job_id for j in store.list_jobs(status=["completed"])] == ["j7"]
    finally:
        store.close()


def test_a_file_from_an_older_version_loses_the_index_every_report_rewrote(tmp_path):
    import sqlite3

    path = str(tmp_path / "old.db")
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE jobs (job_id TEXT PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL,
            created_at REAL NOT NULL, finished_at REAL, updated_at REAL NOT NULL DEFAULT 0,
            seq INTEGER NOT NULL, state TEXT NOT NULL, cancel_reason TEXT);
        CREATE INDEX jobs_status_updated ON jobs (status, updated_at);
        CREATE TABLE events (job_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
            PRIMARY KEY (job_id, seq)) WITHOUT ROWID;
        """
    )
    old.close()
    store = SQLiteStore(path)
    try:
        names = {r[0] for r in store._conn().execute("SELECT name FROM sqlite_master")}
        assert "jobs_status" in names and "jobs_status_updated" not in names
        clock = FakeClock()
        tracker = ProgressTracker(store, clock=clock)
        tracker.create_job("r", ["a"], owner="alice", job_id="x", start=True)
        clock.advance(100)
        assert store.stalled(clock() - 50) == ["x"]
        # the cancellation request's time is a column added on open
        tracker.request_cancel("x", "stop")
        clock.advance(10)
        assert store.cancel_overdue(clock() - 5) == ["x"]
        # and so is a child's parent, with its index
        _, kids = tracker.group("g", [("a", ["x"])], owner="alice", job_id="p")
        assert [k.job_id for k in store.list_children("p")] == [kids[0].job_id]
        assert "jobs_parent" in {
            r[0] for r in store._conn().execute("SELECT name FROM sqlite_master")
        }
    finally:
        store.close()


def test_history_survives_a_restart(tmp_path):
    path = str(tmp_path / "progress.db")
    before = SQLiteStore(path)
    try:
        for i in range(3):
            before.add_run("pdf: a/b", make_run(f"r{i}", T0 + i), keep=20)
    finally:
        before.close()
    after = SQLiteStore(path)  # the server restarted
    try:
        assert job_ids(after.runs("pdf: a/b", 10)) == ["r2", "r1", "r0"]
        assert after.runs("pdf: a/b", 10)[0] == make_run("r2", T0 + 2)
        assert after.history_kinds() == [
            {"kind": "pdf: a/b", "runs": 3, "last_finished_at": T0 + 2}
        ]
    finally:
        after.close()


def test_a_file_from_before_the_history_opens_and_gets_it(tmp_path):
    import sqlite3

    path = str(tmp_path / "before.db")
    store = SQLiteStore(path)
    tracker = ProgressTracker(store, clock=FakeClock())
    tracker.create_job("r", ["a"], owner="alice", job_id="old", start=True)
    store.close()
    # what the file looked like before the runs table existed
    old = sqlite3.connect(path)
    old.executescript("DROP INDEX runs_kind_finished; DROP INDEX runs_finished; DROP TABLE runs;")
    assert "runs" not in {r[0] for r in old.execute("SELECT name FROM sqlite_master")}
    old.close()

    store = SQLiteStore(path)
    try:
        assert store.get("old").status == "running"  # its jobs as they were
        assert store.history_kinds() == [] and store.runs("r", 10) == []
        store.add_run("r", make_run("old", T0), keep=20)
        assert job_ids(store.runs("r", 10)) == ["old"]
        names = {r[0] for r in store._conn().execute("SELECT name FROM sqlite_master")}
        assert {"runs", "runs_kind_finished", "runs_finished"} <= names
    finally:
        store.close()


def test_two_stores_on_one_file_share_the_history(tmp_path):
    path = str(tmp_path / "shared.db")
    first, second = SQLiteStore(path), SQLiteStore(path)  # like two processes
    try:
        for i in range(6):
            (first if i % 2 else second).add_run("k", make_run(f"r{i}", T0 + i), keep=4)
        assert job_ids(first.runs("k", 10)) == ["r5", "r4", "r3", "r2"]
        assert second.reset_history("k") == 4
        assert first.runs("k", 10) == []
    finally:
        first.close()
        second.close()

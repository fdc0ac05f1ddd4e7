import threading

import pytest

from progresscast import ProgressTracker, SQLiteStore, open_store

from .fakes import FakeClock
from .store_contract import StoreContract, seqs


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

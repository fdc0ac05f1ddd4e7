"""The live server checkpoints its SQLite WAL from a native thread
(progresscast/flask/background.py), not inside commits on the event loop."""

from __future__ import annotations

import sqlite3

from tests.harness import ServerProcess, wait_until

STAGES = [{"name": "only", "weight": 1.0}]


def test_the_server_checkpoints_the_sqlite_wal_from_a_native_thread(tmp_path):
    """Checkpoints run off the event loop (tpool under eventlet)."""
    server = ServerProcess(tmp_path, env={"PROGRESSCAST_STORE_CHECKPOINT_SECONDS": "0.2"}).start()
    try:
        job = server.http("POST", "/api/jobs", json={"name": "a", "stages": STAGES}).json()
        server.http("POST", f"/api/jobs/{job['job_id']}/events", json={"type": "job_started"})

        def seq_in_the_file_itself():
            db = sqlite3.connect(f"file:{tmp_path / 'progresscast.db'}?immutable=1", uri=True)
            try:
                row = db.execute(
                    "SELECT seq FROM jobs WHERE job_id = ?", (job["job_id"],)
                ).fetchone()
            except sqlite3.OperationalError:
                return None
            finally:
                db.close()
            return row and row[0]

        assert wait_until(lambda: seq_in_the_file_itself() == 2, 10, what="a checkpoint")
        r = server.http("POST", f"/api/jobs/{job['job_id']}/events", json={"type": "job_completed"})
        assert r.status_code == 201
        assert wait_until(lambda: seq_in_the_file_itself() == 4, 10, what="the next checkpoint")
    finally:
        server.stop()

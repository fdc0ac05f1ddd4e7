"""SQLite job store: the embedded default, one file, WAL mode.

Schema::

    jobs(job_id PK, owner, status, created_at, finished_at, seq, state JSON,
         cancel_reason, cancel_requested_at)  -- a pending cancellation request,
                                               -- outside the seq CAS
    events(job_id, seq, event JSON, PRIMARY KEY (job_id, seq))
    runs(kind, job_id, finished_at, record JSON, PRIMARY KEY (kind, job_id))
                                               -- the ETA's run history, the
                                               -- newest ``keep`` per kind

One connection, behind a lock. SQLite serialises writers anyway, every call
is one short transaction, and a single connection behaves the same under
threads, eventlet and gevent (a thread-local connection would become one
connection per greenlet under monkey patching). Other processes may use the
same file: ``BEGIN IMMEDIATE`` and the busy ``timeout`` coordinate them.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SeqConflict, StoreUnavailable
from ..jsoncodec import dumps, loads
from ..state import TERMINAL, JobState, JobStatus
from .base import JobStore, decode_state, run_fields

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id      TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    finished_at REAL,
    updated_at  REAL NOT NULL DEFAULT 0,
    seq         INTEGER NOT NULL,
    state       TEXT NOT NULL,
    cancel_reason TEXT,
    cancel_requested_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner, created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC);
-- status alone: a progress report changes updated_at but not status, so it
-- leaves this index alone (an index on (status, updated_at) was rewritten by
-- every report: one more page in every commit).
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    event  TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
-- The ETA's history (add_run): completed runs per kind. Files from before it
-- get the table when opened.
CREATE TABLE IF NOT EXISTS runs (
    kind        TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    finished_at REAL NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (kind, job_id)
);
CREATE INDEX IF NOT EXISTS runs_kind_finished ON runs (kind, finished_at);
-- max_age: every kind's expired runs go, from this index.
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished_at);
"""

#: Events that never change a job's status or finished_at: transition() takes
#: them only from a running job and leaves it running.
_STATUS_KEPT = frozenset({"progress_update", "stage_completed"})
_UPDATE_PROGRESS = (
    "UPDATE jobs SET updated_at = ?, seq = ?, state = ?"
    " WHERE job_id = ? AND seq = ? RETURNING cancel_reason"
)
_UPDATE_STATUS = (
    "UPDATE jobs SET status = ?, finished_at = ?, updated_at = ?, seq = ?, state = ?"
    " WHERE job_id = ? AND seq = ? RETURNING cancel_reason"
)


def _locked(method):
    """Serialise access to the one connection; report a locked or broken
    database as StoreUnavailable."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc

    return wrapper


class SQLiteStore(JobStore):
    """Job store in one SQLite file.

    ``max_events_per_job`` bounds each job's history: older events are
    trimmed from the front, so what remains is still gapless and a client
    resuming from further back is told its history was ``truncated``.
    """

    def __init__(self, path: str, *, max_events_per_job: int = 10_000, timeout: float = 10.0):
        self.path = path
        self.max_events_per_job = max_events_per_job
        self.timeout = timeout
        self._lock = threading.RLock()
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so a write
        # transaction takes the lock up front (IMMEDIATE) and the
        # compare-and-set on seq cannot race another process.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # Files from earlier versions: add the columns they lack.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "cancel_reason" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN cancel_reason TEXT")
        if "updated_at" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN updated_at REAL NOT NULL DEFAULT 0")
        if "cancel_requested_at" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN cancel_requested_at REAL")
        if "parent_id" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN parent_id TEXT")
        # Only children are indexed (a partial index): other jobs cost nothing.
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_id, created_at)"
            " WHERE parent_id IS NOT NULL"
        )
        self._db.execute("DROP INDEX IF EXISTS jobs_status_updated")  # see jobs_status

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is closed")
        return self._db

    @_locked
    def append(self, events: Sequence[dict[str, Any]], state: JobState) -> str | None:
        if not events:
            return None
        cancel_reason = None
        first = events[0]["seq"]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # The compare-and-set on seq is the UPDATE's own WHERE; owner and
            # created_at never change, so their indexes are left alone (two
            # fewer pages written per commit).
            if first == 1:
                try:
                    conn.execute(
                        "INSERT INTO jobs (owner, status, created_at, finished_at, updated_at,"
                        " seq, state, job_id, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            state.owner,
                            state.status.value,
                            state.created_at,
                            state.finished_at,
                            state.updated_at,
                            state.seq,
                            dumps(state.to_record()),
                            state.job_id,
                            state.parent_id,
                        ),
                    )
                except sqlite3.IntegrityError:
                    raise self._conflict(conn, state.job_id, first) from None
            else:
                # RETURNING: the pending cancellation comes back with the write.
                # A column named in SET has its index entries rewritten even
                # when the value is the same, so the status index is named
                # only by the commits that can change it: a progress report's
                # commit then writes two pages (the job's row, its event).
                if all(e["type"] in _STATUS_KEPT for e in events):
                    sql, changed = _UPDATE_PROGRESS, ()
                else:
                    sql, changed = _UPDATE_STATUS, (state.status.value, state.finished_at)
                updated = conn.execute(
                    sql,
                    (
                        *changed,
                        state.updated_at,
                        state.seq,
                        dumps(state.to_record()),
                        state.job_id,
                        first - 1,
                    ),
                )
                rows = updated.fetchall()
                if len(rows) != 1:
                    raise self._conflict(conn, state.job_id, first)
                cancel_reason = rows[0][0]
            conn.executemany(
                "INSERT INTO events (job_id, seq, event) VALUES (?, ?, ?)",
                [(state.job_id, e["seq"], dumps(e)) for e in events],
            )
            if state.seq > self.max_events_per_job:
                conn.execute(
                    "DELETE FROM events WHERE job_id = ? AND seq <= ?",
                    (state.job_id, state.seq - self.max_events_per_job),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cancel_reason

    @staticmethod
    def _conflict(conn: sqlite3.Connection, job_id: str, first: int) -> SeqConflict:
        row = conn.execute("SELECT seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return SeqConflict(job_id, first - 1, row[0] if row else None)

    @staticmethod
    def _state(row: tuple) -> JobState:
        state = decode_state(row[0])
        state.cancel_requested = row[1]
        return state

    @_locked
    def get(self, job_id: str) -> JobState | None:
        row = (
            self._conn()
            .execute("SELECT state, cancel_reason FROM jobs WHERE job_id = ?", (job_id,))
            .fetchone()
        )
        return self._state(row) if row else None

    @_locked
    def request_cancel(self, job_id: str, reason: str, requested_at: float | None = None) -> bool:
        cur = self._conn().execute(
            "UPDATE jobs SET cancel_reason = COALESCE(cancel_reason, ?),"
            " cancel_requested_at = COALESCE(cancel_requested_at, ?)"
            " WHERE job_id = ? AND status IN ('queued', 'running')",
            (reason, time.time() if requested_at is None else requested_at, job_id),
        )
        return cur.rowcount > 0

    @_locked
    def cancel_overdue(self, requested_before: float) -> list[str]:
        # status first: the status index narrows it to the unfinished jobs
        rows = self._conn().execute(
            "SELECT job_id FROM jobs WHERE status IN ('queued', 'running')"
            " AND cancel_reason IS NOT NULL AND cancel_requested_at < ?",
            (requested_before,),
        )
        return [r[0] for r in rows]

    @_locked
    def cancel_reason(self, job_id: str) -> str | None:
        row = (
            self._conn()
            .execute("SELECT cancel_reason FROM jobs WHERE job_id = ?", (job_id,))
            .fetchone()
        )
        return row[0] if row else None

    @_locked
    def events_since(self, job_id: str, since: int = 0, limit: int | None = None) -> list[dict]:
        rows = self._conn().execute(
            "SELECT event FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, since, -1 if limit is None else limit),
        )
        return [loads(r[0]) for r in rows]

    @_locked
    def first_seq(self, job_id: str) -> int | None:
        row = (
            self._conn()
            .execute("SELECT MIN(seq) FROM events WHERE job_id = ?", (job_id,))
            .fetchone()
        )
        return row[0]

    @staticmethod
    def _where(owner: str | None, status: Sequence[JobStatus] | None) -> tuple[str, list]:
        clauses, args = [], []
        if owner is not None:
            clauses.append("owner = ?")
            args.append(owner)
        if status:
            clauses.append(f"status IN ({', '.join('?' * len(status))})")
            args.extend(JobStatus(s).value for s in status)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    @_locked
    def list_jobs(self, owner=None, status=None, limit=50, offset=0) -> list[JobState]:
        where, args = self._where(owner, status)
        rows = self._conn().execute(
            f"SELECT state, cancel_reason FROM jobs{where}"
            " ORDER BY created_at DESC, job_id LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [self._state(r) for r in rows]

    @_locked
    def list_children(self, parent_id: str) -> list[JobState]:
        rows = self._conn().execute(
            "SELECT state, cancel_reason FROM jobs WHERE parent_id = ? ORDER BY created_at, rowid",
            (parent_id,),
        )
        return [self._state(r) for r in rows]

    @_locked
    def count_jobs(self, owner=None, status=None) -> int:
        where, args = self._where(owner, status)
        return self._conn().execute(f"SELECT COUNT(*) FROM jobs{where}", args).fetchone()[0]

    @_locked
    def stalled(self, updated_before: float) -> list[str]:
        rows = self._conn().execute(
            "SELECT job_id FROM jobs WHERE status = 'running' AND updated_at < ?",
            (updated_before,),
        )
        return [r[0] for r in rows]

    @_locked
    def prune(self, finished_before: float) -> int:
        conn = self._conn()
        terminal = [s.value for s in TERMINAL]
        marks = ", ".join("?" * len(terminal))
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT job_id FROM jobs WHERE status IN ({marks}) AND finished_at < ?",
                    (*terminal, finished_before),
                )
            ]
            conn.executemany("DELETE FROM events WHERE job_id = ?", [(i,) for i in ids])
            conn.executemany("DELETE FROM jobs WHERE job_id = ?", [(i,) for i in ids])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(ids)

    @_locked
    def add_run(
        self, kind: str, run: Mapping[str, Any], keep: int, max_age: float | None = None
    ) -> None:
        job_id, finished_at = run_fields(kind, run)
        if keep <= 0:
            return
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO runs (kind, job_id, finished_at, record) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, job_id) DO UPDATE"
                " SET finished_at = excluded.finished_at, record = excluded.record",
                (kind, job_id, finished_at, dumps(dict(run))),
            )
            if max_age is not None:
                conn.execute("DELETE FROM runs WHERE finished_at < ?", (finished_at - max_age,))
            conn.execute(
                "DELETE FROM runs WHERE rowid IN (SELECT rowid FROM runs WHERE kind = ?"
                " ORDER BY finished_at DESC, job_id DESC LIMIT -1 OFFSET ?)",
                (kind, keep),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @_locked
    def runs(self, kind: str, limit: int, since: float | None = None) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        rows = self._conn().execute(
            "SELECT record FROM runs WHERE kind = ?"
            + ("" if since is None else " AND finished_at >= ?")
            + " ORDER BY finished_at DESC, job_id DESC LIMIT ?",
            (kind, limit) if since is None else (kind, since, limit),
        )
        return [loads(r[0]) for r in rows]

    @_locked
    def history_kinds(self) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT kind, COUNT(*), MAX(finished_at) FROM runs GROUP BY kind"
        )
        kinds = [{"kind": k, "runs": n, "last_finished_at": last} for k, n, last in rows]
        return sorted(kinds, key=lambda entry: entry["kind"])

    @_locked
    def reset_history(self, kind: str | None = None) -> int:
        if kind is None:
            return self._conn().execute("DELETE FROM runs").rowcount
        return self._conn().execute("DELETE FROM runs WHERE kind = ?", (kind,)).rowcount

    @_locked
    def ping(self) -> None:
        self._conn().execute("SELECT 1").fetchone()

    def manual_checkpoints(self) -> None:
        """Stop SQLite checkpointing the WAL inside commits; the caller now
        runs :meth:`checkpoint` itself, best from another OS thread.

        An automatic checkpoint copies the WAL into the database file and
        fsyncs it inside whichever commit crosses 1,000 WAL pages: a few
        milliseconds during which an event loop (eventlet, gevent) delivers
        nothing. The server does it in a native thread instead
        (progresscast/flask/background.py)."""
        with self._lock:
            self._conn().execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> tuple[int, int] | None:
        """Checkpoint the WAL now; return (frames in the WAL, frames moved)."""
        # A connection of its own, opened for this call: it may run in another
        # OS thread, so it shares no connection object and takes none of this
        # store's (possibly green) locks. PASSIVE never waits for the writer.
        if self._db is None or self.path == ":memory:":
            return None
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            _busy, frames, moved = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            db.close()
        return frames, moved

    @_locked
    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

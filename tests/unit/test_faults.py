"""Faults: a store that goes away mid-job, and pipelines that die (stalled jobs)."""

from __future__ import annotations

import pytest

from progresscast import JobStatus, ProgressTracker
from progresscast.stores.redis import RedisStore
from tests.harness import RedisServer

from .fakes import DOC_STAGES, T0, FakeClock, RecordingEmitter


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server this test may stop and start."""
    server = RedisServer(tmp_path, persistent=True).start()
    yield server
    server.stop()


def test_a_pipeline_survives_its_store_going_away_and_ends_on_the_truth(own_redis):
    store = RedisStore(own_redis.url, socket_timeout=0.5)
    sockets = RecordingEmitter()
    tracker = ProgressTracker(store, sockets)
    mono = FakeClock(0.0)
    restarts = []

    def sleep(seconds):  # the emitter's retry pause: bring Redis back the first time
        if not restarts:
            restarts.append(seconds)
            own_redis.start(own_redis.port)

    job = tracker.job("import", DOC_STAGES, owner="alice", clock=mono, min_interval=0.1)
    job._sleep = sleep
    with job.stage("parsing", total=10):
        for _ in range(5):
            mono.advance(0.2)
            job.advance()
    own_redis.stop()
    # Redis is down: progress, stage changes and the end must not raise.
    for _ in range(5):
        mono.advance(0.2)
        job.advance()
    job.stage("analyzing", total=4)
    for _ in range(4):
        mono.advance(0.2)
        job.advance()
    job.complete({"rows": 4})  # retried until Redis is back

    assert restarts, "the terminal event was retried"
    state = tracker.get(job.job_id)
    assert state.status is JobStatus.COMPLETED and state.result == {"rows": 4}
    events = store.events_since(job.job_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # the lost stage change was caught up by the state machine later on
    assert [s.value for s in state.stage_status] == [
        "completed", "completed", "skipped", "skipped"]  # fmt: skip
    store.close()


def test_a_terminal_event_is_dropped_after_the_retry_window(own_redis, caplog):
    store = RedisStore(own_redis.url, socket_timeout=0.5)
    tracker = ProgressTracker(store)
    job = tracker.job("import", DOC_STAGES, owner="alice", clock=FakeClock(0.0))
    job.terminal_retry_seconds = 0.3
    own_redis.stop()

    job.complete()  # must return, not raise

    assert job.finished
    assert "giving up" in caplog.text
    own_redis.start(own_redis.port)
    assert tracker.get(job.job_id).status is JobStatus.RUNNING  # stall detection's turn
    store.close()


def test_fail_stalled_ends_silent_jobs_only(tracker, clock):
    silent = tracker.job("silent", DOC_STAGES, owner="alice")
    clock.advance(100)
    alive = tracker.job("alive", DOC_STAGES, owner="alice")
    queued = tracker.create_job("waiting", DOC_STAGES, owner="alice")
    clock.advance(250)

    assert tracker.fail_stalled(300) == [silent.job_id]

    state = tracker.get(silent.job_id)
    assert state.status is JobStatus.FAILED
    assert state.error["type"] == "stalled" and "300 s" in state.error["message"]
    assert state.error["stage"] == "parsing"
    assert tracker.get(alive.job_id).status is JobStatus.RUNNING
    assert tracker.get(queued.job_id).status is JobStatus.QUEUED
    assert tracker.fail_stalled(300) == []  # idempotent


def test_fail_stalled_leaves_a_job_that_moves_on_meanwhile(tracker, clock, store):
    job = tracker.job("racy", DOC_STAGES, owner="alice")
    clock.advance(1000)
    real_stalled = store.stalled

    def stalled_then_progress(cutoff):
        ids = real_stalled(cutoff)
        # the pipeline speaks up between the scan and the write
        tracker.record(job.job_id, "progress_update", stage_progress=50)
        return ids

    store.stalled = stalled_then_progress
    try:
        tracker.fail_stalled(300)
    finally:
        store.stalled = real_stalled
    assert tracker.get(job.job_id).status is JobStatus.RUNNING


def test_the_pipeline_of_a_stalled_job_is_told_when_it_speaks_again(tracker, clock):
    from progresscast import Conflict

    job = tracker.job("late", DOC_STAGES, owner="alice")
    clock.advance(1000)
    tracker.fail_stalled(300)
    with pytest.raises(Conflict, match="failed"):
        job.stage("analyzing")
    _ = T0

"""Cancellation: a request is stored beside the state, the emitter notices it
within ``min_interval`` or at the next stage change and stops the pipeline."""

import pytest

from progresscast import Conflict, JobCancelled, JobStatus

from .fakes import DOC_STAGES


def start(tracker, mono):
    return tracker.job("report", DOC_STAGES, owner="alice", clock=mono)


def kinds(tracker, job_id):
    return [e["type"] for e in tracker.store.events_since(job_id)]


def test_a_queued_job_is_cancelled_at_once(tracker, sockets):
    state = tracker.create_job("later", ["a"], owner="alice")

    after = tracker.request_cancel(state.job_id, "not needed")

    assert after.status is JobStatus.CANCELLED
    assert kinds(tracker, state.job_id) == ["job_queued", "job_cancelled"]
    assert sockets.events[-1]["type"] == "job_cancelled"
    assert sockets.events[-1]["reason"] == "not needed"


def test_a_running_job_gets_the_request_without_an_event(tracker, mono):
    job = start(tracker, mono)

    state = tracker.request_cancel(job.job_id, "user pressed cancel")

    assert state.status is JobStatus.RUNNING and state.cancel_requested == "user pressed cancel"
    assert state.snapshot()["cancel_requested"] == "user pressed cancel"
    assert kinds(tracker, job.job_id) == ["job_started"]  # no seq taken


def test_the_emitter_notices_within_min_interval_and_the_with_block_ends(tracker, mono):
    reached = []
    with start(tracker, mono) as job, job.stage("parsing", total=1000):
        for i in range(1000):
            if i == 10:
                tracker.request_cancel(job.job_id, "stop")
            mono.advance(0.01)  # 10 calls per min_interval
            job.advance()
            reached.append(i)

    # advance() number `stopped` raised: the first report due after the request,
    # at most one min_interval (10 calls) later
    stopped = len(reached)
    assert 10 <= stopped <= 10 + 0.1 / 0.01 + 1
    assert job.cancelled and job.finished
    state = tracker.get(job.job_id)
    assert state.status is JobStatus.CANCELLED and state.stage == "parsing"
    events = tracker.store.events_since(job.job_id)
    assert events[-1]["type"] == "job_cancelled" and events[-1]["reason"] == "stop"
    # the pipeline's last numbers rode along with the cancellation
    assert state.stage_pct[0] == pytest.approx(100 * (stopped + 1) / 1000)


def test_progress_reports_learn_of_a_request_from_their_own_write(tracker, mono):
    # A store read per report would add a query to every update; the request
    # comes back with the report's own write instead.
    reads = []
    read = tracker.store.cancel_reason
    tracker.store.cancel_reason = lambda job_id: reads.append(job_id) or read(job_id)
    job = start(tracker, mono)
    job.stage("parsing", total=1000)
    reads.clear()
    for i in range(1, 501):
        mono.advance(0.1)  # a report is due at every clock check
        job.update(i)
    reports = len(tracker.store.events_since(job.job_id)) - 1
    assert reports > 100 and reads == []

    tracker.request_cancel(job.job_id, "stop")
    with pytest.raises(JobCancelled):
        for i in range(501, 1000):
            mono.advance(0.1)
            job.update(i)
    events = tracker.store.events_since(job.job_id)
    # the first report after the request found it, and the job ended right there
    assert [e["type"] for e in events[-2:]] == ["progress_update", "job_cancelled"]
    assert len(events) - 1 - reports == 2 and reads == []
    assert tracker.get(job.job_id).status is JobStatus.CANCELLED


def test_a_stage_change_checks_for_cancellation(tracker, mono):
    job = start(tracker, mono)
    tracker.request_cancel(job.job_id, "stop")

    with pytest.raises(JobCancelled) as info:
        job.stage("analyzing")

    assert info.value.reason == "stop" and info.value.job_id == job.job_id
    assert kinds(tracker, job.job_id) == ["job_started", "job_cancelled"]


def test_check_cancelled_for_long_stretches_without_progress(tracker, mono):
    job = start(tracker, mono)
    job.check_cancelled()  # nothing requested: no-op
    tracker.request_cancel(job.job_id, "stop")

    with pytest.raises(JobCancelled):
        job.check_cancelled()
    assert tracker.get(job.job_id).status is JobStatus.CANCELLED


def test_cancelling_an_ended_job_is_a_conflict(tracker, mono):
    with start(tracker, mono) as job:
        pass

    with pytest.raises(Conflict):
        tracker.request_cancel(job.job_id)
    assert tracker.get(job.job_id).cancel_requested is None


def test_a_second_request_keeps_the_first_reason(tracker, mono):
    job = start(tracker, mono)
    tracker.request_cancel(job.job_id, "first")
    assert tracker.request_cancel(job.job_id, "second").cancel_requested == "first"


def test_the_request_survives_a_store_reopen(tracker, mono, tmp_path):
    from progresscast import SQLiteStore

    job = start(tracker, mono)
    tracker.request_cancel(job.job_id, "stop")
    job.advance()  # an ordinary write after the request must not erase it
    mono.advance(1)
    reopened = SQLiteStore(tracker.store.path)
    try:
        assert reopened.cancel_reason(job.job_id) == "stop"
    finally:
        reopened.close()

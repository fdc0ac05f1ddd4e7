"""No job stays running without a live pipeline: a server's restart fails the
jobs its own earlier run ran in-process, and a cancellation request that no
pipeline acknowledges ends the job after a grace period."""

from __future__ import annotations

import pytest

from progresscast import Conflict, JobStatus, ProgressTracker

from .fakes import DOC_STAGES, FakeClock


def kinds(tracker, job_id):
    return [e["type"] for e in tracker.store.events_since(job_id)]


@pytest.fixture
def server(store, sockets, clock) -> ProgressTracker:
    """The tracker of a server named "web-1" (its SERVER_ID)."""
    return ProgressTracker(store, sockets, clock=clock, runner="web-1")


def restarted(server: ProgressTracker, runner: str = "web-1") -> ProgressTracker:
    """The same server's next run: a new tracker on the same store."""
    return ProgressTracker(server.store, server.emitter, clock=server.clock, runner=runner)


def test_a_restart_fails_the_jobs_the_last_run_ran_in_process(server, sockets, clock, mono):
    running = server.job("report", DOC_STAGES, owner="alice", clock=mono)
    running.update(50, 100)  # moves on a little
    queued_then_started = server.create_job("later", ["a"], owner="alice")
    server.start(queued_then_started.job_id)
    clock.advance(5)

    after = restarted(server)
    failed = after.fail_interrupted(started_before=clock())

    assert sorted(failed) == sorted([running.job_id, queued_then_started.job_id])
    for job_id in failed:
        state = after.get(job_id)
        assert state.status is JobStatus.FAILED
        assert state.error["type"] == "interrupted"
        assert "restarted" in state.error["message"]
        assert kinds(after, job_id)[-1] == "job_failed"  # an event with its seq, published
    assert sockets.events[-1]["type"] == "job_failed"
    assert sockets.events[-1]["error"]["type"] == "interrupted"
    # The old pipeline, were it alive, gets conflict on its next report.
    with pytest.raises(Conflict):
        server.record(running.job_id, "progress_update", stage_progress=60)


def test_a_restart_leaves_other_jobs_alone(server, clock, mono):
    other_server = restarted(server, runner="web-2").job("b", ["a"], owner="alice", clock=mono)
    worker = ProgressTracker(server.store, clock=clock)  # no runner: a worker process
    worker_job = worker.job("w", ["a"], owner="alice", clock=mono)
    http_job = server.create_job("http", ["a"], owner="alice", start=True)  # over HTTP
    queued = server.create_job("q", ["a"], owner="alice")  # nobody runs it yet
    done = server.job("d", ["a"], owner="alice", clock=mono)
    done.complete()

    assert restarted(server).fail_interrupted(started_before=clock() + 1) == []
    for job in (other_server, worker_job, http_job):
        assert server.get(job.job_id).status is JobStatus.RUNNING
    assert server.get(queued.job_id).status is JobStatus.QUEUED


def test_jobs_started_by_the_new_run_are_not_interrupted(server, clock, mono):
    boot = clock()
    clock.advance(1)
    fresh = restarted(server)
    job = fresh.job("new", ["a"], owner="alice", clock=mono)
    assert fresh.fail_interrupted(started_before=boot) == []
    assert fresh.get(job.job_id).status is JobStatus.RUNNING


def test_an_unacknowledged_cancel_ends_the_job_after_the_grace(server, sockets, clock, mono):
    job = server.job("report", DOC_STAGES, owner="alice", clock=mono)
    server.request_cancel(job.job_id, "user pressed cancel")
    clock.advance(9)
    assert server.cancel_overdue(10) == []  # still within the grace
    assert server.get(job.job_id).status is JobStatus.RUNNING

    clock.advance(2)
    assert server.cancel_overdue(10) == [job.job_id]
    state = server.get(job.job_id)
    assert state.status is JobStatus.CANCELLED
    event = sockets.events[-1]
    assert event["type"] == "job_cancelled" and event["seq"] == state.seq
    assert event["reason"].startswith("user pressed cancel")
    assert "did not stop within 10 s" in event["reason"]
    assert server.cancel_overdue(10) == []  # once
    with pytest.raises(Conflict):  # the pipeline, reporting late
        server.record(job.job_id, "progress_update", stage_progress=10)


def test_a_pipeline_that_acknowledges_in_time_ends_it_itself(server, clock, mono):
    job = server.job("report", DOC_STAGES, owner="alice", clock=mono)
    server.request_cancel(job.job_id, "stop")
    mono.advance(1)
    with job:
        job.update(1, 10)  # learns of the request with its write: job_cancelled
    clock.advance(60)
    assert server.cancel_overdue(10) == []
    assert kinds(server, job.job_id) == ["job_started", "progress_update", "job_cancelled"]


def test_cancel_overdue_is_safe_from_two_instances(store, sockets):
    clock = FakeClock()
    one = ProgressTracker(store, sockets, clock=clock)
    two = ProgressTracker(store, sockets, clock=clock)
    job = one.job("report", ["a"], owner="alice")
    one.request_cancel(job.job_id, "stop")
    clock.advance(30)
    ended = one.cancel_overdue(10) + two.cancel_overdue(10)
    assert ended == [job.job_id]
    assert kinds(one, job.job_id) == ["job_started", "job_cancelled"]

"""progresscast.celery without a worker: the send option, settings, and the
whole signal lifecycle run eagerly (``task_always_eager``: Celery runs the
task in this process, through the same tracer and signals as a worker).
tests/integration/test_celery.py runs real workers."""

from __future__ import annotations

import pytest

pytest.importorskip("celery")

from celery import Celery
from celery.worker import state as worker_state

from progresscast import InvalidPayload, JobStatus
from progresscast import celery as pc_celery
from progresscast.celery import ProgressTask, get_tracker

VIDEO = [("download", 1), ("transcode", 3)]


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.delenv("PROGRESSCAST_STORE_URL", raising=False)
    monkeypatch.delenv("PROGRESSCAST_MESSAGE_QUEUE_URL", raising=False)
    # Tasks here are declared shared=False: Celery registers a shared task in
    # every app finalized later in the process, and these test apps' tasks
    # share names (a later app, e.g. tests/integration's, would warn).
    app = Celery("unit", set_as_current=False)
    app.conf.update(
        broker_url="memory://",
        task_always_eager=True,
        progresscast_store_url=f"sqlite:///{tmp_path / 'progress.db'}",
    )
    yield app
    pc_celery._close_trackers()
    app.close()


def events(app, job_id: str) -> list[dict]:
    return get_tracker(app).store.events_since(job_id)


def kinds(app, job_id: str) -> list[str]:
    return [e["type"] for e in events(app, job_id)]


def test_the_job_is_created_at_send_under_the_task_id_and_ended_by_the_signals(app):
    @app.task(shared=False, base=ProgressTask, bind=True, stages=VIDEO)
    def transcode(self, frames):
        with self.progress.stage("download"):
            pass
        with self.progress.stage("transcode", total=frames):
            for _ in range(frames):
                self.progress.advance()
        return {"frames": frames}

    result = transcode.apply_async(
        (5,), progress={"owner": "alice", "name": "Video 7", "metadata": {"video": 7}}
    )

    assert result.state == "SUCCESS"
    history = events(app, result.id)
    assert [e["type"] for e in history] == [
        "job_queued",
        "job_started",
        "stage_completed",
        "stage_completed",
        "job_completed",
    ]
    queued = history[0]
    assert queued["owner"] == "alice" and queued["name"] == "Video 7"
    assert queued["metadata"] == {"video": 7}
    assert [(s["name"], s["weight"]) for s in queued["stages"]] == [
        ("download", 0.25),
        ("transcode", 0.75),
    ]
    assert history[-1]["result"] == {"frames": 5}


def test_the_name_defaults_to_progress_name_then_to_the_task_name(app):
    @app.task(shared=False, base=ProgressTask, name="videos.thumbnail")
    def thumbnail():
        pass

    @app.task(shared=False, base=ProgressTask, progress_name="Thumbnails")
    def thumbnails():
        pass

    first = thumbnail.apply_async(progress={"owner": "alice"})
    second = thumbnails.apply_async(progress={"owner": "alice"})
    assert events(app, first.id)[0]["name"] == "videos.thumbnail"
    assert events(app, second.id)[0]["name"] == "Thumbnails"
    assert [s["name"] for s in events(app, first.id)[0]["stages"]] == ["run"]  # the default


def test_stages_can_be_given_at_send(app):
    @app.task(shared=False, base=ProgressTask, bind=True, stages=VIDEO)
    def convert(self):
        self.progress.stage("b")

    result = convert.apply_async(
        progress={"owner": "alice", "stages": [["a", 1], ["b", 1]]}  # lists, as in JSON
    )
    assert [s["name"] for s in events(app, result.id)[0]["stages"]] == ["a", "b"]
    assert kinds(app, result.id)[-1] == "job_completed"


@pytest.mark.parametrize(
    ("progress", "error", "words"),
    [
        (None, ValueError, "apply_async(args, progress={'owner': user_id"),
        ({"name": "x"}, TypeError, "progress['owner'] must be the owner's user id"),
        ({"owner": 42}, TypeError, "as a non-empty string"),
        ({"owner": "alice", "colour": "red"}, TypeError, "unknown key(s) 'colour'"),
        ({"owner": "alice", "metadata": [1]}, TypeError, "progress['metadata'] must be a dict"),
        ("alice", TypeError, "progress must be a dict"),
    ],
)
def test_a_send_without_a_proper_owner_is_refused_and_stores_nothing(app, progress, error, words):
    @app.task(shared=False, base=ProgressTask)
    def report():
        pass

    with pytest.raises(error) as info:
        report.apply_async(progress=progress, task_id="refused")
    assert words in str(info.value)
    assert get_tracker(app).store.get("refused") is None


def test_delay_has_no_owner_and_says_how_to_send(app):
    @app.task(shared=False, base=ProgressTask)
    def report():
        pass

    with pytest.raises(ValueError, match="is a ProgressTask: its job needs an owner"):
        report.delay()


def test_a_bad_stage_declaration_fails_before_anything_is_sent(app):
    @app.task(shared=False, base=ProgressTask, stages=[("download", -1)])
    def broken():
        pass

    with pytest.raises(InvalidPayload, match="weight must be positive"):
        broken.name  # noqa: B018  (Celery creates the task class here)


def test_a_send_that_fails_fails_the_job(app):
    app.conf.task_always_eager = False  # a real send, to the in-memory broker

    @app.task(shared=False, base=ProgressTask)
    def report(thing):
        pass

    with pytest.raises(Exception, match="not JSON serializable"):
        report.apply_async((object(),), progress={"owner": "alice"}, task_id="unsent")
    failed = events(app, "unsent")[-1]
    assert failed["type"] == "job_failed" and failed["error"]["type"] == "not_sent"
    assert failed["error"]["message"].startswith("the task was not sent: ")


def test_a_result_that_is_not_plain_json_is_kept_as_its_repr(app):
    @app.task(shared=False, base=ProgressTask)
    def odd():
        return {"tags": {"a"}}

    result = odd.apply_async(progress={"owner": "alice"})
    assert events(app, result.id)[-1]["result"] == "{'tags': {'a'}}"


def test_a_failing_task_fails_its_job_with_the_type_message_and_stage(app):
    @app.task(shared=False, base=ProgressTask, bind=True, stages=VIDEO)
    def corrupt(self):
        with self.progress.stage("transcode", total=4):
            self.progress.advance()
            raise ValueError("corrupt frame 1")

    result = corrupt.apply_async(progress={"owner": "alice"})
    assert result.state == "FAILURE"
    failed = events(app, result.id)[-1]
    assert failed["type"] == "job_failed"
    assert failed["error"] == {"message": "corrupt frame 1", "type": "ValueError"}
    assert failed["stage"] == "transcode" and failed["stage_progress"] == 25.0


def test_a_retried_task_stays_one_job_and_catches_up_with_its_stage(app):
    @app.task(shared=False, base=ProgressTask, bind=True, stages=VIDEO, max_retries=3)
    def flaky(self):
        with self.progress.stage("download", total=2):
            self.progress.advance(2)
        with self.progress.stage("transcode", total=4):
            self.progress.advance(2)
            if self.request.retries < 2:
                raise self.retry(exc=ConnectionError("peer reset"), countdown=5)
            self.progress.advance(2)
        return self.request.retries

    result = flaky.apply_async(progress={"owner": "alice"})
    assert result.state == "SUCCESS" and result.result == 2
    history = events(app, result.id)
    assert [e["type"] for e in history].count("job_started") == 1
    notes = [e for e in history if (e.get("message") or "").startswith("retrying")]
    assert [e["message"] for e in notes] == [
        "retrying in 5s (attempt 2 of 4): ConnectionError: peer reset",
        "retrying in 5s (attempt 3 of 4): ConnectionError: peer reset",
    ]
    assert [(e["stage"], e["stage_progress"]) for e in notes] == [("transcode", 50.0)] * 2
    # The second and third runs went through "download" again without a word:
    # the job had passed it, and stages only move forward.
    assert [e["stage"] for e in history if e["type"] == "stage_completed"] == [
        "download",
        "transcode",
    ]
    assert history[-1]["type"] == "job_completed"


def test_the_retry_message_without_a_retry_limit():
    class Reason:
        exc = TimeoutError("slow")

        def humanize(self):
            return "in 3s"

    class Task:
        max_retries = None

    class Request:
        retries = 4

    assert pc_celery._retry_message(Task(), Request(), Reason()) == (
        "retrying in 3s (attempt 6): TimeoutError: slow"
    )


def test_a_cancelled_job_stops_the_task_quietly(app):
    ran_on = []

    @app.task(shared=False, base=ProgressTask, bind=True)
    def long(self):
        get_tracker(app).request_cancel(self.request.id, "enough")  # a user, meanwhile
        self.progress.check_cancelled()
        ran_on.append("after the cancel")

    result = long.apply_async(progress={"owner": "alice"})
    assert result.state == "IGNORED"  # Celery's "nothing to record": no failure, no traceback
    assert ran_on == []
    cancelled = events(app, result.id)[-1]
    assert cancelled["type"] == "job_cancelled" and cancelled["reason"] == "enough"


def test_a_task_its_worker_was_told_to_revoke_stops_at_its_next_report(app):
    """The threads pool cannot terminate a thread: revoke(terminate=True)
    only adds the id to the worker's revoked set, which the emitter reads."""

    @app.task(shared=False, base=ProgressTask, bind=True, stages=["a", "b"])
    def long(self):
        worker_state.revoked.add(self.request.id)  # what the revoke command does
        self.progress.stage("b")

    try:
        result = long.apply_async(progress={"owner": "alice"})
    finally:
        worker_state.revoked.clear()
    assert result.state == "IGNORED"
    assert kinds(app, result.id) == ["job_queued", "job_started", "job_cancelled"]
    assert events(app, result.id)[-1]["reason"] == "the task was revoked"


def test_a_task_whose_job_has_ended_does_not_run(app):
    ran = []

    @app.task(shared=False, base=ProgressTask)
    def report():
        ran.append(True)

    tracker = get_tracker(app)
    tracker.create_job("report", ["run"], owner="alice", job_id="early")
    tracker.request_cancel("early", "not needed")  # cancelled while queued

    result = report.apply(task_id="early")  # then a worker gets the message
    assert result.state == "IGNORED" and ran == []
    assert kinds(app, "early") == ["job_queued", "job_cancelled"]


def test_a_task_run_without_a_job_fails_and_says_why(app):
    @app.task(shared=False, base=ProgressTask, bind=True)
    def report(self):
        return self.progress

    result = report.apply()  # app.send_task by name would do the same: no job
    assert result.state == "FAILURE"
    assert "jobs are created when the task is sent with apply_async" in str(result.result)
    with pytest.raises(RuntimeError, match=r"self\.progress exists only while the task runs"):
        report.progress  # noqa: B018


def test_settings_come_from_the_app_then_the_environment(app, tmp_path, monkeypatch):
    assert get_tracker(app) is get_tracker(app)  # one per process and settings
    assert get_tracker(app).emitter is None  # no message queue: stored only

    bare = Celery("bare", set_as_current=False)
    with pytest.raises(RuntimeError, match="progresscast_store_url or PROGRESSCAST_STORE_URL"):
        get_tracker(bare)
    monkeypatch.setenv("PROGRESSCAST_STORE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("PROGRESSCAST_MIN_INTERVAL", "0.5")
    from_env = get_tracker(bare)
    assert from_env is not get_tracker(app) and from_env.min_interval == 0.5
    job = from_env.create_job("x", ["a"], owner="alice")
    assert from_env.get(job.job_id).status is JobStatus.QUEUED
    bare.close()


def test_a_job_the_server_ended_meanwhile_keeps_its_end(app, caplog):
    @app.task(shared=False, base=ProgressTask, bind=True)
    def slow(self):
        # The server's stall detection fails the job while the task still runs.
        get_tracker(app).record(
            self.request.id, "job_failed", error={"message": "x", "type": "stalled"}
        )
        return "late"

    result = slow.apply_async(progress={"owner": "alice"})
    assert result.state == "SUCCESS"  # the task itself is not disturbed
    assert kinds(app, result.id)[-1] == "job_failed"
    assert "had already ended" in caplog.text


def test_each_progress_task_of_a_chain_is_a_job_of_its_own(app):
    from celery import chain

    @app.task(shared=False, base=ProgressTask, bind=True, stages=["fetch"])
    def fetch(self, url):
        return len(url)

    @app.task(shared=False, base=ProgressTask, bind=True, stages=["store"])
    def store(self, size):
        return size * 2

    first = {"owner": "alice", "name": "fetch"}
    second = {"owner": "alice", "name": "store"}
    result = chain(fetch.s("abcd").set(progress=first), store.s().set(progress=second))()
    assert result.get() == 8
    assert events(app, result.id)[0]["name"] == "store"
    assert events(app, result.id)[-1]["result"] == 8
    assert events(app, result.parent.id)[-1]["result"] == 4

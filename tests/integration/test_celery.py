"""progresscast.celery with real components: a ``celery worker`` process
(prefork pool and threads pool) on a real redis-server broker, the standalone
server (gunicorn + eventlet) with Redis as its message queue and a SQLite
store shared with the worker, and a python-socketio client watching.

The tasks are in tests/integration/celery_tasks.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.harness import (
    TERMINAL,
    CeleryWorker,
    RedisServer,
    ServerProcess,
    SocketClient,
    assert_gapless,
    require_component,
    wait_until,
)

pytestmark = pytest.mark.server

try:
    from progresscast import celery as pc_celery
    from tests.integration import celery_tasks as tasks
except ImportError:  # Celery is not installed (requirements-dev.txt installs it)
    pc_celery = tasks = None

#: the stall server fails a running job without events for this long (SIGKILL test)
STALL_SECONDS = 3
#: the main server's: longer than Celery takes to notice a lost pool process
#: (its maintain_pool timer runs every 5 s), so that its own report comes first
MAIN_STALL_SECONDS = 20
#: the Celery app the workers run
TASKS = "tests.integration.celery_tasks"


class Stack:
    """redis-server (broker in db 1, results in db 2, message queue in db 0)
    and the standalone server, whose SQLite store the workers share."""

    def __init__(self, base: Path) -> None:
        self.redis = RedisServer(base).start()
        host = f"redis://127.0.0.1:{self.redis.port}"
        self.server = ServerProcess(
            base,
            env={
                "PROGRESSCAST_MESSAGE_QUEUE_URL": f"{host}/0",
                "PROGRESSCAST_STALL_SECONDS": str(MAIN_STALL_SECONDS),
                "PROGRESSCAST_STALL_CHECK_SECONDS": "0.5",
            },
        )
        self.worker_env = {
            "CELERY_BROKER_URL": f"{host}/1",
            "CELERY_RESULT_BACKEND": f"{host}/2",
            "PROGRESSCAST_STORE_URL": self.server.env["PROGRESSCAST_STORE_URL"],
            "PROGRESSCAST_MESSAGE_QUEUE_URL": f"{host}/0",
        }

    def start(self) -> Stack:
        try:
            self.server.start()
        except BaseException:
            self.redis.stop()
            raise
        # This process sends the tasks: the same URLs, from the app's config.
        tasks.app.conf.update(
            broker_url=self.worker_env["CELERY_BROKER_URL"],
            result_backend=self.worker_env["CELERY_RESULT_BACKEND"],
            progresscast_store_url=self.worker_env["PROGRESSCAST_STORE_URL"],
            progresscast_message_queue_url=self.worker_env["PROGRESSCAST_MESSAGE_QUEUE_URL"],
        )
        return self

    def stop(self) -> None:
        pc_celery._close_trackers()
        tasks.app.close()
        self.server.stop()
        self.redis.stop()

    def history(self, job_id: str) -> list[dict]:
        r = self.server.http("GET", f"/api/jobs/{job_id}/events?limit=1000")
        assert r.status_code == 200, r.text
        return r.json()["events"]

    def snapshot(self, job_id: str) -> dict:
        return self.server.http("GET", f"/api/jobs/{job_id}").json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_component(tasks is not None, "celery")
    stack = Stack(tmp_path_factory.mktemp("celery")).start()
    yield stack
    stack.stop()


@pytest.fixture
def stall_server(stack, tmp_path):
    """A second instance on the same store and queue, with a short
    STALL_SECONDS: the one whose stall detection the SIGKILL test waits for
    (only during that test: it would fail the other tests' jobs too)."""
    server = ServerProcess(
        tmp_path,
        env={
            "PROGRESSCAST_STORE_URL": stack.worker_env["PROGRESSCAST_STORE_URL"],
            "PROGRESSCAST_MESSAGE_QUEUE_URL": stack.worker_env["PROGRESSCAST_MESSAGE_QUEUE_URL"],
            "PROGRESSCAST_STALL_SECONDS": str(STALL_SECONDS),
            "PROGRESSCAST_STALL_CHECK_SECONDS": "0.5",
        },
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["prefork", "threads"])
def pool(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def worker(stack, pool, tmp_path_factory):
    """One worker per pool kind for the module's tests."""
    w = CeleryWorker(tmp_path_factory.mktemp(pool), TASKS, pool, f"main-{pool}", stack.worker_env)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def client(stack):
    """alice's socket, watching all her jobs before anything is sent."""
    c = SocketClient(stack.server.url, "alice")
    assert c.call("watch_jobs")["ok"]
    yield c
    c.close()


def send(task, *args, queue: str, **progress):
    return task.apply_async(args, queue=queue, progress={"owner": "alice", **progress})


def events_until(client: SocketClient, job_id: str, kind: str, timeout: float = 20) -> list[dict]:
    """This job's events up to the first of type ``kind``."""
    got: list[dict] = []
    while not got or got[-1]["type"] != kind:
        event = client.next_event(timeout)
        if event["job_id"] == job_id:
            got.append(event)
            assert event["type"] not in TERMINAL or kind in TERMINAL, got
    return got


def celery_state(result, state: str, timeout: float = 20) -> None:
    wait_until(lambda: result.state == state, timeout, what=f"celery state {state}")


def test_a_task_is_one_job_from_queued_to_completed_seen_live(stack, worker, client):
    result = send(
        tasks.transcode, 8, 0.02, queue=worker.queue, name="Video 42", metadata={"video": 42}
    )
    # The job exists as soon as the send returns, under the task's id.
    first = stack.history(result.id)[0]
    assert first["seq"] == 1 and first["type"] == "job_queued"
    assert first["job_id"] == result.id
    assert first["owner"] == "alice" and first["name"] == "Video 42"
    assert first["metadata"] == {"video": 42}
    assert [s["name"] for s in first["stages"]] == ["download", "transcode"]
    assert [s["weight"] for s in first["stages"]] == [0.25, 0.75]

    live = client.events_until_terminal(result.id, timeout=30)
    assert live == stack.history(result.id)  # the whole history arrived live, in order
    assert_gapless(live)
    kinds = [e["type"] for e in live]
    assert kinds[:2] == ["job_queued", "job_started"] and kinds[-1] == "job_completed"
    assert [e["stage"] for e in live if e["type"] == "stage_completed"] == [
        "download",
        "transcode",
    ]
    assert set(kinds[2:-1]) <= {"progress_update", "stage_completed"}
    progress = [e["progress"] for e in live if "progress" in e]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert live[-1]["result"] == {"frames": 8}
    celery_state(result, "SUCCESS")
    assert result.result == {"frames": 8}
    job = stack.snapshot(result.id)
    assert job["status"] == "completed" and job["result"] == {"frames": 8}


def test_a_job_is_queued_until_a_worker_takes_it_and_a_cancelled_one_never_runs(
    stack, worker, client
):
    held = f"held-{worker.pool}"  # no worker consumes it yet
    result = send(tasks.transcode, 4, 0.02, queue=held)
    job = stack.snapshot(result.id)
    assert job["status"] == "queued" and job["owner"] == "alice"
    assert job["name"] == "Transcode"  # the task's progress_name
    assert client.next_event(10)["type"] == "job_queued"

    ack = client.call("cancel_job", {"job_id": result.id, "reason": "changed my mind"})
    assert ack == {"ok": True, "status": "cancelled"}
    # Now a worker takes the message: the task sees its job is over and does not run.
    replies = tasks.app.control.add_consumer(
        held, destination=[worker.name], reply=True, timeout=10
    )
    assert replies, "the worker did not answer add_consumer"
    celery_state(result, "REVOKED")
    assert [e["type"] for e in stack.history(result.id)] == ["job_queued", "job_cancelled"]
    assert stack.snapshot(result.id)["status"] == "cancelled"


def test_a_task_revoked_before_a_worker_takes_it_never_runs_and_its_job_is_cancelled(
    stack, worker, client
):
    held = f"held-for-revoke-{worker.pool}"
    result = send(tasks.transcode, 4, 0.02, queue=held)
    result.revoke()  # the worker remembers the id...
    wait_until(
        lambda: tasks.app.control.add_consumer(
            held, destination=[worker.name], reply=True, timeout=5
        ),
        20,
        what="the worker to consume " + held,
    )
    # ...and when it gets the message, the task is skipped (task_revoked)
    events = client.events_until_terminal(result.id, timeout=20)
    assert [e["type"] for e in events] == ["job_queued", "job_cancelled"]
    assert events[-1]["reason"] == "the task was revoked before it ran"
    celery_state(result, "REVOKED")


def test_each_task_of_a_chain_is_a_job_of_its_own(stack, worker, client):
    from celery import chain

    links = chain(
        tasks.transcode.s(3, 0.01).set(queue=worker.queue, progress={"owner": "alice"}),
        tasks.publish.s(0.01).set(queue=worker.queue, progress={"owner": "alice"}),
    )
    result = links.apply_async()
    first, last = result.parent.id, result.id
    # The second job is created when the worker sends the second task.
    ended = client.events_by_job_until_terminal([first, last], timeout=30)
    assert ended[first][-1]["result"] == {"frames": 3}
    assert ended[last][0]["type"] == "job_queued" and ended[last][0]["name"].endswith("publish")
    assert ended[last][-1]["result"] == "published 3 frames"
    celery_state(result, "SUCCESS")


def test_a_failing_task_fails_its_job_with_the_error_type_and_stage(stack, worker, client):
    result = send(tasks.corrupt, 0.02, queue=worker.queue)
    live = client.events_until_terminal(result.id, timeout=30)
    assert live == stack.history(result.id)
    assert_gapless(live)
    failed = live[-1]
    assert failed["type"] == "job_failed"
    assert failed["error"] == {"type": "ValueError", "message": "corrupt frame 3"}
    assert failed["stage"] == "transcode"
    assert failed["stage_progress"] == 30.0  # 3 of 10 frames: the last numbers, flushed
    job = stack.snapshot(result.id)
    assert job["error"] == {**failed["error"], "stage": "transcode"}
    celery_state(result, "FAILURE")


def test_a_retried_task_stays_one_running_job_and_completes(stack, worker, client):
    result = send(tasks.flaky, 2, 0.02, queue=worker.queue)
    live = client.events_until_terminal(result.id, timeout=30)
    assert live == stack.history(result.id)
    assert_gapless(live)
    kinds = [e["type"] for e in live]
    assert kinds.count("job_queued") == kinds.count("job_started") == 1
    retries = [
        e for e in live if e["type"] == "progress_update" and "retrying" in (e["message"] or "")
    ]
    assert [e["message"] for e in retries] == [
        "retrying in 0.2s (attempt 2 of 4): ConnectionError: peer reset",
        "retrying in 0.2s (attempt 3 of 4): ConnectionError: peer reset",
    ]
    assert {e["stage"] for e in retries} == {"transcode"}
    assert retries[0]["stage_progress"] == 50.0  # where the failed attempt was
    # Each stage completed once: the retries caught up with the job's stage.
    assert [e["stage"] for e in live if e["type"] == "stage_completed"] == [
        "download",
        "transcode",
    ]
    assert live[-1]["type"] == "job_completed"
    assert live[-1]["result"] == "done after 2 retries"
    celery_state(result, "SUCCESS")


def test_cancel_from_a_client_stops_the_task_at_its_next_advance(stack, worker, client):
    result = send(tasks.endless, 3000, 0.02, queue=worker.queue)
    seen = events_until(client, result.id, "progress_update")  # it is really running
    ack = client.call("cancel_job", {"job_id": result.id, "reason": "stop it"})
    assert ack == {"ok": True, "status": "running"}
    seen += client.events_until_terminal(result.id, timeout=15)
    cancelled = seen[-1]
    assert cancelled["type"] == "job_cancelled" and cancelled["reason"] == "stop it"
    # The task ended quietly: REVOKED, not a FAILURE with a traceback.
    celery_state(result, "REVOKED")
    assert seen == stack.history(result.id)
    assert_gapless(seen)
    assert "JobCancelled" not in worker.log()


def test_revoke_with_terminate_cancels_the_job(stack, worker, client):
    result = send(tasks.endless, 3000, 0.02, queue=worker.queue)
    seen = events_until(client, result.id, "progress_update")
    result.revoke(terminate=True)
    seen += client.events_until_terminal(result.id, timeout=15)
    cancelled = seen[-1]
    assert cancelled["type"] == "job_cancelled", seen
    assert "revoked" in cancelled["reason"]
    celery_state(result, "REVOKED")
    assert seen == stack.history(result.id)
    assert_gapless(seen)
    # The worker goes on with the next task (prefork: a new pool process).
    after = send(tasks.transcode, 2, 0.01, queue=worker.queue)
    assert client.events_until_terminal(after.id, timeout=30)[-1]["type"] == "job_completed"


def test_a_worker_killed_with_sigkill_leaves_no_job_running(
    stack, stall_server, pool, client, tmp_path
):
    doomed = CeleryWorker(tmp_path, TASKS, pool, f"doomed-{pool}", stack.worker_env).start()
    try:
        result = send(tasks.endless, 3000, 0.02, queue=doomed.queue)
        events_until(client, result.id, "progress_update")
        doomed.kill()  # no signal handler, no last word
        # The server's stall detection ends the job: never running forever.
        events = client.events_until_terminal(result.id, timeout=STALL_SECONDS + 15)
        failed = events[-1]
        assert failed["type"] == "job_failed", events
        assert failed["error"]["type"] == "stalled" and failed["stage"] == "work"
        assert stack.snapshot(result.id)["status"] == "failed"
    finally:
        doomed.stop()


@pytest.fixture(scope="module")
def prefork_worker(stack, tmp_path_factory):
    """A prefork worker of its own, whose pool processes the tests kill."""
    w = CeleryWorker(
        tmp_path_factory.mktemp("lost"), TASKS, "prefork", "lost-prefork", stack.worker_env
    )
    w.start()
    yield w
    w.stop()


def kill_pool_process(worker: CeleryWorker, task_id: str) -> None:
    """SIGKILL to the pool process running ``task_id`` (the worker lives on)."""

    def pid():
        active = tasks.app.control.inspect(destination=[worker.name], timeout=2).active() or {}
        return next((t["worker_pid"] for t in active.get(worker.name, []) if t["id"] == task_id), 0)

    os.kill(wait_until(pid, 15, what=f"{task_id} among the active tasks"), signal.SIGKILL)


def test_a_lost_pool_process_fails_its_job_before_stall_detection(stack, prefork_worker, client):
    result = send(tasks.endless, 3000, 0.02, queue=prefork_worker.queue)
    events_until(client, result.id, "progress_update")
    kill_pool_process(prefork_worker, result.id)
    # The worker's main process reports it: no wait for stall detection.
    events = client.events_until_terminal(result.id, timeout=MAIN_STALL_SECONDS - 5)
    failed = events[-1]
    assert failed["type"] == "job_failed", events
    assert failed["error"]["type"] == "WorkerLostError" and failed["stage"] == "work"
    celery_state(result, "FAILURE")


def test_with_acks_late_a_lost_pool_process_runs_the_task_again_on_the_same_job(
    stack, prefork_worker, client
):
    result = send(tasks.sturdy, 30, 0.05, queue=prefork_worker.queue)
    seen = events_until(client, result.id, "stage_completed")  # download done: in transcode
    seen += events_until(client, result.id, "progress_update")
    kill_pool_process(prefork_worker, result.id)
    seen += client.events_until_terminal(result.id, timeout=30)
    assert seen == stack.history(result.id)
    assert_gapless(seen)
    kinds = [e["type"] for e in seen]
    assert kinds.count("job_started") == 1 and kinds[-1] == "job_completed"
    # The second run did the download again, quietly: the job had passed it.
    assert [e["stage"] for e in seen if e["type"] == "stage_completed"] == [
        "download",
        "transcode",
    ]
    assert seen[-1]["result"] == {"frames": 30, "redelivered": True}
    celery_state(result, "SUCCESS")


# ------------------------------------------------------------------- groups


def test_a_group_of_ten_tasks_is_one_parent_that_reaches_100_with_its_last_child(
    stack, worker, client
):
    sigs = [
        tasks.transcode.s(12, 0.02).set(queue=worker.queue, progress={"name": f"Video {i}"})
        for i in range(10)
    ]
    result = pc_celery.progress_group(sigs, owner="alice", name="Import 10 videos")
    parent = stack.snapshot(result.id)
    assert parent["children"]["total"] == 10 and parent["name"] == "Import 10 videos"
    kids = stack.server.http("GET", f"/api/jobs/{result.id}/children").json()
    assert [k["name"] for k in kids] == [f"Video {i}" for i in range(10)]
    assert [k["job_id"] for k in kids] == [r.id for r in result.results]  # job id = task id

    live = client.events_by_job_until_terminal([result.id, *(k["job_id"] for k in kids)], 60)
    mine = live[result.id]
    assert mine == stack.history(result.id) and mine[-1]["type"] == "job_completed"
    assert_gapless(mine)
    updates = [e for e in mine if e["type"] == "progress_update"]
    assert all(e["progress"] < 100 for e in updates if e["children"]["completed"] < 10)
    assert updates[-1]["children"]["completed"] == 10 and updates[-1]["progress"] == 100
    assert all(live[k["job_id"]][-1]["type"] == "job_completed" for k in kids)
    # the children's counts and rates reached the browser too
    frames = [
        e
        for e in live[kids[0]["job_id"]]
        if e["type"] == "progress_update" and e["unit"] == "frames"
    ]
    assert frames and frames[-1]["total"] == 12
    wait_until(lambda: result.ready(), 20, what="the Celery group's results")
    assert [r["frames"] for r in result.get(timeout=10)] == [12] * 10


def test_a_group_with_a_failing_task_fails_once_the_others_have_ended(stack, worker, client):
    sigs = [tasks.transcode.s(4, 0.01).set(queue=worker.queue) for _ in range(3)]
    sigs.insert(1, tasks.corrupt.s(0.01).set(queue=worker.queue, progress={"name": "bad.mov"}))
    result = pc_celery.progress_group(sigs, owner="alice", name="Import 4 videos")
    end = client.events_by_job_until_terminal([result.id], 60)[result.id][-1]
    assert end["type"] == "job_failed"
    assert end["error"]["type"] == "children_failed"
    assert end["error"]["message"] == "1 of 4 jobs failed: bad.mov"
    parent = stack.snapshot(result.id)
    assert parent["children"]["completed"] == 3 and parent["children"]["failed"] == 1


def test_cancelling_a_groups_parent_stops_its_tasks(stack, worker, client):
    sigs = [tasks.endless.s(3000, 0.02).set(queue=worker.queue) for _ in range(2)]
    result = pc_celery.progress_group(sigs, owner="alice", name="Two endless")
    events_until(client, result.id, "job_started")
    assert client.call("cancel_job", {"job_id": result.id, "reason": "enough"})["ok"]
    end = client.events_by_job_until_terminal([result.id], 30)[result.id][-1]
    assert end["type"] == "job_cancelled" and end["reason"] == "2 of 2 jobs were cancelled"

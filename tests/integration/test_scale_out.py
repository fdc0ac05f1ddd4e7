"""Worker processes and several instances on one Redis (DESIGN §2, §7), with
real redis-server, gunicorn+eventlet instances and nginx."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import pytest
import redis as redis_py
import rq

from progresscast import ProgressTracker
from tests.harness import (
    DOC_STAGES,
    ROOT,
    Nginx,
    RedisServer,
    ServerProcess,
    SocketClient,
    assert_gapless,
    other_events,
    token_for,
    wait_until,
)

pytestmark = pytest.mark.server

STAGES = DOC_STAGES
ADMIN = {"Authorization": f"Bearer {token_for('root', admin=True)}"}


def redis_env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    store = f"{redis_url}?prefix={prefix}"
    return {"PROGRESSCAST_STORE_URL": store, "PROGRESSCAST_MESSAGE_QUEUE_URL": redis_url, **extra}


def run_worker(env: dict[str, str], *args: str) -> subprocess.Popen:
    """examples/worker_multiprocessing.py, printing job ids on stdout."""
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "worker_multiprocessing.py"),
            "--store",
            env["PROGRESSCAST_STORE_URL"],
            "--queue",
            env["PROGRESSCAST_MESSAGE_QUEUE_URL"],
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen) -> None:
    """Kill a worker's process group if it still runs, and close its pipes."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """redis + two instances + nginx (ip_hash), shared by the tests of this module."""
    base = tmp_path_factory.mktemp("cluster")
    redis_srv = RedisServer(base, persistent=True).start()
    env = redis_env(redis_srv.url, "cluster")
    a = ServerProcess(base / "a", env=env)
    b = ServerProcess(base / "b", env=env)
    (base / "a").mkdir()
    (base / "b").mkdir()
    nginx = None
    try:
        a.start()
        b.start()
        nginx = Nginx(base / "nginx", [a.port, b.port]).start()
        yield {"redis": redis_srv, "a": a, "b": b, "nginx": nginx, "env": env}
    finally:
        if nginx:
            nginx.stop()
        a.stop()
        b.stop()
        redis_srv.stop()


@pytest.fixture
def spread_clients(cluster):
    """One client on each instance, both connected through nginx.

    nginx's ip_hash keys on the client address, so the clients come from
    different loopback addresses until one lands on each instance.
    """
    made: dict[str, SocketClient] = {}
    extra: list[SocketClient] = []
    for third in range(1, 60):
        client = SocketClient(cluster["nginx"].url, "alice", source_ip=f"127.0.{third}.1")
        instance = client.call("ping")["instance"]
        if instance in made:
            extra.append(client)
        else:
            made[instance] = client
        if len(made) == 2:
            break
    for client in extra:
        client.close()
    assert len(made) == 2, "ip_hash sent every address to one instance"
    yield list(made.values())
    for client in made.values():
        client.close()


def test_a_worker_job_reaches_clients_on_both_instances_behind_nginx(cluster, spread_clients):
    # The web side creates the job (queued); a worker process runs it.
    r = cluster["a"].http("POST", "/api/jobs", json={"name": "report.pdf", "stages": STAGES})
    job_id = r.json()["job_id"]
    for client in spread_clients:
        assert client.call("join_job", {"job_id": job_id})["ok"]

    worker = run_worker(
        cluster["env"], "--job-id", job_id, "--pages", "30", "--pace", "0.05", "--failure-rate", "0"
    )
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err

    seen = [client.events_until_terminal(job_id, timeout=30) for client in spread_clients]
    assert seen[0] == seen[1]  # the same events, in the same order, on both instances
    assert_gapless(seen[0], first=2)  # 1 was job_queued, before the joins
    assert seen[0][0]["type"] == "job_started" and seen[0][-1]["type"] == "job_completed"
    assert [e["stage"] for e in seen[0] if e["type"] == "stage_completed"] == [
        s["name"] for s in STAGES
    ]
    # and the store (Redis) holds exactly that history
    snap = cluster["b"].http("GET", f"/api/jobs/{job_id}/events").json()
    assert snap["events"][1:] == seen[0]


def test_seq_stays_gapless_with_two_workers_and_two_threads_on_one_job(cluster, spread_clients):
    watcher = spread_clients[0]
    watcher.call("watch_jobs")
    workers = run_worker(
        cluster["env"],
        "--owner",
        "alice",
        "--jobs",
        "2",
        "--pages",
        "40",
        "--pace",
        "0.02",
        "--failure-rate",
        "0",
    )
    # meanwhile, in this process: one job reported from two threads
    tracker = ProgressTracker.from_urls(
        cluster["env"]["PROGRESSCAST_STORE_URL"], cluster["env"]["PROGRESSCAST_MESSAGE_QUEUE_URL"]
    )
    with tracker.job("threads", STAGES, owner="alice", min_interval=0) as job:
        for stage in STAGES:
            with job.stage(stage["name"], total=200):
                threads = [
                    threading.Thread(target=lambda: [job.advance() for _ in range(100)])
                    for _ in range(2)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
    out, err = workers.communicate(timeout=60)
    assert workers.returncode == 0, err
    job_ids = [*out.split(), job.job_id]
    assert len(job_ids) == 3

    live = watcher.events_by_job_until_terminal(job_ids, timeout=30)
    for job_id in job_ids:
        stored = tracker.store.events_since(job_id)
        assert_gapless(stored)
        assert stored[-1]["type"] == "job_completed"
        assert live[job_id] == stored  # watch_jobs came first: the whole history arrived live
    assert tracker.get(job.job_id).stage_pct == [100.0] * 4
    tracker.store.close()


def test_cancel_from_a_client_stops_a_worker_pipeline(cluster, spread_clients):
    client = spread_clients[1]
    r = cluster["a"].http("POST", "/api/jobs", json={"name": "long.pdf", "stages": STAGES})
    job_id = r.json()["job_id"]
    client.call("join_job", {"job_id": job_id})
    worker = run_worker(
        cluster["env"], "--job-id", job_id, "--pages", "500", "--pace", "0.2", "--failure-rate", "0"
    )
    try:
        started = client.next_event(timeout=20)
        assert started["type"] == "job_started"
        progress = client.next_event(timeout=20)  # it is really running
        assert progress["type"] == "progress_update"

        ack = client.call("cancel_job", {"job_id": job_id, "reason": "stop it"})
        assert ack == {"ok": True, "status": "running"}

        events = client.events_until_terminal(job_id, timeout=15)
        assert events[-1]["type"] == "job_cancelled" and events[-1]["reason"] == "stop it"
        worker.communicate(timeout=20)  # the pipeline stopped: the process ends
        assert worker.returncode == 0
    finally:
        stop_worker(worker)


def test_redis_down_mid_job_then_back_loses_nothing_the_store_holds(tmp_path):
    redis_srv = RedisServer(tmp_path, persistent=True).start()
    env = redis_env(redis_srv.url, "outage")
    server = ServerProcess(tmp_path, env=env).start()
    client = worker = None
    try:
        job_id = server.http(
            "POST", "/api/jobs", json={"name": "outage.pdf", "stages": STAGES}
        ).json()["job_id"]
        client = SocketClient(server.url)
        client.call("join_job", {"job_id": job_id})
        worker = run_worker(
            env, "--job-id", job_id, "--pages", "60", "--pace", "0.3", "--failure-rate", "0"
        )
        last = client.next_event(timeout=20)
        while last["type"] != "progress_update":
            last = client.next_event(timeout=20)

        redis_srv.stop()  # store and message queue gone, mid-job
        # the pipeline keeps running without them for a while
        wait_until(
            lambda: client.events.empty() and worker.poll() is None,
            5,
            what="the worker to keep going",
        )
        # An operator's notice meanwhile: this server's client gets it; the
        # answer says the other servers did not, and the failure is counted.
        sent = server.http(
            "POST", "/api/admin/notice", user=None, headers=ADMIN, json={"message": "outage"}
        )
        assert sent.status_code == 503, sent.text
        error = sent.json()
        assert error["code"] == "unavailable" and error["details"]["delivered"] == 1, error
        assert other_events(client, "notice")[1]["message"] == "outage"
        metrics = server.http("GET", "/metrics").text
        assert re.search(r"^progresscast_queue_publish_failures_total [1-9]", metrics, re.M)
        redis_srv.start(redis_srv.port)
        _, err = worker.communicate(timeout=90)
        assert worker.returncode == 0, err  # the pipeline did not crash

        # A client that resumes with `since` gets every event the store holds.
        client.close()
        client = SocketClient(server.url)
        ack = client.call("join_job", {"job_id": job_id, "since": last["seq"]})
        with redis_py.Redis.from_url(redis_srv.url) as stored:  # Redis answers again
            assert stored.ping()
        history = server.http("GET", f"/api/jobs/{job_id}/events?limit=1000").json()["events"]
        assert_gapless(history)
        assert ack["events"] == [e for e in history if e["seq"] > last["seq"]]
        assert ack["job"]["status"] == "completed" and ack["job"]["progress"] == 100.0
    finally:
        if client:
            client.close()
        if worker:
            stop_worker(worker)
        server.stop()
        redis_srv.stop()


def test_a_killed_worker_leaves_no_job_running_forever(tmp_path):
    redis_srv = RedisServer(tmp_path, persistent=True).start()
    env = redis_env(
        redis_srv.url,
        "stall",
        PROGRESSCAST_STALL_SECONDS="2",
        PROGRESSCAST_STALL_CHECK_SECONDS="0.5",
    )
    server = ServerProcess(tmp_path, env=env).start()
    client = None
    worker = run_worker(
        env, "--owner", "alice", "--pages", "500", "--pace", "0.5", "--failure-rate", "0"
    )
    try:
        client = SocketClient(server.url)
        client.call("watch_jobs")
        started = client.next_event(timeout=20)
        assert started["type"] == "job_started"
        client.next_event(timeout=20)  # a progress update: it is working

        os.killpg(worker.pid, signal.SIGKILL)  # the worker dies without a word
        worker.wait(timeout=10)  # (its pipes are closed in `finally`)

        events = client.events_until_terminal(started["job_id"], timeout=15)
        failed = events[-1]
        assert failed["type"] == "job_failed"
        assert failed["error"]["type"] == "stalled"
        snap = server.http("GET", f"/api/jobs/{started['job_id']}").json()
        assert snap["status"] == "failed" and snap["error"]["type"] == "stalled"
    finally:
        if client:
            client.close()
        stop_worker(worker)
        server.stop()
        redis_srv.stop()


def test_an_rq_worker_runs_a_queued_job(cluster, spread_clients):
    client = spread_clients[0]
    r = cluster["a"].http("POST", "/api/jobs", json={"name": "rq.pdf", "stages": STAGES})
    job_id = r.json()["job_id"]
    client.call("join_job", {"job_id": job_id})
    connection = redis_py.Redis.from_url(cluster["env"]["PROGRESSCAST_MESSAGE_QUEUE_URL"])
    queue = rq.Queue("progresscast-test", connection=connection)
    task = queue.enqueue("examples.rq_tasks.check_document", job_id, pages=20, pace=0.02)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--burst",
            "--url",
            cluster["env"]["PROGRESSCAST_MESSAGE_QUEUE_URL"],
            "progresscast-test",
        ],
        cwd=ROOT,
        env={**os.environ, **cluster["env"], "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        events = client.events_until_terminal(job_id, timeout=60)
        assert events[0]["type"] == "job_started" and events[-1]["type"] == "job_completed"
        assert_gapless(events, first=2)
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, out
        task.refresh()
        assert task.return_value() == "completed"
    finally:
        stop_worker(worker)
        connection.close()  # not left to the garbage collector (a ResourceWarning elsewhere)


def test_readyz_checks_the_store_and_the_queue(cluster):
    body = cluster["a"].http("GET", "/readyz").json()
    assert body == {"status": "ok", "checks": {"store": "ok", "message_queue": "ok"}}


def test_a_batching_dashboard_gets_worker_events_in_frames(cluster, spread_clients):
    dash = spread_clients[1]
    dash.call("watch_jobs", {"batch": True})
    worker = run_worker(
        cluster["env"],
        "--owner",
        "alice",
        "--jobs",
        "3",
        "--pages",
        "30",
        "--pace",
        "0.02",
        "--failure-rate",
        "0",
    )
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    job_ids = out.split()
    store = ProgressTracker.from_urls(cluster["env"]["PROGRESSCAST_STORE_URL"]).store
    expected = {j: store.events_since(j) for j in job_ids}
    store.close()
    got: dict[str, list] = {}
    frames = 0

    def complete():
        nonlocal frames
        while not dash.other.empty():
            name, data = dash.other.get_nowait()
            if name == "job_events":
                frames += 1
                for event in data["events"]:
                    got.setdefault(event["job_id"], []).append(event)
        return all(len(got.get(j, [])) >= len(expected[j]) for j in job_ids)

    wait_until(complete, 20, what="every event in job_events frames")
    for job_id in job_ids:
        assert got[job_id] == expected[job_id]  # each once, in order, nothing lost
    assert frames < sum(len(v) for v in expected.values())
    assert dash.events.empty()  # no unbatched job events at all

"""No job stays ``running`` without a live pipeline, on a real server process:
a restart ends the in-process jobs its last run left behind, and a cancel
that no pipeline acknowledges ends the job after ``CANCEL_GRACE_SECONDS``."""

from __future__ import annotations

import signal

import pytest

from tests.harness import DOC_STAGES, ServerProcess, wait_until

pytestmark = pytest.mark.server


def running_jobs(server: ServerProcess, user: str) -> list[dict]:
    r = server.http("GET", "/api/jobs?status=running&page_size=100", user=user)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_restart_ends_the_demo_jobs_it_interrupted(tmp_path, clients, stop):
    """`make run`, stopped while demo jobs run, then `make run` again: the
    jobs the first run was running fail as interrupted at once, instead of
    showing frozen bars until stall detection, ten minutes later."""
    env = {
        "PROGRESSCAST_DEMO": "1",
        "PROGRESSCAST_DEMO_PACE": "5",  # slow: a job takes 15 s to minutes
        "PROGRESSCAST_DEMO_CONCURRENCY": "2",
    }
    server = ServerProcess(tmp_path, env=env).start()
    try:
        wait_until(lambda: running_jobs(server, "demo"), 30, what="a running demo job")
        before = {job["job_id"]: job for job in running_jobs(server, "demo")}
        port = server.port
        server.stop(stop)
        server.start(port)  # the same server (SERVER_ID), its next run

        interrupted = []
        for job_id, old in before.items():
            job = server.http("GET", f"/api/jobs/{job_id}", user="demo").json()
            assert job["status"] != "running", job
            assert job["seq"] > old["seq"], job
            if job["status"] == "failed" and job["error"]["type"] == "interrupted":
                assert "restarted" in job["error"]["message"]
                interrupted.append(job_id)
        # Unless one ended by itself in the moment before the stop, all were.
        assert interrupted, before
        assert not set(before) & {j["job_id"] for j in running_jobs(server, "demo")}
        # ... as an event like any other, which a resuming client is given.
        watcher = clients(server.url, user="demo")
        job_id = interrupted[0]
        ack = watcher.call("join_job", {"job_id": job_id, "since": 1})
        assert ack["ok"] and ack["events"][-1]["type"] == "job_failed", ack
        assert ack["events"][-1]["error"]["type"] == "interrupted"
        assert [e["seq"] for e in ack["events"]] == list(range(2, ack["job"]["seq"] + 1))
        # The new run's own demo jobs run on, untouched.
        wait_until(
            lambda: any(j["job_id"] not in before for j in running_jobs(server, "demo")),
            30,
            what="a new demo job",
        )
    finally:
        server.stop()


def test_a_cancel_without_a_live_pipeline_ends_after_the_grace(tmp_path, clients):
    """An HTTP pipeline that went away: `POST .../cancel` used to leave the
    job running, cancel_requested, until stall detection."""
    server = ServerProcess(tmp_path, env={"PROGRESSCAST_CANCEL_GRACE_SECONDS": "1"}).start()
    try:
        created = server.http(
            "POST", "/api/jobs", json={"name": "import", "stages": DOC_STAGES, "start": True}
        )
        job_id = created.json()["job_id"]
        watcher = clients(server.url)
        assert watcher.call("join_job", {"job_id": job_id})["ok"]

        r = server.http("POST", f"/api/jobs/{job_id}/cancel", json={"reason": "not needed"})
        assert r.status_code == 202 and r.json()["status"] == "running", r.text
        assert r.json()["cancel_requested"] == "not needed"

        event = watcher.next_event(timeout=20)  # the first event after the join
        assert event["type"] == "job_cancelled", event
        assert event["seq"] == 2
        assert event["reason"].startswith("not needed") and "did not stop" in event["reason"]
        job = server.http("GET", f"/api/jobs/{job_id}").json()
        assert job["status"] == "cancelled" and job["seq"] == 2
        # The pipeline, back late, is told the job has ended.
        late = server.http(
            "POST",
            f"/api/jobs/{job_id}/events",
            json={"type": "progress_update", "stage_progress": 5},
        )
        assert late.status_code == 409 and late.json()["code"] == "conflict", late.text
    finally:
        server.stop()

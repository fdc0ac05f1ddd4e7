"""cancel_job over Socket.IO and POST /api/jobs/<id>/cancel."""

from __future__ import annotations

import pytest

from progresscast import JobStatus

from .helpers import STAGES, as_user, assert_error, assert_error_ack


def test_cancel_job_stops_a_running_in_process_pipeline(alice, tracker):
    job = tracker.job("import", STAGES, owner="alice", min_interval=0)
    alice.ok("join_job", {"job_id": job.job_id})

    ack = alice.ok("cancel_job", {"job_id": job.job_id, "reason": "wrong file"})
    assert ack["status"] == "running"  # requested; the pipeline has not stopped yet

    with job, job.stage("parsing", total=100):
        for _ in range(100):
            job.advance()  # the first report checks the request and stops the block

    assert job.cancelled
    (cancelled,) = alice.wait_until(lambda inbox: inbox and inbox[-1]["type"] == "job_cancelled")[
        -1:
    ]
    assert cancelled["reason"] == "wrong file" and cancelled["stage"] == "parsing"
    assert tracker.get(job.job_id).status is JobStatus.CANCELLED


def test_cancelling_a_queued_job_over_rest_is_immediate(http, tracker):
    job = http.post(
        "/api/jobs", json={"name": "later", "stages": STAGES}, headers=as_user("alice")
    ).get_json()

    r = http.post(f"/api/jobs/{job['job_id']}/cancel", json={}, headers=as_user("alice"))

    assert r.status_code == 202
    assert r.get_json()["status"] == "cancelled"
    assert tracker.get(job["job_id"]).status is JobStatus.CANCELLED


def test_cancelling_a_running_job_over_rest_is_a_request(http, tracker):
    job = tracker.job("import", STAGES, owner="alice")

    r = http.post(
        f"/api/jobs/{job.job_id}/cancel", json={"reason": "too slow"}, headers=as_user("alice")
    )

    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "running" and body["cancel_requested"] == "too slow"
    # an HTTP pipeline sees the request in every ingestion answer
    r = http.post(
        f"/api/jobs/{job.job_id}/events",
        json={"type": "progress_update", "stage_progress": 5},
        headers=as_user("alice"),
    )
    assert r.get_json()["job"]["cancel_requested"] == "too slow"
    r = http.post(
        f"/api/jobs/{job.job_id}/events",
        json={"type": "job_cancelled", "reason": "too slow"},
        headers=as_user("alice"),
    )
    assert r.status_code == 201 and tracker.get(job.job_id).status is JobStatus.CANCELLED


def test_nobody_cancels_a_job_they_may_not_see(alice, bob, http, tracker):
    job = tracker.job("mine", STAGES, owner="alice")

    assert_error_ack(bob.request("cancel_job", {"job_id": job.job_id}), "not_found")
    r = http.post(f"/api/jobs/{job.job_id}/cancel", json={}, headers=as_user("bob"))
    assert r.status_code == 404
    assert_error(r.get_json(), "not_found")
    assert tracker.get(job.job_id).cancel_requested is None


def test_cancelling_an_ended_job_is_a_conflict(alice, http, tracker):
    with tracker.job("done", STAGES, owner="alice") as job:
        pass

    assert_error_ack(alice.request("cancel_job", {"job_id": job.job_id}), "conflict")
    r = http.post(f"/api/jobs/{job.job_id}/cancel", json={}, headers=as_user("alice"))
    assert r.status_code == 409


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "x",
        {"job_id": 1},
        {"job_id": "a", "reason": 5},
        {"job_id": "a", "x": 1},
        {"job_id": "a", "reason": "r" * 501},
    ],
)
def test_bad_cancel_payloads(alice, payload):
    assert_error_ack(alice.request("cancel_job", payload), "invalid_payload")
    alice.ok("ping")

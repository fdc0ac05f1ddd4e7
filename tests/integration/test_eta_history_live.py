"""Issue 14 against a real server: two runs of one pipeline over HTTP, with a
restart between them; the second run's ETA comes from the first's history.

The pipeline's stages take real time (it is the thing being timed): declared
weights 15/60/20/5, real durations 40/30/20/10 of about three seconds. The
truth is measured afterwards from the test's own clock, so a slow machine
moves the truth and the estimate alike.
"""

from __future__ import annotations

import time

import pytest

from tests.harness import ServerProcess, token_for

pytestmark = pytest.mark.server

STAGES = [
    {"name": "parsing", "weight": 0.15},
    {"name": "analyzing", "weight": 0.60},
    {"name": "integrating", "weight": 0.20},
    {"name": "formatting", "weight": 0.05},
]
REAL_SECONDS = [1.2, 0.9, 0.6, 0.3]  # 40/30/20/10 of 3 s
STEPS = 12  # reports per stage
KIND = "nightly import"
SERVICE = {"Authorization": f"Bearer {token_for('importer', service=True)}"}


def post(server, path, body):
    r = server.http("POST", path, user=None, headers=SERVICE, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def run_pipeline(server, name):
    """One run over HTTP, as a service; returns its job id, the (time, eta)
    of every report, and when it ended."""
    job = post(
        server,
        "/api/jobs",
        {"name": name, "stages": STAGES, "kind": KIND, "owner": "alice", "start": True},
    )
    assert job["kind"] == KIND and job["weights"] == "declared"
    started = time.monotonic()
    seen = []
    for stage, seconds in zip(STAGES, REAL_SECONDS, strict=True):
        for i in range(1, STEPS + 1):
            time.sleep(seconds / STEPS)  # the pipeline's own work
            out = post(
                server,
                f"/api/jobs/{job['job_id']}/events",
                {
                    "type": "progress_update",
                    "stage": stage["name"],
                    "stage_progress": 100 * i / STEPS,
                },
            )
            seen.append((time.monotonic(), out["job"]))
    post(server, f"/api/jobs/{job['job_id']}/events", {"type": "job_completed"})
    return job["job_id"], started, seen, time.monotonic()


def mean_error(started, seen, ended):
    """Mean |eta - truth| / truth over the reports from 25 % to 90 % of the run."""
    errors = []
    for t, snap in seen:
        share = (t - started) / (ended - started)
        if 0.25 <= share <= 0.9:
            truth = ended - t
            eta = snap["eta_seconds"]
            errors.append(1.0 if eta is None else abs(eta - truth) / truth)
    assert errors
    return sum(errors) / len(errors)


def test_a_second_run_after_a_restart_learns_from_the_first(tmp_path, clients):
    server = ServerProcess(tmp_path).start()
    try:
        _, started, seen, ended = run_pipeline(server, "import monday")
        cold = mean_error(started, seen, ended)
        assert all(snap["eta_low"] is None for _, snap in seen)  # no history, no range
        server.stop()
        server.start()  # same SQLite file: the history is in the store, not the process

        history = server.http("GET", "/api/jobs?status=completed").json()
        assert [j["kind"] for j in history] == [KIND]
        watcher = clients(server.url)
        job_id, started, seen, ended = run_pipeline(server, "import tuesday")
        warm = mean_error(started, seen, ended)
        # The second run learned from the first: its ETA is several times
        # closer than the cold run's (whose declared weights are far off).
        # The 10 % target itself is the benchmark's (bench/eta.py, a fake
        # clock): here both runs take real time on a machine whose load
        # changes between them, which moves the truth by itself (3-5 % when
        # quiet; up to 14 % seen under full load, with the estimator of the
        # commit before as well).
        trace = [(round(t - started, 2), s["eta_seconds"]) for t, s in seen]
        assert warm <= 0.3, (warm, cold, trace)
        assert warm < cold / 3, (warm, cold, trace)

        # A watcher over a real websocket gets the same estimate the store has.
        ack = watcher.call("join_job", {"job_id": job_id, "since": 0})
        updates = [e for e in ack["events"] if e["type"] == "progress_update"]
        assert [e["eta_seconds"] for e in updates] == [s["eta_seconds"] for _, s in seen]
        assert ack["job"]["kind"] == KIND
    finally:
        server.stop()

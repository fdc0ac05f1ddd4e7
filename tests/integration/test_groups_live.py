"""Groups and counts against a real server process: children reported over
HTTP (as pipelines in any language do), the parent followed live by a
python-socketio client over a real websocket."""

from __future__ import annotations

import pytest

from tests.harness import assert_gapless

pytestmark = pytest.mark.server


def post_event(server, job_id, **body):
    r = server.http("POST", f"/api/jobs/{job_id}/events", json=body)
    assert r.status_code == 201, r.text
    return r.json()["job"]


def make_group(server, n: int) -> list[str]:
    children = [{"name": f"video-{i}.mp4", "stages": ["fetch", "encode"]} for i in range(n)]
    r = server.http(
        "POST",
        "/api/jobs",
        json={"name": f"import {n} videos", "children": children, "job_id": "g"},
    )
    assert r.status_code == 201, r.text
    kids = server.http("GET", "/api/jobs/g/children").json()
    assert len(kids) == n
    return [k["job_id"] for k in kids]


def test_a_group_of_ten_reaches_100_exactly_when_its_last_child_completes(server, clients):
    watcher = clients(server.url)
    assert watcher.call("join_job", {"job_id": "g", "since": 0})["error"]["code"] == "not_found"
    kids = make_group(server, 10)
    ack = watcher.call("join_job", {"job_id": "g", "since": 0})
    assert ack["ok"] and ack["job"]["children"]["queued"] == 10
    for i, kid in enumerate(kids):
        post_event(server, kid, type="job_started")
        post_event(
            server, kid, type="progress_update", stage="encode", n=40, total=40, unit="frames"
        )
        post_event(server, kid, type="job_completed")
        parent = server.http("GET", "/api/jobs/g").json()
        if i < 9:
            assert parent["status"] == "running" and parent["progress"] < 100
            assert parent["children"]["completed"] == i + 1
    events = ack["events"] + watcher.events_until_terminal("g")
    assert_gapless(events)
    assert events[-1]["type"] == "job_completed"
    updates = [e for e in events if e["type"] == "progress_update"]
    before_end = [e for e in updates if e["children"]["completed"] < 10]
    assert all(e["progress"] < 100 for e in before_end)
    last = updates[-1]  # brought by the last child's job_completed
    assert last["children"]["completed"] == 10 and last["n"] == 10 and last["progress"] == 100
    # the watcher saw the parent move, not just start and end
    assert len({e["progress"] for e in before_end}) >= 5
    stored = server.http("GET", "/api/jobs/g/events?since=0").json()["events"]
    assert stored == events


def test_a_failing_child_fails_the_group_once_the_rest_have_ended(server, clients):
    watcher = clients(server.url)
    kids = make_group(server, 4)
    watcher.call("join_job", {"job_id": "g"})
    for kid in kids:
        post_event(server, kid, type="job_started")
    post_event(
        server, kids[2], type="job_failed", error={"message": "codec missing", "type": "CodecError"}
    )
    assert server.http("GET", "/api/jobs/g").json()["status"] == "running"
    for kid in (kids[0], kids[1], kids[3]):
        post_event(server, kid, type="job_completed")
    end = watcher.events_until_terminal("g")[-1]
    assert end["type"] == "job_failed"
    assert end["error"] == {"type": "children_failed", "message": "1 of 4 jobs failed: video-2.mp4"}

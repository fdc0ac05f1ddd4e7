"""Groups and counts through the REST API and the socket (docs/protocol.md,
"Counts, units and rates", "Groups")."""

from __future__ import annotations

from .helpers import as_user

ALICE = as_user("alice")
BOB = as_user("bob")

GROUP = {
    "name": "import 3 videos",
    "children": [
        {"name": "intro.mp4", "stages": ["fetch", "encode"], "job_id": "v1", "weight": 2},
        {"name": "talk.mp4", "stages": ["fetch", "encode"], "job_id": "v2"},
        {"name": "outro.mp4", "stages": ["fetch", "encode"], "job_id": "v3"},
    ],
    "job_id": "g1",
}


def make_group(http):
    r = http.post("/api/jobs", json=GROUP, headers=ALICE)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def post_event(http, job_id, user=ALICE, **body):
    return http.post(f"/api/jobs/{job_id}/events", json=body, headers=user)


def test_a_group_is_created_over_rest_and_its_children_listed(http):
    parent = make_group(http)
    assert parent["job_id"] == "g1" and parent["status"] == "queued"
    assert parent["children"]["total"] == 3 and parent["children"]["queued"] == 3
    assert parent["stages"][0]["name"] == "jobs" and parent["parent_id"] is None
    children = http.get("/api/jobs/g1/children", headers=ALICE)
    assert children.status_code == 200
    kids = children.get_json()
    assert [k["job_id"] for k in kids] == ["v1", "v2", "v3"]
    assert {k["parent_id"] for k in kids} == {"g1"} and {k["owner"] for k in kids} == {"alice"}
    # a plain job has no children; another user sees none of it
    assert http.get("/api/jobs/v1/children", headers=ALICE).get_json() == []
    assert http.get("/api/jobs/g1/children", headers=BOB).status_code == 404
    assert http.get("/api/jobs/v1", headers=BOB).status_code == 404


def test_children_posted_over_http_drive_the_parent(http):
    make_group(http)
    for child in ("v1", "v2", "v3"):
        assert post_event(http, child, type="job_started").status_code == 201
    r = post_event(http, "v1", type="progress_update", n=30, total=60, unit="frames")
    assert r.status_code == 201
    job = r.get_json()["job"]
    assert (job["n"], job["total"], job["unit"], job["stage_progress"]) == (30, 60, "frames", 50)
    for child in ("v1", "v2"):
        post_event(http, child, type="job_completed")
    post_event(http, "v3", type="job_failed", error="codec missing")
    parent = http.get("/api/jobs/g1", headers=ALICE).get_json()
    assert parent["status"] == "failed"
    assert parent["error"]["message"] == "1 of 3 jobs failed: outro.mp4"
    assert parent["children"] == {
        "total": 3, "completed": 2, "failed": 1, "cancelled": 0, "running": 0, "queued": 0
    }  # fmt: skip


def test_bad_group_and_count_payloads_are_field_errors(http):
    cases = [
        ({"name": "g", "children": []}, "json"),
        ({"name": "g", "stages": ["a"], "children": GROUP["children"]}, "json"),
        ({"name": "g"}, "json"),
        ({"name": "g", "children": [{"name": "a", "stages": ["x"], "weight": 0}]}, "json"),
        ({"name": "g", "children": GROUP["children"], "start": True}, "json"),
    ]
    for body, location in cases:
        r = http.post("/api/jobs", json=body, headers=ALICE)
        assert r.status_code == 422, body
        assert location in r.get_json()["details"], r.get_json()
    job = http.post("/api/jobs", json={"name": "j", "stages": ["a"], "start": True}, headers=ALICE)
    job_id = job.get_json()["job_id"]
    for body in ({"n": -1}, {"total": 0}, {"unit": "x" * 33}, {"n": "3"}, {"children": {}}):
        r = post_event(http, job_id, type="progress_update", **body)
        assert r.status_code == 422, body
    assert http.get(f"/api/jobs/{job_id}", headers=ALICE).get_json()["seq"] == 1


def test_a_share_link_for_the_parent_reads_its_children(http):
    make_group(http)
    link = as_user("guest", jobs=["g1"])
    assert http.get("/api/jobs/g1/children", headers=link).status_code == 200
    assert http.get("/api/jobs/v2", headers=link).status_code == 200
    other = as_user("guest", jobs=["v1"])  # a child's link does not open its siblings
    assert http.get("/api/jobs/v2", headers=other).status_code == 404
    assert http.get("/api/jobs/g1", headers=other).status_code == 404


def test_cancelling_the_parent_over_rest_cancels_the_group(http):
    make_group(http)
    post_event(http, "v1", type="job_started")
    r = http.post("/api/jobs/g1/cancel", json={"reason": "wrong folder"}, headers=ALICE)
    assert r.status_code == 202
    kids = http.get("/api/jobs/g1/children", headers=ALICE).get_json()
    assert [k["status"] for k in kids] == ["running", "cancelled", "cancelled"]
    assert kids[0]["cancel_requested"] == "wrong folder"
    post_event(http, "v1", type="job_cancelled", reason="wrong folder")
    assert http.get("/api/jobs/g1", headers=ALICE).get_json()["status"] == "cancelled"


def test_list_children_over_the_socket(http, alice, bob):
    make_group(http)
    ack = alice.ok("list_children", {"job_id": "g1"})
    assert [j["job_id"] for j in ack["jobs"]] == ["v1", "v2", "v3"]
    assert bob.request("list_children", {"job_id": "g1"})["error"]["code"] == "not_found"
    bad = alice.request("list_children", {"job_id": "g1", "extra": 1})
    assert bad["error"]["code"] == "invalid_payload"


def test_a_watching_dashboard_gets_the_parents_updates_with_counts(http, alice):
    alice.ok("watch_jobs", {})
    make_group(http)
    post_event(http, "v2", type="job_started")
    events = alice.wait_until(
        lambda inbox: any(e["job_id"] == "g1" and e["type"] == "job_started" for e in inbox)
    )
    started = next(e for e in events if e["job_id"] == "g1" and e["type"] == "job_started")
    assert started["children"]["total"] == 3


def test_nobody_posts_events_to_a_parent_it_follows_its_children(http):
    make_group(http)
    for user in (ALICE, as_user("svc", service=True)):
        r = post_event(http, "g1", user=user, type="job_started")
        assert r.status_code == 403 and "follows its children" in r.get_json()["message"]
    assert http.get("/api/jobs/g1", headers=ALICE).get_json()["status"] == "queued"

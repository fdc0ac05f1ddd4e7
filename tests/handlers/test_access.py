"""Who may do what (DESIGN §6): owners, admins, share links, service tokens."""

from __future__ import annotations

import pytest

from config import TestConfig
from web import create_app

from .helpers import STAGES, as_user, assert_error, assert_error_ack


@pytest.fixture
def job(tracker):
    return tracker.create_job("alice's", STAGES, owner="alice", job_id="a1", start=True)


def post_progress(http, headers, job_id="a1"):
    return http.post(
        f"/api/jobs/{job_id}/events",
        json={"type": "progress_update", "stage_progress": 10},
        headers=headers,
    )


def test_a_share_link_reads_and_cancels_but_cannot_post(connect, http, tracker, job):
    carol = connect("carol", jobs=["a1"])
    assert carol.ok("join_job", {"job_id": "a1", "since": 0})["job"]["owner"] == "alice"
    assert http.get("/api/jobs/a1", headers=as_user("carol", jobs=["a1"])).status_code == 200

    r = post_progress(http, as_user("carol", jobs=["a1"]))
    assert r.status_code == 403
    assert_error(r.get_json(), "forbidden")
    assert tracker.get("a1").seq == 1

    assert carol.ok("cancel_job", {"job_id": "a1"})["status"] == "running"
    assert tracker.get("a1").cancel_requested


def test_a_share_link_names_only_its_jobs(connect, http, tracker, job):
    tracker.create_job("other", STAGES, owner="alice", job_id="a2")
    carol = connect("carol", jobs=["a1"])
    assert_error_ack(carol.request("join_job", {"job_id": "a2"}), "not_found")
    assert carol.ok("watch_jobs")["jobs"] == []  # it owns nothing itself


def test_an_admin_reads_everything_and_may_watch_all_jobs(connect, http, tracker, job):
    admin = connect("root", admin=True)
    assert admin.ok("join_job", {"job_id": "a1"})["job"]["owner"] == "alice"
    assert http.get("/api/jobs/a1", headers=as_user("root", admin=True)).status_code == 200

    ack = admin.ok("watch_jobs", {"all": True})
    assert [j["job_id"] for j in ack["jobs"]] == ["a1"]
    with tracker.job("bob's", STAGES, owner="bob") as bobs:
        pass
    events = admin.wait_until(lambda inbox: any(e["type"] == "job_completed" for e in inbox))
    assert {e["job_id"] for e in events} >= {bobs.job_id}

    # but an admin posts events to nobody's job
    r = post_progress(http, as_user("root", admin=True))
    assert r.status_code == 403


def test_only_admins_may_watch_all_jobs(alice):
    assert_error_ack(alice.request("watch_jobs", {"all": True}), "forbidden")
    assert alice.ok("watch_jobs", {"all": False})["ok"]


def test_a_service_token_posts_to_any_job_and_creates_for_any_owner(http, tracker, job):
    service = as_user("importer", service=True)
    assert post_progress(http, service).status_code == 201

    r = http.post(
        "/api/jobs", json={"name": "for bob", "stages": STAGES, "owner": "bob"}, headers=service
    )
    assert r.status_code == 201 and r.get_json()["owner"] == "bob"
    assert tracker.get(r.get_json()["job_id"]).owner == "bob"


def test_a_user_cannot_create_a_job_for_someone_else(http, tracker):
    r = http.post(
        "/api/jobs", json={"name": "x", "stages": STAGES, "owner": "bob"}, headers=as_user("alice")
    )
    assert r.status_code == 403
    assert_error(r.get_json(), "forbidden")
    assert tracker.store.count_jobs() == 0


def test_the_owner_may_name_itself(http):
    r = http.post(
        "/api/jobs",
        json={"name": "x", "stages": STAGES, "owner": "alice"},
        headers=as_user("alice"),
    )
    assert r.status_code == 201 and r.get_json()["owner"] == "alice"


def test_another_users_job_is_not_found_for_every_action(connect, http, job):
    bob = connect("bob")
    headers = as_user("bob")
    for event, payload in [("join_job", {"job_id": "a1"}), ("cancel_job", {"job_id": "a1"})]:
        assert_error_ack(bob.request(event, payload), "not_found")
    for method, path in [
        ("GET", "/api/jobs/a1"),
        ("GET", "/api/jobs/a1/events"),
        ("POST", "/api/jobs/a1/cancel"),
    ]:
        r = http.open(path, method=method, json={} if method == "POST" else None, headers=headers)
        assert r.status_code == 404, path
    assert post_progress(http, headers).status_code == 404


def test_the_server_refuses_to_start_without_a_secret(monkeypatch):
    monkeypatch.delenv("PROGRESSCAST_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="PROGRESSCAST_SECRET_KEY"):
        create_app(TestConfig)


def test_the_server_refuses_a_weak_secret(make_app):
    with pytest.raises(ValueError, match="at least"):
        make_app(SECRET_KEY="too-short")


def test_demo_mode_makes_up_and_keeps_a_secret(make_app, tmp_path, monkeypatch):
    monkeypatch.delenv("PROGRESSCAST_SECRET_KEY", raising=False)
    settings = {
        "DEMO": True,
        "DEMO_CONCURRENCY": 0,
        "SECRET_KEY": None,
        "INSTANCE_PATH": str(tmp_path),
    }
    first = make_app(**settings)
    # The secret lives in the instance folder, private, and survives a restart.
    again = make_app(**settings)
    assert first.config["SECRET_KEY"] == again.config["SECRET_KEY"]
    assert len(first.config["SECRET_KEY"]) >= 32
    assert (tmp_path / "demo-secret-key").stat().st_mode & 0o777 == 0o600


def test_the_demo_page_carries_a_demo_token_and_says_so(make_app):
    app = make_app(DEMO=True, DEMO_CONCURRENCY=0)
    page = app.test_client().get("/").get_data(as_text=True)
    assert "Demo mode" in page and 'data-token="ey' in page


def test_without_demo_the_page_carries_no_token(http):
    page = http.get("/").get_data(as_text=True)
    assert "Demo mode" not in page and 'data-token=""' in page

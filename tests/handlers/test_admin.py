"""The admin REST API (issue 15): stats, disconnect, notice — admins only.

Handlers on one in-process app (Flask's and Flask-SocketIO's test clients);
tests/integration/test_operator_view.py runs the same over the wire.
"""

from __future__ import annotations

import pytest

from .helpers import NS, STAGES, as_user, assert_error

ADMIN = as_user("root", admin=True)
ENDPOINTS = [
    ("GET", "/api/admin/stats", None),
    ("POST", "/api/admin/disconnect", {"user": "nobody"}),
    ("POST", "/api/admin/notice", {"message": "hello"}),
]


def notices(peer) -> list[dict]:
    """The ``notice`` events a peer has received since the last call."""
    return [p["args"][0] for p in peer.raw.get_received(NS) if p["name"] == "notice"]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_only_admins_may_call_it(http, method, path, body):
    anonymous = http.open(path, method=method, json=body)
    assert anonymous.status_code == 401
    assert_error(anonymous.get_json(), "unauthorized")
    # A service token is no admin either; and input is not looked at before access.
    for headers in (as_user("alice"), as_user("importer", service=True)):
        refused = http.open(path, method=method, json={"bogus": 1}, headers=headers)
        assert refused.status_code == 403, refused.get_json()
        assert_error(refused.get_json(), "forbidden")
    assert http.open(path, method=method, json=body, headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/admin/disconnect", {}, "_schema"),
        ("POST", "/api/admin/disconnect", {"user": "a", "sid": "b"}, "_schema"),
        ("POST", "/api/admin/disconnect", {"user": "not a user!"}, "user"),
        ("POST", "/api/admin/disconnect", {"user": "a", "all": True}, "all"),
        ("POST", "/api/admin/notice", {}, "message"),
        ("POST", "/api/admin/notice", {"message": "x" * 501}, "message"),
        ("POST", "/api/admin/notice", {"message": "hi", "level": "loud"}, "level"),
        ("POST", "/api/admin/notice", {"message": "hi", "user": 7}, "user"),
    ],
)
def test_bad_input_is_422_with_field_errors(http, method, path, body, field):
    response = http.open(path, method=method, json=body, headers=ADMIN)
    assert response.status_code == 422, response.get_json()
    error = assert_error(response.get_json(), "invalid_payload")
    assert field in error["details"]["json"], error


def test_bad_stats_query_is_422(http):
    response = http.get("/api/admin/stats?limit=0", headers=ADMIN)
    assert response.status_code == 422
    assert "limit" in assert_error(response.get_json(), "invalid_payload")["details"]["query"]


def test_stats_show_connections_per_user_rooms_and_jobs(app, http, connect, tracker):
    alice1, alice2, bob = connect("alice"), connect("alice"), connect("bob")
    job = tracker.create_job("report", STAGES, owner="alice")
    alice1.ok("join_job", {"job_id": job.job_id})
    alice2.ok("join_job", {"job_id": job.job_id})
    bob.ok("watch_jobs", {"batch": True})
    # SSE streams, as their requests register them (streams.py)
    hub = app.extensions["progresscast"].sse
    hub.open("bob", job_id=job.job_id)
    hub.open("carol", owner="carol")

    stats = http.get("/api/admin/stats?user=alice", headers=ADMIN).get_json()
    assert stats["connections"] == 3 and sum(stats["transports"].values()) == 3
    assert stats["sse_streams"] == 2
    assert stats["users_total"] == 3
    assert stats["users"] == [
        {"user": "alice", "connections": 2, "streams": 0},
        {"user": "bob", "connections": 1, "streams": 1},
        {"user": "carol", "connections": 0, "streams": 1},
    ]
    assert {"room": f"job:{job.job_id}", "watchers": 2} in stats["rooms"]
    assert {"room": "user:bob#batch", "watchers": 1} in stats["rooms"]
    assert stats["rooms_total"] == 2  # a connection's own room is not listed
    assert stats["jobs"] == {"queued": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 0}
    assert stats["instance"] and stats["message_queue"] is False
    mine = stats["user_connections"]
    assert len(mine) == 2 and all(c["rooms"] == [f"job:{job.job_id}"] for c in mine)
    limited = http.get("/api/admin/stats?limit=1", headers=ADMIN).get_json()
    assert len(limited["users"]) == 1 and len(limited["rooms"]) == 1
    assert "user_connections" not in limited


def test_disconnect_a_user_drops_theirs_and_no_one_elses(http, connect):
    alice1, alice2, bob = connect("alice"), connect("alice"), connect("bob")
    response = http.post("/api/admin/disconnect", json={"user": "alice"}, headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json()["disconnected"] == 2
    assert not alice1.connected and not alice2.connected
    assert bob.connected and bob.ok("ping")
    # Nobody left to drop.
    again = http.post("/api/admin/disconnect", json={"user": "alice"}, headers=ADMIN)
    assert again.get_json()["disconnected"] == 0


def test_disconnect_one_connection_by_sid(http, connect):
    first, second = connect("alice"), connect("alice")
    listed = http.get("/api/admin/stats?user=alice", headers=ADMIN).get_json()
    sids = [c["sid"] for c in listed["user_connections"]]
    assert len(sids) == 2
    response = http.post("/api/admin/disconnect", json={"sid": sids[0]}, headers=ADMIN)
    assert response.get_json()["disconnected"] == 1
    assert response.get_json()["all_servers"] is True
    assert [first.connected, second.connected].count(True) == 1


def test_a_notice_reaches_everyone_or_one_user(http, connect):
    alice, bob = connect("alice"), connect("bob")
    everyone = http.post(
        "/api/admin/notice", json={"message": "maintenance at 18:00"}, headers=ADMIN
    ).get_json()
    notice = everyone["notice"]
    assert everyone["delivered"] == 2
    assert everyone["all_servers"] is True  # no message queue: this server is all of them
    assert set(notice) == {"id", "message", "level", "ts"}
    assert notice["message"] == "maintenance at 18:00" and notice["level"] == "info"
    assert notices(alice) == [notice] and notices(bob) == [notice]

    one = http.post(
        "/api/admin/notice",
        json={"message": "your import is paused", "level": "warning", "user": "bob"},
        headers=ADMIN,
    ).get_json()
    assert one["delivered"] == 1
    assert notices(bob) == [one["notice"]] and notices(alice) == []

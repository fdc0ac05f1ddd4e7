"""The operator's view over the wire (issue 15): /metrics, the admin API and
the Socket.IO Admin UI, on real gunicorn+eventlet servers.

One cluster for the module: two instances on one Redis (store and message
queue), each with a metrics token and the Admin UI on, and nginx (the
deploy/ config) in front of the first.
"""

from __future__ import annotations

import json
import queue
import threading

import pytest
import redis as redis_py
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import (
    DOC_STAGES,
    Nginx,
    RedisServer,
    ServerProcess,
    SocketClient,
    other_events,
    token_for,
    wait_until,
)

pytestmark = pytest.mark.server

METRICS_TOKEN = "scrape-" + "t" * 24
ADMIN_UI = {"username": "ops", "password": "correct horse battery"}
ADMIN = {"Authorization": f"Bearer {token_for('root', admin=True)}"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("operator")
    redis_srv = RedisServer(base).start()
    env = {
        "PROGRESSCAST_STORE_URL": f"{redis_srv.url}?prefix=operator",
        "PROGRESSCAST_MESSAGE_QUEUE_URL": redis_srv.url,
        "PROGRESSCAST_METRICS_TOKEN": METRICS_TOKEN,
        "PROGRESSCAST_ADMIN_UI_USERNAME": ADMIN_UI["username"],
        "PROGRESSCAST_ADMIN_UI_PASSWORD": ADMIN_UI["password"],
        "PROGRESSCAST_ADMIN_UI_MODE": "development",
    }
    servers = []
    nginx = None
    try:
        for name in ("a", "b"):
            (base / name).mkdir()
            servers.append(ServerProcess(base / name, env=env).start())
        nginx = Nginx(base / "nginx", [servers[0].port]).start()
        yield {"a": servers[0], "b": servers[1], "nginx": nginx, "redis": redis_srv}
    finally:
        if nginx is not None:
            nginx.stop()
        # Side by side: each takes a couple of seconds to stop.
        stopping = [threading.Thread(target=server.stop) for server in servers]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        redis_srv.stop()


@pytest.fixture
def clients():
    made: list[SocketClient] = []

    def make(url: str, user: str) -> SocketClient:
        made.append(SocketClient(url, user))
        return made[-1]

    yield make
    for client in made:
        client.close()


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple], float]:
    response = requests.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# ---------------------------------------------------------------- metrics


def test_metrics_parse_and_move_with_the_traffic(cluster, clients):
    server = cluster["a"]
    before = scrape(server.url)
    alice = clients(server.url, "alice")
    assert alice.call("ping")["ok"]
    job = server.http("POST", "/api/jobs", json={"name": "n", "stages": DOC_STAGES}).json()
    assert alice.call("join_job", {"job_id": job["job_id"]})["ok"]
    server.http("POST", f"/api/jobs/{job['job_id']}/events", json={"type": "job_started"})
    assert alice.next_event()["type"] == "job_started"
    during = scrape(server.url)
    assert value(during, "progresscast_connections", transport="websocket") >= 1
    alice.close()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    def left(samples):
        # python-socketio's client may close its websocket before its
        # goodbye goes out: then the server sees a transport close
        return sum(
            value(samples, "progresscast_disconnects_total", reason=reason)
            for reason in ("client", "transport_close")
        )

    after = wait_until(
        lambda: (s := scrape(server.url)) and left(s) > left(before) and s,
        10,
        what="the disconnect to be counted",
    )
    assert moved("progresscast_connects_total") == 1
    assert moved("progresscast_socket_requests_total", request="ping", result="ok") == 1
    assert moved("progresscast_socket_requests_total", request="join_job", result="ok") == 1
    assert moved("progresscast_events_stored_total", type="job_queued") == 1
    assert moved("progresscast_events_stored_total", type="job_started") == 1
    assert moved("progresscast_deliveries_total") >= 1
    assert moved("progresscast_store_append_seconds_count") == 2
    assert value(after, "progresscast_jobs", status="running") >= 1
    assert value(after, "progresscast_queue_subscribed") == 1


def test_metrics_through_nginx_need_the_token(cluster):
    # Behind the proxy every request comes from 127.0.0.1: its headers tell.
    proxied = cluster["nginx"].url
    refused = requests.get(proxied + "/metrics", timeout=10)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    wrong = requests.get(proxied + "/metrics", headers=ADMIN, timeout=10)
    assert wrong.status_code == 401
    samples = scrape(proxied, Authorization=f"Bearer {METRICS_TOKEN}")
    assert ("progresscast_connects_total", ()) in samples


# ------------------------------------------------------------------ admin


def test_admin_actions_are_refused_to_everyone_but_admins(cluster):
    server = cluster["a"]
    for method, path, body in (
        ("GET", "/api/admin/stats", None),
        ("POST", "/api/admin/disconnect", {"user": "nobody"}),
        ("POST", "/api/admin/notice", {"message": "hi", "user": "nobody"}),
    ):
        assert server.http(method, path, user=None, json=body).status_code == 401
        assert server.http(method, path, user="alice", json=body).status_code == 403
        assert server.http(method, path, user=None, headers=ADMIN, json=body).status_code == 200


def test_a_notice_and_a_disconnect_reach_every_instance(cluster, clients):
    a, b = cluster["a"], cluster["b"]
    carol_b = clients(b.url, "carol")  # on the other instance than the one asked
    carol_a = clients(a.url, "carol")
    dave = clients(b.url, "dave")
    assert carol_b.call("ping")["instance"] != carol_a.call("ping")["instance"]

    sent = a.http(
        "POST", "/api/admin/notice", user=None, headers=ADMIN, json={"message": "18:00 maintenance"}
    ).json()
    for client in (carol_a, carol_b, dave):
        assert other_events(client, "notice")[1] == sent["notice"]

    to_dave = a.http(
        "POST",
        "/api/admin/notice",
        user=None,
        headers=ADMIN,
        json={"message": "hi", "user": "dave"},
    ).json()
    assert to_dave["delivered"] == 0  # dave is on the other instance
    assert other_events(dave, "notice")[1] == to_dave["notice"]

    dropped = a.http(
        "POST", "/api/admin/disconnect", user=None, headers=ADMIN, json={"user": "carol"}
    ).json()
    assert dropped["disconnected"] == 1  # the one here; b drops its own
    before_drop: list = []
    other_events(carol_a, "disconnect", skipped=before_drop)
    other_events(carol_b, "disconnect", skipped=before_drop)
    assert dave.call("ping")["ok"]  # nobody else
    # dave's notice reached neither of carol's connections (it was sent
    # before the disconnect, through the same queue), and nothing more came to dave.
    assert [e for e in before_drop if e[0] == "notice"] == [], before_drop
    assert all(name != "notice" for name, _ in list(dave.other.queue))
    wait_until(
        lambda: value(scrape(b.url), "progresscast_disconnects_total", reason="admin") >= 1,
        10,
        what="the other instance to count its admin disconnect",
    )


def test_a_forged_admin_command_on_the_queue_does_nothing(cluster, clients):
    """Admin commands travel between servers signed with the token secret:
    one that anybody with access to the channel publishes is dropped."""
    erin = clients(cluster["b"].url, "erin")
    forged = {
        "method": "emit",
        "event": "progresscast:admin",
        "data": [{"action": "disconnect", "user": "erin"}, "0" * 64],
        "binary": False,
        "namespace": "/progress",
        "room": "progresscast:admin",
        "skip_sid": None,
        "callback": None,
        "host_id": "forger",
    }
    conn = redis_py.Redis.from_url(cluster["redis"].url)
    try:
        assert conn.publish("flask-socketio", json.dumps(forged)) == 2  # both servers
    finally:
        conn.close()
    # A real command after it, through the same queue, is carried out: by
    # then the forged one was handled, and erin is still there.
    sent = (
        cluster["a"]
        .http("POST", "/api/admin/notice", user=None, headers=ADMIN, json={"message": "after"})
        .json()
    )
    assert other_events(erin, "notice")[1] == sent["notice"]
    assert erin.call("ping")["ok"]


# ------------------------------------------------------------- Admin UI


def admin_ui_client(url: str, auth: dict) -> tuple[socketio.Client, queue.Queue]:
    events: queue.Queue = queue.Queue()
    sio = socketio.Client(reconnection=False)
    sio.on("*", lambda event, *args: events.put((event, args)), namespace="/admin")
    sio.connect(url, namespaces=["/admin"], auth=auth, transports=["websocket"], wait_timeout=10)
    return sio, events


def test_the_admin_ui_sees_the_fast_path_connections(cluster, clients):
    server = cluster["a"]
    with pytest.raises(socketio.exceptions.ConnectionError):
        admin_ui_client(server.url, {**ADMIN_UI, "password": "wrong"})[0].shutdown()

    erin = clients(server.url, "erin")
    job = server.http("POST", "/api/jobs", user="erin", json={"name": "n", "stages": DOC_STAGES})
    job_id = job.json()["job_id"]
    assert erin.call("join_job", {"job_id": job_id})["ok"]
    stats = server.http("GET", "/api/admin/stats?user=erin", user=None, headers=ADMIN).json()
    (mine,) = stats["user_connections"]
    assert mine["transport"] == "websocket" and stats["direct_websockets"] >= 1

    ui, events = admin_ui_client(server.url, ADMIN_UI)
    try:

        def seen(name):
            while True:
                event, args = events.get(timeout=10)
                if event == name:
                    return args

        sockets = seen("all_sockets")[0]
        listed = {s["id"]: s for s in sockets}
        assert listed[mine["sid"]]["transport"] == "websocket"
        assert listed[mine["sid"]]["nsp"] == "/progress"
        # Events still go out on the fast path, and the UI hears of them.
        server.http("POST", f"/api/jobs/{job_id}/events", user="erin", json={"type": "job_started"})
        assert erin.next_event()["type"] == "job_started"
        while True:
            namespace, sid, (event, *_) = seen("event_sent")[:3]
            if sid == mine["sid"]:
                break
        assert (namespace, event) == ("/progress", "job_started")
        after = server.http("GET", "/api/admin/stats", user=None, headers=ADMIN).json()
        assert after["direct_websockets"] >= 1
    finally:
        ui.shutdown()

"""Limits on a real server: connections per user and in total, request
floods on a socket and over HTTP, oversized messages and bodies.

Two servers: one with small connection limits (3 per user, 5 in total) for
the connection tests, and one with the production defaults (SOCKET_RATE 20/s,
burst 40, strikes 5/s burst 50; HTTP_RATE 50/s, burst 100; 16 KiB socket
messages, 64 KiB HTTP bodies) for the rest. Each test on the shared default
server uses its own user names, so buckets and counters never carry over.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
import requests

from progresscast.flask.settings import Defaults
from tests.harness import NAMESPACE, SocketClient, token_for, wait_until

from .support import (
    DROPPED,
    bearer,
    call_or_drop,
    check_ack,
    check_error_body,
    discard,
    refused_connect,
    running_server,
)

pytestmark = pytest.mark.server

PER_USER = 3
TOTAL = 5
BUFFER = 16 * 1024  # MAX_HTTP_BUFFER_SIZE
MAX_BODY = 64 * 1024  # MAX_CONTENT_LENGTH
HTTP_RATE = Defaults.HTTP_RATE  # the default server's: requests a second per user
SOCKET_RATE = Defaults.SOCKET_RATE  # and per Socket.IO connection


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("small"),
        PROGRESSCAST_MAX_CONNECTIONS_PER_USER=str(PER_USER),
        PROGRESSCAST_MAX_CONNECTIONS=str(TOTAL),
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """The production limits (nothing overridden but the harness basics)."""
    with running_server(tmp_path_factory.mktemp("defaults")) as srv:
        yield srv


@pytest.fixture
def opened():
    """Clients opened by a test, closed after it whatever happens."""
    made: list[SocketClient] = []
    yield made
    for client in made:
        discard(client)


def open_client(made: list, url: str, user: str, **claims: Any) -> SocketClient:
    client = SocketClient(url, token=token_for(user, **claims))
    made.append(client)
    return client


def assert_too_many(data: Any, what: str) -> None:
    """connect_error data: python-socketio hands the handler {message, data}."""
    assert isinstance(data, dict) and isinstance(data.get("data"), dict), data
    check_error_body(data["data"])
    assert data["data"]["code"] == "too_many_connections", data
    assert what in data["data"]["message"], data


def connects_eventually(url: str, user: str, made: list, timeout: float = 10) -> SocketClient:
    """Connect as soon as the server has counted a closed connection out."""

    def attempt():
        try:
            return open_client(made, url, user)
        except Exception:
            return None

    return wait_until(attempt, timeout, interval=0.05, what=f"a connection for {user}")


# ------------------------------------------------------------ connections


def test_connection_limits_per_user_and_in_total(small_server, opened):
    url = small_server.url
    alices = [open_client(opened, url, "alice") for _ in range(PER_USER)]
    assert all(c.call("ping")["ok"] for c in alices)

    # the (N+1)th connection of one user is refused ...
    assert_too_many(refused_connect(url, token_for("alice")), "per user")
    # ... while another user still connects, and alice's open ones still work
    bob = open_client(opened, url, "bob")
    assert bob.call("ping")["ok"] and alices[0].call("ping")["ok"]

    # a closed connection frees its slot
    discard(alices.pop())
    alices.append(connects_eventually(url, "alice", opened))

    # 3 alice + bob + carol = 5 = TOTAL: the next one, of anyone, is refused
    carol = open_client(opened, url, "carol")
    assert carol.call("ping")["ok"]
    assert_too_many(refused_connect(url, token_for("dave")), "full")
    assert_too_many(refused_connect(url, token_for("bob")), "full")
    # refused attempts took nothing: everyone connected is still served
    assert all(c.call("ping")["ok"] for c in [*alices, bob, carol])

    discard(carol)
    dave = connects_eventually(url, "dave", opened)
    assert dave.call("ping")["ok"]
    assert requests.get(url + "/healthz", timeout=5).status_code == 200


# ------------------------------------------------------------------ floods


def test_socket_flood_is_rate_limited_then_disconnected_while_others_are_served(
    default_server, opened
):
    url = default_server.url
    victim = open_client(opened, url, "victim-s")
    job = requests.post(
        url + "/api/jobs",
        json={"name": "watched", "stages": ["a"], "start": True},
        headers=bearer(token_for("victim-s")),
        timeout=10,
    ).json()
    assert victim.call("join_job", {"job_id": job["job_id"]})["ok"]
    flooder = open_client(opened, url, "flooder-s")
    flood_acks: queue.Queue = queue.Queue()
    progress = 0.0
    served_during = 0

    def victim_round() -> None:
        """The victim is answered and gets its job's events live."""
        nonlocal progress
        progress = min(100.0, progress + 1)
        ack = victim.call("ping", timeout=5)
        assert ack["ok"] is True, ack
        r = requests.post(
            f"{url}/api/jobs/{job['job_id']}/events",
            json={"type": "progress_update", "stage": "a", "stage_progress": progress},
            headers=bearer(token_for("victim-s")),
            timeout=10,
        )
        assert r.status_code == 201, r.text
        posted = r.json()["events"][-1]
        while True:
            event = victim.next_event(timeout=5)
            if event["seq"] == posted["seq"]:
                assert event == posted
                return

    sent = 0
    deadline = time.monotonic() + 20
    victim_due = time.monotonic()
    while flooder.sio.connected and NAMESPACE in flooder.sio.namespaces:
        assert time.monotonic() < deadline, "the flood was never cut off"
        for _ in range(25):  # a burst of requests, never waiting for their acks
            flooder.sio.emit("ping", {}, namespace=NAMESPACE, callback=flood_acks.put)
            sent += 1
        # The victim keeps to half its own rate limit, as a well-behaved client
        # would: on a fast machine its rounds alone could otherwise outrun it.
        time.sleep(max(0.0, victim_due - time.monotonic()))
        victim_due = time.monotonic() + 2 / SOCKET_RATE
        victim_round()
        served_during += 1

    acks = []
    while not flood_acks.empty():
        acks.append(flood_acks.get_nowait())
    codes = {a.get("error", {}).get("code", "ok") for a in acks}
    for ack in acks:
        check_ack(ack)
    assert "rate_limited" in codes, codes
    assert codes <= {"ok", "rate_limited"}, codes
    assert served_during >= 2
    print(
        f"\nsocket flood: {sent} sent, {len(acks)} acked, codes {sorted(codes)};"
        f" victim served {served_during} rounds during the flood"
    )

    # after the flood: the victim is still served, the flooder may come back
    for _ in range(3):
        victim_round()
    again = open_client(opened, url, "flooder-s")
    assert again.call("ping")["ok"] is True


def test_http_flood_gets_429_while_another_user_is_served(default_server):
    url = default_server.url
    attacker, victim = requests.Session(), requests.Session()
    attacker.headers.update(bearer(token_for("flooder-h")))
    victim.headers.update(bearer(token_for("victim-h")))
    try:
        statuses = []
        limited = None
        for i in range(2000):
            r = attacker.get(url + "/api/jobs", timeout=10)
            statuses.append(r.status_code)
            if r.status_code == 429:
                limited = r
                break
            if i % 10 == 0:
                assert victim.get(url + "/api/jobs", timeout=10).status_code == 200
        assert limited is not None, "no 429 after 2000 requests"
        assert set(statuses[:-1]) == {200}, statuses
        body = check_error_body(limited.json())
        assert body["code"] == "rate_limited", body
        # The flood goes on: the attacker gets no more than its bucket refills
        # (HTTP_RATE a second, whatever the pace this machine allows), the
        # victim is served.
        started = time.monotonic()
        more = [attacker.get(url + "/api/jobs", timeout=10).status_code for _ in range(20)]
        refilled = HTTP_RATE * (time.monotonic() - started) + 1
        assert set(more) <= {200, 429}, more
        assert more.count(200) <= refilled, (more, refilled)
        for _ in range(5):
            assert victim.get(url + "/api/jobs", timeout=10).status_code == 200
        print(f"\nhttp flood: 429 after {len(statuses)} requests")
    finally:
        attacker.close()
        victim.close()


# --------------------------------------------------------------- oversized


def test_oversized_socket_message_costs_only_its_own_connection(default_server, opened):
    url = default_server.url
    bystander = open_client(opened, url, "bystander")
    big = open_client(opened, url, "big-sender")
    ack = call_or_drop(big, "ping", {"x": "a" * (BUFFER + 4096)})
    if ack != DROPPED:  # refusing the message is fine too
        check_ack(ack)
        assert ack["ok"] is False, ack
    # a message just under the limit is handled as usual
    fresh = open_client(opened, url, "big-sender")
    small = call_or_drop(fresh, "ping", {"x": "a" * (BUFFER - 1024)})
    assert small != DROPPED and small["ok"] is False, small
    assert small["error"]["code"] == "invalid_payload", small
    assert fresh.call("ping")["ok"] is True
    assert bystander.call("ping")["ok"] is True
    assert requests.get(url + "/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("path", ["/api/jobs", "/api/jobs/{id}/events", "/api/jobs/{id}/cancel"])
def test_oversized_http_body_is_413_json(default_server, path):
    url = default_server.url
    headers = {**bearer(token_for("big-poster")), "Content-Type": "application/json"}
    job_id = requests.post(
        url + "/api/jobs", json={"name": "j", "stages": ["a"]}, headers=headers, timeout=10
    ).json()["job_id"]
    target = url + path.replace("{id}", job_id)
    payload = b'{"name": "' + b"a" * (MAX_BODY + 1024) + b'", "stages": ["a"]}'

    r = requests.post(target, data=payload, headers=headers, timeout=10)
    assert r.status_code == 413, r.text[:300]
    assert check_error_body(r.json())["code"] == "payload_too_large"

    # the same body without a Content-Length (chunked) is refused too
    def chunks():
        for i in range(0, len(payload), 8192):
            yield payload[i : i + 8192]

    r = requests.post(target, data=chunks(), headers=headers, timeout=10)
    assert r.status_code in {400, 413}, (r.status_code, r.text[:300])
    check_error_body(r.json())

    assert requests.get(url + "/healthz", timeout=5).status_code == 200
    ok = requests.get(f"{url}/api/jobs/{job_id}", headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.json()["status"] == "queued"  # nothing was applied

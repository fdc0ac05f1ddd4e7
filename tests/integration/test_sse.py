"""SSE streams over the wire (issue 15, docs/protocol.md "SSE streams"), on
real gunicorn servers: curl and a Python client, resume with Last-Event-ID
(after a dropped stream and a server restart), nginx without buffering,
workers' events on two instances, access, slow readers, metrics.

Two setups for the module: one eventlet server on SQLite with nginx in
front, and two instances on one Redis (store and message queue), the second
under gevent.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from progresscast import ProgressTracker
from tests.harness import Nginx, RedisServer, ServerProcess, token_for, wait_until
from tests.sse_client import Message, SSEStream, parse

pytestmark = pytest.mark.server

STAGES = [{"name": "fetch", "weight": 1}, {"name": "load", "weight": 3}]
ENV = {
    "PROGRESSCAST_SSE_HEARTBEAT": "0.3",
    "PROGRESSCAST_SSE_RETRY_MS": "500",
    "PROGRESSCAST_SSE_MAX_BACKLOG": "8",
    "PROGRESSCAST_MAX_CONNECTIONS_PER_USER": "4",
    # the slow reader test posts a few hundred events at once
    "PROGRESSCAST_HTTP_RATE": "2000",
    "PROGRESSCAST_HTTP_BURST": "2000",
}


def auth(user: str, **claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user, **claims)}"}


def side_by_side(calls) -> None:
    """Run each call in a thread of its own and wait for all (a server takes
    a second or two to start and to stop)."""
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Every process of the module, started and stopped side by side: one
    eventlet server on SQLite with nginx (deploy/nginx.conf) in front, and
    two instances on one Redis, ``a`` under eventlet and ``b`` under gevent."""
    base = tmp_path_factory.mktemp("sse")
    redis_srv = RedisServer(base).start()
    shared = {
        **ENV,
        "PROGRESSCAST_STORE_URL": f"{redis_srv.url}?prefix=sse",
        "PROGRESSCAST_MESSAGE_QUEUE_URL": redis_srv.url,
    }
    for name in ("single", "a", "b"):
        (base / name).mkdir()
    procs = {
        "single": ServerProcess(base / "single", env=ENV),
        "a": ServerProcess(base / "a", env=shared),
        "b": ServerProcess(
            base / "b", env={**shared, "PROGRESSCAST_ASYNC_MODE": "gevent"}, worker="gevent"
        ),
    }
    nginx = None
    try:
        side_by_side(p.start for p in procs.values())
        for p in procs.values():
            assert p.app is not None, p.log()
        nginx = Nginx(base / "nginx", [procs["single"].port]).start()
        yield {**procs, "nginx": nginx, "redis": redis_srv}
    finally:
        if nginx is not None:
            nginx.stop()
        side_by_side(p.stop for p in procs.values())
        redis_srv.stop()


@pytest.fixture(scope="module")
def single(servers):
    return servers["single"], servers["nginx"]


@pytest.fixture(scope="module")
def server(servers):
    return servers["single"]


@pytest.fixture(scope="module")
def cluster(servers):
    return servers


def create(server: ServerProcess, user: str = "alice") -> str:
    r = server.http("POST", "/api/jobs", user, json={"name": "sse job", "stages": STAGES})
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def post(server: ServerProcess, job: str, event: dict, user: str = "alice") -> list[dict]:
    r = server.http("POST", f"/api/jobs/{job}/events", user, json=event)
    assert r.status_code == 201, r.text
    return r.json()["events"]


#: a job's run after job_queued (seq 1): seq 2..6
RUN = [
    {"type": "job_started"},
    {"type": "progress_update", "stage": "fetch", "stage_progress": 50},
    {"type": "progress_update", "stage": "load", "stage_progress": 10},  # + stage_completed
    {"type": "job_completed", "result": {"rows": 3}},  # + stage_completed
]


def job_events(messages: list[Message]) -> list[tuple[int, str]]:
    return [(m.data["seq"], m.event) for m in messages if m.event not in ("snapshot", "truncated")]


def stream_url(server, job: str) -> str:
    return f"{server.url}/api/jobs/{job}/stream"


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no {name} {labels} in /metrics")


# ----------------------------------------------------------------- 1. live


def test_curl_and_a_python_client_see_a_job_live_to_its_end(server):
    job = create(server)
    curl = subprocess.Popen(
        [
            "curl",
            "-sN",
            "--max-time",
            "20",
            "-H",
            f"Authorization: Bearer {token_for('alice')}",
            stream_url(server, job),
        ],
        stdout=subprocess.PIPE,
        bufsize=0,  # unbuffered: communicate() reads the pipe itself after our readline()s
    )
    try:
        # curl has the snapshot: it is registered for live events
        lines = []
        while not any(line.startswith(b"data: ") for line in lines):
            line = curl.stdout.readline()
            assert line, "curl ended before the snapshot"
            lines.append(line)
        with SSEStream(stream_url(server, job), auth("alice")) as py:
            assert py.status == 200
            headers = py.response.headers
            assert headers["Content-Type"].startswith("text/event-stream")
            assert headers["Cache-Control"] == "no-cache"
            assert headers["X-Accel-Buffering"] == "no"
            first = py.next()
            assert first.event == "snapshot" and first.id == "1", first
            assert first.data["job_id"] == job and first.data["status"] == "queued"
            assert py.retry == 500
            for event in RUN:
                post(server, job, event)
            rest = py.until_end()
        out, _ = curl.communicate(timeout=20)
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.communicate()
    expected = [
        (2, "job_started"),
        (3, "progress_update"),
        (4, "stage_completed"),
        (5, "progress_update"),
        (6, "stage_completed"),
        (7, "job_completed"),
    ]
    assert job_events(rest) == expected
    assert [m.id for m in rest] == [str(seq) for seq, _ in expected]
    assert rest[-1].data["result"] == {"rows": 3}
    assert curl.returncode == 0  # the server ended the response
    blocks = (b"".join(lines) + out).split(b"\n\n")
    from_curl = [m for m in (parse(b)[0] for b in blocks) if m is not None]
    assert from_curl[0].event == "snapshot"
    assert job_events(from_curl[1:]) == expected


# ----------------------------------------------------------------- 2. resume


def test_resume_with_last_event_id_after_a_dropped_stream(server):
    job = create(server)
    post(server, job, RUN[0])
    with SSEStream(stream_url(server, job), auth("alice")) as first:
        assert first.next().id == "2"  # the snapshot
        post(server, job, RUN[1])
        got = first.next()
        assert (got.id, got.event) == ("3", "progress_update")
    # dropped; meanwhile the job goes on
    post(server, job, RUN[2])
    headers = {**auth("alice"), "Last-Event-ID": "3"}
    # the header wins over ?since=
    with SSEStream(stream_url(server, job) + "?since=0", headers) as again:
        snapshot = again.next()
        assert snapshot.event == "snapshot" and snapshot.id is None  # the client's id stays 3
        assert snapshot.data["seq"] == 5
        assert job_events([again.next(), again.next()]) == [
            (4, "stage_completed"),
            (5, "progress_update"),
        ]
        post(server, job, RUN[3])
        assert job_events(again.until_end()) == [(6, "stage_completed"), (7, "job_completed")]
    # ?since= alone, on the ended job: the missed events, then the end
    with SSEStream(stream_url(server, job) + "?since=5", auth("alice")) as late:
        assert job_events(late.until_end()) == [(6, "stage_completed"), (7, "job_completed")]
    # beyond the job's seq (a reset store): truncated, the snapshot is the base
    with SSEStream(stream_url(server, job), {**auth("alice"), "Last-Event-ID": "99"}) as reset:
        messages = reset.until_end()
        assert [(m.event, m.id) for m in messages] == [("snapshot", "7"), ("truncated", None)]
        assert messages[1].data == {"job_id": job, "since": 99, "seq": 7}
    bad = refusal(stream_url(server, job), headers={**auth("alice"), "Last-Event-ID": "x"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_payload"


def test_resume_after_a_server_restart(cluster):
    a, b = cluster["a"], cluster["b"]
    job = create(a)
    post(a, job, RUN[0])
    with SSEStream(stream_url(b, job), auth("alice")) as first:
        assert first.next().id == "2"
        post(a, job, RUN[1])  # through the message queue to b
        assert first.next().id == "3"
    b.stop()
    post(a, job, RUN[2])  # seq 4, 5 while b is down
    b.start(port=b.port)
    with SSEStream(stream_url(b, job), {**auth("alice"), "Last-Event-ID": "3"}) as again:
        assert again.next().event == "snapshot"
        assert job_events([again.next(), again.next()]) == [
            (4, "stage_completed"),
            (5, "progress_update"),
        ]
        post(a, job, RUN[3])
        assert job_events(again.until_end()) == [(6, "stage_completed"), (7, "job_completed")]


# ----------------------------------------------------------------- 4. nginx


def test_through_nginx_each_event_arrives_while_the_stream_is_open(single):
    server, nginx = single
    job = create(server)
    with SSEStream(f"{nginx.url}/api/jobs/{job}/stream", auth("alice")) as sse:
        assert sse.next().event == "snapshot"
        waits = []
        # Each event must arrive before the next one is posted: a buffering
        # proxy would hold it until the response ends (the read times out).
        for event in RUN[:2]:
            posted = time.monotonic()
            post(server, job, event)
            got = sse.next()
            waits.append(time.monotonic() - posted)
            assert got is not None and not sse.ended
            assert got.event == event["type"]
        post(server, job, RUN[3])
        assert job_events(sse.until_end())[-1][1] == "job_completed"
    print(f"nginx: first live event after {waits[0] * 1000:.1f} ms")


# ----------------------------------------------------------------- 5. workers


def test_a_workers_events_reach_streams_on_two_instances(cluster):
    a, b, redis_srv = cluster["a"], cluster["b"], cluster["redis"]
    worker = ProgressTracker.from_urls(f"{redis_srv.url}?prefix=sse", redis_srv.url)
    try:
        job = worker.create_job("worker job", STAGES, owner="carol").job_id
        streams = [
            SSEStream(stream_url(a, job), auth("carol")),
            SSEStream(stream_url(b, job), auth("carol")),
            SSEStream(f"{b.url}/api/stream", auth("carol")),
        ]
        try:
            for s in streams[:2]:
                assert s.next().event == "snapshot"
            listed = streams[2].next()
            assert listed.event == "jobs"
            assert [j["job_id"] for j in listed.data["jobs"]] == [job]
            for event in RUN:
                kind = event["type"]
                worker.apply(job, kind, **{k: v for k, v in event.items() if k != "type"})
            expected = [
                (2, "job_started"),
                (3, "progress_update"),
                (4, "stage_completed"),
                (5, "progress_update"),
                (6, "stage_completed"),
                (7, "job_completed"),
            ]
            for s in streams[:2]:
                assert job_events(s.until_end()) == expected
            watched = [streams[2].next() for _ in expected]
            assert job_events(watched) == expected
            assert watched[0].id == f"{job}:2"
        finally:
            for s in streams:
                s.close()
    finally:
        worker.close()


def refusal(url: str, **kwargs) -> requests.Response:
    """GET a URL that must be refused: the answer is read only when it is not
    a stream, so a regression fails here instead of hanging on its pings."""
    kwargs.pop("timeout", None)
    response = requests.get(url, stream=True, timeout=5, **kwargs)
    try:
        if response.status_code == 200:
            raise AssertionError(f"{url} was not refused")
        response.content  # noqa: B018 (a small JSON error, read before closing)
        return response
    finally:
        response.close()


# ----------------------------------------------------------------- 6. access


def test_access_rules(server):
    job_a, job_b = create(server), create(server)
    bobs = refusal(stream_url(server, job_a), headers=auth("bob"), timeout=5)
    missing = refusal(stream_url(server, "no-such-job"), headers=auth("bob"), timeout=5)
    assert bobs.status_code == missing.status_code == 404
    assert bobs.json()["code"] == missing.json()["code"] == "not_found"
    anonymous = refusal(stream_url(server, job_a), timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"
    assert refusal(f"{server.url}/api/stream", timeout=5).status_code == 401
    everyone = refusal(f"{server.url}/api/stream?all=1", headers=auth("bob"), timeout=5)
    assert everyone.status_code == 403

    # a stream token bound to job A opens A only
    minted = server.http("POST", "/api/stream-tokens", json={"job_id": job_a})
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    assert minted.json()["expires_in"] == 60
    with SSEStream(f"{stream_url(server, job_a)}?stream_token={token}") as sse:
        assert sse.status == 200 and sse.next().data["job_id"] == job_a
    other = refusal(f"{stream_url(server, job_b)}?stream_token={token}", timeout=5)
    assert other.status_code == 403 and other.json()["code"] == "forbidden"
    user = refusal(f"{server.url}/api/stream?stream_token={token}", timeout=5)
    assert user.status_code == 403
    # it is no bearer token, and a bearer token is no stream token
    as_bearer = refusal(
        f"{server.url}/api/jobs/{job_a}", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert as_bearer.status_code == 401
    long_lived = token_for("alice")
    in_url = refusal(f"{stream_url(server, job_a)}?stream_token={long_lived}", timeout=5)
    assert in_url.status_code == 401
    # minting for a job one cannot read: 404
    assert (
        server.http("POST", "/api/stream-tokens", "bob", json={"job_id": job_a}).status_code == 404
    )
    # a share link's stream token reads the shared job
    shared = server.http(
        "POST", "/api/stream-tokens", None, headers=auth("bob", jobs=[job_b]), json={}
    ).json()["token"]
    with SSEStream(f"{stream_url(server, job_b)}?stream_token={shared}") as sse:
        assert sse.status == 200 and sse.next().event == "snapshot"


def test_streams_count_toward_the_connection_limits(server):
    job = create(server, "dave")
    streams = [SSEStream(stream_url(server, job), auth("dave")) for _ in range(4)]
    try:
        for s in streams:
            assert s.status == 200 and s.next().event == "snapshot"
        refused = requests.get(stream_url(server, job), headers=auth("dave"), timeout=5)
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_connections"
    finally:
        for s in streams:
            s.close()

    # the server notices the closed streams at its next heartbeat
    def admitted():
        r = requests.get(stream_url(server, job), headers=auth("dave"), stream=True, timeout=5)
        r.close()
        return r.status_code == 200

    wait_until(admitted, 10, what="a stream admitted again")


# ------------------------------------------------------------ 7. slow reader


@pytest.mark.parametrize("name", ["single", "b"])  # eventlet, gevent
def test_a_slow_reader_is_cut_off_while_a_normal_one_gets_everything(servers, name):
    server = servers[name]
    job = create(server)
    post(server, job, RUN[0])
    cut_before = metric(server, "progresscast_disconnects_total", reason="slow_reader")
    # a client that connects, asks for the stream and never reads, with a
    # small receive window so the server's writes stall soon
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(10)
    try:
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(
            f"GET /api/jobs/{job}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token_for('alice')}\r\n\r\n".encode()
        )
        with SSEStream(stream_url(server, job), auth("alice")) as normal:
            assert normal.next().event == "snapshot"
            got: list[Message] = []

            # read as it comes, as a normal client does
            def read_all():
                with contextlib.suppress(Exception):  # the test fails on `got`
                    got.extend(normal.until_end())

            reader = threading.Thread(target=read_all)
            reader.start()
            wait_until(
                lambda: metric(server, "progresscast_sse_streams") >= 2, 5, what="both streams"
            )
            big = "x" * 2000
            sent = 0
            # events until the slow one is cut (its backlog passes SSE_MAX_BACKLOG = 8)
            while (
                metric(server, "progresscast_disconnects_total", reason="slow_reader") == cut_before
            ):
                assert sent < 600, "the slow reader was never cut off"
                for _ in range(10):
                    update = {"type": "progress_update", "stage": "fetch", "message": big}
                    post(server, job, {**update, "stage_progress": sent % 100})
                    sent += 1
            post(server, job, {"type": "job_completed"})
            reader.join(20)
            assert not reader.is_alive()
        seqs = [m.data["seq"] for m in got]
        assert seqs == list(range(3, 3 + sent + 2)), seqs[-5:]  # + stage_completed, job_completed
        assert got[-1].event == "job_completed"
        # the slow reader's connection was closed under it: EOF before the end
        data = b""
        while chunk := slow.recv(65536):
            data += chunk
        assert b"job_completed" not in data
    finally:
        slow.close()


# ----------------------------------------------------------------- 8. metrics


def test_the_sse_streams_gauge_rises_and_falls(server):
    job = create(server, "erin")
    before = metric(server, "progresscast_sse_streams")
    one = SSEStream(stream_url(server, job), auth("erin"))
    two = SSEStream(f"{server.url}/api/stream", auth("erin"))
    try:
        assert one.next().event == "snapshot" and two.next().event == "jobs"
        assert metric(server, "progresscast_sse_streams") == before + 2
        post(server, job, {"type": "job_started"}, "erin")
        assert two.next().event == "job_started"
    finally:
        one.close()
        two.close()
    wait_until(
        lambda: metric(server, "progresscast_sse_streams") == before, 10, what="streams closed"
    )

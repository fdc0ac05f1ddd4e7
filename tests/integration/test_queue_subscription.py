"""A server on a message queue delivers what workers publish, or makes its
clients resume: no event is lost to a client that follows docs/protocol.md.

The job store and the message queue are two redis-servers here, so that the
queue alone can be down or restarted while jobs go on being stored.
"""

from __future__ import annotations

import contextlib
import queue
import threading

import pytest
import requests

from progresscast import NAMESPACE, ProgressTracker
from progresscast.client import ordered_socketio_client
from progresscast.protocol import event_rooms
from tests.harness import (
    DOC_STAGES,
    EVENT_TYPES,
    RedisServer,
    ServerProcess,
    close_dropped_websocket,
    free_port,
    token_for,
    wait_until,
)

pytestmark = pytest.mark.server


@pytest.fixture
def store_redis(tmp_path):
    (tmp_path / "store").mkdir()
    srv = RedisServer(tmp_path / "store").start()
    yield srv
    srv.stop()


#: both async modes a server runs under in production (eventlet is retiring)
MODES = pytest.mark.parametrize("mode", ["eventlet", "gevent"])


def make_server(tmp_path, store: RedisServer, queue_port: int, mode: str) -> ServerProcess:
    (tmp_path / "server").mkdir()
    return ServerProcess(
        tmp_path / "server",
        env={
            "PROGRESSCAST_STORE_URL": f"{store.url}?prefix=subs",
            "PROGRESSCAST_MESSAGE_QUEUE_URL": f"redis://127.0.0.1:{queue_port}/0",
            "PROGRESSCAST_QUEUE_READY_TIMEOUT": "1",
            "PROGRESSCAST_ASYNC_MODE": mode,
        },
        worker=mode,
    )


def worker_tracker(store: RedisServer, queue_port: int) -> ProgressTracker:
    """What a worker process uses: the store and a write-only emitter."""
    return ProgressTracker.from_urls(
        f"{store.url}?prefix=subs", f"redis://127.0.0.1:{queue_port}/0"
    )


def ready(server: ServerProcess) -> bool:
    return requests.get(server.url + "/readyz", timeout=5).status_code == 200


class ProtocolClient:
    """A python-socketio client that follows docs/protocol.md's resume rules
    and nothing more: it keeps the highest seq per job, drops what is not
    above it, and rejoins with ``since`` after a reconnect. It records every
    event it applies, and every gap it sees live (it does not repair them)."""

    def __init__(self, url: str, user: str) -> None:
        self.applied: dict[str, list[dict]] = {}
        self.gaps: list[tuple[str, int, int]] = []
        self.disconnects = 0
        self.live: queue.Queue[dict] = queue.Queue()
        self._lock = threading.Lock()
        self.sio = ordered_socketio_client(reconnection=True, reconnection_delay=0.2)
        for kind in EVENT_TYPES:
            self.sio.on(kind, self._on_event, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        self.sio.connect(
            url,
            namespaces=[NAMESPACE],
            auth={"token": token_for(user)},
            transports=["websocket"],
            wait_timeout=10,
        )

    def _on_disconnect(self, reason=None) -> None:
        if reason != self.sio.reason.CLIENT_DISCONNECT:
            self.disconnects += 1
        close_dropped_websocket(self.sio, reason)

    def last(self, job_id: str) -> int:
        events = self.applied.get(job_id, [])
        return events[-1]["seq"] if events else 0

    def _apply(self, event: dict) -> None:
        job_id, last = event["job_id"], self.last(event["job_id"])
        if event["seq"] <= last:
            return
        self.applied.setdefault(job_id, []).append(event)

    def _on_event(self, event: dict) -> None:
        with self._lock:
            last = self.last(event["job_id"])
            if event["job_id"] in self.applied and event["seq"] > last + 1:
                self.gaps.append((event["job_id"], last, event["seq"]))
            self._apply(event)
        self.live.put(event)

    def join(self, job_id: str) -> dict:
        """join_job with since (the rule after any (re)connect); applies the
        ack's events. Returns the ack."""
        since = self.last(job_id)
        ack = self.sio.call(
            "join_job", {"job_id": job_id, "since": since}, namespace=NAMESPACE, timeout=15
        )
        if ack.get("ok"):
            assert not ack.get("truncated"), ack
            with self._lock:
                for event in ack["events"]:
                    self._apply(event)
                self.applied.setdefault(job_id, [])
        return ack

    def close(self) -> None:
        self.sio.shutdown()


@contextlib.contextmanager
def queue_setup(tmp_path, store: RedisServer, mode: str, queue_up: bool):
    """A server on ``store`` and a queue redis-server (started if
    ``queue_up``), and a worker's tracker; everything stopped afterwards.
    Yields ``(server, queue_redis, queue_port, worker, clients)``, where
    ``clients`` is a list the test appends its ProtocolClients to."""
    queue_port = free_port()
    (tmp_path / "queue").mkdir()
    queue_redis = RedisServer(tmp_path / "queue")
    if queue_up:
        queue_redis.start(queue_port)
    server = make_server(tmp_path, store, queue_port, mode).start()
    worker = worker_tracker(store, queue_port)
    clients: list[ProtocolClient] = []
    try:
        yield server, queue_redis, queue_port, worker, clients
    finally:
        for client in clients:
            client.close()
        server.stop()
        queue_redis.stop()
        worker.close()


def assert_holds_the_stored_history(client: ProtocolClient, worker, job_id: str) -> None:
    """Once the job's last stored event is applied: exactly the stored
    history, and no gap ever seen live."""
    stored = worker.store.events_since(job_id)
    wait_until(lambda: client.last(job_id) == stored[-1]["seq"], 15, what="every event")
    assert client.applied[job_id] == stored
    assert client.gaps == []


@MODES
def test_joins_wait_for_the_queue_subscription(tmp_path, store_redis, mode):
    """Before the fix, a server acked joins from the store while it was not
    subscribed, and events stored after that read were never delivered."""
    with queue_setup(tmp_path, store_redis, mode, queue_up=False) as (
        server,
        queue_redis,
        queue_port,
        worker,
        clients,
    ):
        job = worker.create_job("import", DOC_STAGES, owner="alice")
        # The queue is down: the server is alive but not ready, and a join
        # says so instead of promising live events it cannot deliver.
        body = requests.get(server.url + "/readyz", timeout=5).json()
        assert body["status"] == "unavailable" and body["checks"]["store"] == "ok", body
        assert body["checks"]["message_queue"].startswith("unavailable"), body
        client = ProtocolClient(server.url, "alice")
        clients.append(client)
        ack = client.join(job.job_id)
        assert ack == {"ok": False, "error": ack["error"]}, ack
        assert ack["error"]["code"] == "unavailable", ack

        queue_redis.start(queue_port)
        wait_until(lambda: ready(server), 20, what="server subscribed to the queue")
        ack = client.join(job.job_id)
        assert ack["ok"] and ack["job"]["seq"] == 1, ack
        # Everything the worker stores from now on arrives live, in order.
        with worker.start(job.job_id) as emitter:
            for stage in ("parsing", "analyzing"):
                emitter.stage(stage)
            emitter.complete({"pages": 3})
        assert_holds_the_stored_history(client, worker, job.job_id)


@MODES
def test_clients_resume_after_the_queue_restarts(tmp_path, store_redis, mode):
    """Events published while the server's subscription was down never reach
    it: once it is subscribed again, it makes its clients resume. Before the
    fix, the client saw a gap it could not know to repair."""
    with queue_setup(tmp_path, store_redis, mode, queue_up=True) as (
        server,
        queue_redis,
        queue_port,
        worker,
        clients,
    ):
        wait_until(lambda: ready(server), 20, what="server subscribed to the queue")
        job = worker.create_job("import", DOC_STAGES, owner="alice")
        client = ProtocolClient(server.url, "alice")
        clients.append(client)
        assert client.join(job.job_id)["ok"]
        emitter = worker.start(job.job_id)
        wait_until(lambda: client.last(job.job_id) == 2, 15, what="job_started live")

        queue_redis.stop()
        emitter.stage("parsing")  # stored; its publish fails (no queue)
        emitter.stage("analyzing")
        queue_redis.start(queue_port)
        # The server notices, resubscribes and closes its connections; the
        # client reconnects by itself and rejoins with since (the rules).
        wait_until(lambda: client.disconnects >= 1, 30, what="the server to drop the client")
        wait_until(lambda: client.sio.connected and ready(server), 30, what="reconnect")
        wait_until(lambda: client.join(job.job_id)["ok"], 30, what="rejoin")
        emitter.complete({"pages": 3})
        assert_holds_the_stored_history(client, worker, job.job_id)


@MODES
def test_events_published_out_of_order_by_two_workers_arrive_in_order(tmp_path, store_redis, mode):
    """Two workers advance one job (a group's parent, whose children end in
    different processes): one stores seq 2 and is slow to publish it, the
    other stores and publishes seq 3 first. Before the fix the server passed
    3 on first; a client that follows the rules then dropped 2 when it came."""
    with queue_setup(tmp_path, store_redis, mode, queue_up=True) as (
        server,
        _queue_redis,
        _queue_port,
        worker,
        clients,
    ):
        wait_until(lambda: ready(server), 20, what="server subscribed to the queue")
        job = worker.create_job("import", DOC_STAGES, owner="alice")
        client = ProtocolClient(server.url, "alice")
        clients.append(client)
        assert client.join(job.job_id)["ok"]

        slow = ProgressTracker.from_urls(f"{store_redis.url}?prefix=subs")  # stores only
        try:
            held = slow.record(job.job_id, "job_started")  # seq 2, not published yet
        finally:
            slow.close()
        worker.record(job.job_id, "progress_update", stage="parsing", stage_progress=40)
        for event in held:  # the slow worker publishes at last
            worker.emitter.emit(
                event["type"], event, to=event_rooms(job.job_id, "alice"), namespace=NAMESPACE
            )
        worker.record(job.job_id, "job_completed")
        assert_holds_the_stored_history(client, worker, job.job_id)
        # each event came live once, in order: the late copy of seq 2 was dropped
        live = []
        while not client.live.empty():
            live.append(client.live.get_nowait()["seq"])
        assert live == [2, 3, *range(4, client.last(job.job_id) + 1)]


def test_a_worker_on_the_stores_redis_stores_and_publishes_in_one_step(tmp_path, store_redis):
    """Store and queue on one redis-server: the worker's events are stored and
    published by one script (stores/redis.py, QueuePublisher), in the message
    python-socketio's listener reads; the server delivers them live, in order."""
    from progresscast.stores.redis import QueuePublisher

    server = make_server(tmp_path, store_redis, store_redis.port, "eventlet").start()
    worker = worker_tracker(store_redis, store_redis.port)
    client = None
    try:
        assert isinstance(worker.emitter, QueuePublisher)
        wait_until(lambda: ready(server), 20, what="server subscribed to the queue")
        job = worker.create_job("import", DOC_STAGES, owner="alice")
        client = ProtocolClient(server.url, "alice")
        assert client.join(job.job_id)["ok"]
        with worker.start(job.job_id, min_interval=0) as emitter:
            for stage in ("parsing", "analyzing"):
                with emitter.stage(stage, total=5):
                    for _ in range(5):
                        emitter.advance()
            emitter.complete({"pages": 3})
        assert_holds_the_stored_history(client, worker, job.job_id)
        live = []
        while not client.live.empty():
            live.append(client.live.get_nowait()["seq"])
        assert live == list(range(2, client.last(job.job_id) + 1))  # every one came live
    finally:
        if client is not None:
            client.close()
        server.stop()
        worker.close()

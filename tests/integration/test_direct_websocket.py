"""The fast websocket path (progresscast/flask/transport/) on a real gunicorn
server, under eventlet and under gevent: pings from the shared pinger, slow
readers cut off without harming anyone else, upgrades from long-polling, and
python-engineio's own path still there when turned off."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from progresscast.flask.transport.connection import MAX_INBOX
from tests.harness import NAMESPACE, ServerProcess, token_for, wait_until

STAGES = [{"name": "only", "weight": 1.0}]
ADMIN = {"Authorization": f"Bearer {token_for('root', admin=True)}"}

#: every test runs under both loops (gunicorn -k eventlet / -k gevent)
MODES = pytest.mark.parametrize("mode", ["eventlet", "gevent"])


def start_server(tmp_path, mode: str, env: dict[str, str] | None = None) -> ServerProcess:
    env = {"PROGRESSCAST_ASYNC_MODE": mode, **(env or {})}
    return ServerProcess(tmp_path, env=env, worker=mode).start()


def direct_websockets(server: ServerProcess) -> int:
    """How many of the server's connections are on the fast path (admin stats)."""
    stats = server.http("GET", "/api/admin/stats", user=None, headers=ADMIN)
    return stats.json()["direct_websockets"]


class RawWebsocketClient:
    """A Socket.IO client written out by hand over wsproto, so a test decides
    when (and whether) it reads: a browser tab that froze, a phone that lost
    signal without closing anything."""

    def __init__(self, url: str, user: str, rcvbuf: int | None = None) -> None:
        host, port = url.split("//", 1)[1].split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connecting, so the advertised window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages: list[str] = []  # passed over while waiting for an ack
        self.accepted = False
        self.closed = False
        self.pongs: list[bytes] = []
        self._inbox: list[str] = []  # whole messages not read yet
        self._partial = ""  # a message whose end has not arrived (dropped if it never does)
        self._send(Request(host=f"{host}:{port}", target="/socket.io/?EIO=4&transport=websocket"))
        self._until(lambda: self.accepted)
        assert self.next_message().startswith("0{")  # Engine.IO OPEN
        self.send_text(f"40{NAMESPACE},{json.dumps({'token': token_for(user)})}")
        assert self.next_message().startswith(f"40{NAMESPACE},")  # Socket.IO CONNECT

    def _send(self, event) -> None:
        self.sock.sendall(self.ws.send(event))

    def send_text(self, text: str) -> None:
        self._send(TextMessage(data=text))

    def call(self, event: str, data: dict, ack_id: int) -> list:
        self.send_text(f"42{NAMESPACE},{ack_id}{json.dumps([event, data])}")
        prefix = f"43{NAMESPACE},{ack_id}"
        while True:
            message = self.next_message()
            if message.startswith(prefix):
                return json.loads(message[len(prefix) :])
            self.messages.append(message)

    def _pump(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            self.ws.receive_data(None)
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, TextMessage):  # may come in parts
                self._partial += event.data
                if event.message_finished:
                    self._inbox.append(self._partial)
                    self._partial = ""
            elif isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self.closed = True

    def _until(self, predicate) -> None:
        while not predicate():
            if self.closed:
                raise ConnectionError("closed by the server")
            self._pump()

    def next_message(self, answer_pings: bool = True) -> str:
        """The next whole message; Engine.IO pings are answered and skipped
        unless ``answer_pings`` is false (then they are returned, unanswered)."""
        self._until(lambda: self._inbox)
        message = self._inbox.pop(0)
        if message == "2" and answer_pings:  # as any client must
            self.send_text("3")
            return self.next_message()
        return message

    def read_to_end(self) -> list[str]:
        """Every message until the server closes the connection."""
        out = []
        try:
            while True:
                out.append(self.next_message())
        except (ConnectionError, OSError):
            return out

    def close(self) -> None:
        self.sock.close()


def job_events(messages: list[str]) -> list[dict]:
    prefix = f"42{NAMESPACE},"
    out = []
    for m in messages:
        if m.startswith(prefix):
            name, payload = json.loads(m[len(prefix) :])
            if name != "job_events":
                out.append(payload)
    return out


@pytest.fixture
def slow_server(tmp_path, mode):
    server = start_server(
        tmp_path,
        mode,
        {
            "PROGRESSCAST_WEBSOCKET_MAX_BACKLOG": "65536",
            "PROGRESSCAST_HTTP_RATE": "100000",
            "PROGRESSCAST_HTTP_BURST": "100000",
        },
    )
    yield server
    server.stop()


@MODES
def test_a_client_that_stops_reading_is_cut_off_and_nobody_else_waits(slow_server, clients):
    server = slow_server
    job_id = server.http("POST", "/api/jobs", json={"name": "big", "stages": STAGES}).json()[
        "job_id"
    ]
    slow = RawWebsocketClient(server.url, "alice", rcvbuf=4096)
    assert slow.call("join_job", {"job_id": job_id}, 1)[0]["ok"]
    healthy = clients(server.url)
    assert healthy.call("join_job", {"job_id": job_id})["ok"]
    assert direct_websockets(server) == 2  # both on the fast path
    session = requests.Session()  # keep-alive: thousands of posts
    session.headers["Authorization"] = f"Bearer {token_for('alice')}"
    session.post(f"{server.url}/api/jobs/{job_id}/events", json={"type": "job_started"})
    message = "x" * 1900
    posted = 1
    # Until the server gives up on the slow reader: its backlog (64 KiB here)
    # fills only once the kernel's buffers are full, so the count is not fixed.
    while "reads too slowly" not in server.log():
        assert posted < 4000, "the slow client was never cut off"
        for _ in range(50):
            r = session.post(
                f"{server.url}/api/jobs/{job_id}/events",
                json={"type": "progress_update", "stage_progress": 50, "message": message},
            )
            assert r.status_code == 201, r.text
            posted += 1
    # The healthy client got every event, in order, while that happened.
    got = [healthy.next_event(timeout=20) for _ in range(posted)]
    assert [e["seq"] for e in got] == list(range(2, 2 + posted))
    # The slow one reads what was written before the cut, whole frames in
    # order, and then the end of the connection (it would resume with `since`).
    seqs = [e["seq"] for e in job_events(slow.read_to_end())]
    assert seqs == list(range(2, 2 + len(seqs))) and 0 < len(seqs) < posted
    slow.close()
    # The server carries on.
    later = clients(server.url)
    assert later.call("join_job", {"job_id": job_id})["job"]["seq"] == 1 + posted
    # And its metrics say why the slow one went (issue 15).
    counted = re.compile(r'^progresscast_disconnects_total\{reason="slow_reader"\} 1\.0$', re.M)
    wait_until(
        lambda: counted.search(requests.get(f"{server.url}/metrics", timeout=10).text),
        10,
        what="the slow reader in the metrics",
    )
    # A client that sends more messages at once than a connection may have
    # waiting for its handler is cut off as a flood (transport MAX_INBOX),
    # not buffered without bound (found in review); the others carry on.
    flooder = RawWebsocketClient(server.url, "mallory")
    ping = flooder.ws.send(TextMessage(data=f'42{NAMESPACE},["ping",{{}}]'))
    flooder.sock.sendall(ping * (MAX_INBOX + 100))
    answered = [m for m in flooder.read_to_end() if m.startswith(f"43{NAMESPACE},")]
    assert flooder.closed and answered == []  # cut before any was handled
    flooder.close()
    flood = re.compile(r'^progresscast_disconnects_total\{reason="flood"\} 1\.0$', re.M)
    wait_until(
        lambda: flood.search(requests.get(f"{server.url}/metrics", timeout=10).text),
        10,
        what="the flood in the metrics",
    )
    assert later.call("ping", {})["ok"]


@MODES
def test_pings_keep_an_idle_connection_alive(tmp_path, clients, mode):
    server = start_server(
        tmp_path, mode, {"PROGRESSCAST_PING_INTERVAL": "1", "PROGRESSCAST_PING_TIMEOUT": "1"}
    )
    try:
        raw = RawWebsocketClient(server.url, "alice")
        # A client that stops answering, connected at the same time: it is
        # dropped after ping_interval + ping_timeout.
        silent = RawWebsocketClient(server.url, "bob")
        started = time.monotonic()
        assert direct_websockets(server) == 2
        pings = 0
        while pings < 2:  # about one a second, each after the last was answered
            assert time.monotonic() - started < 3.5, f"{pings} pings in 3.5 s"
            if raw.next_message(answer_pings=False) == "2":
                pings += 1
                raw.send_text("3")
        with pytest.raises(ConnectionError):
            while True:
                silent.next_message(answer_pings=False)  # reads, never answers
        assert time.monotonic() - started < 6

        # The transport reads frames itself (transport/frames.py): a request
        # in fragments with a websocket ping between them gets its pong and
        # its ack; a client that breaks RFC 6455 (an unmasked frame) is cut
        # off, and nobody else notices.
        text = f'42{NAMESPACE},7["ping",{{}}]'
        for part, done in ((text[:5], False), (text[5:9], False), (text[9:], True)):
            raw._send(TextMessage(data=part, message_finished=done))
            if part == text[:5]:
                raw._send(Ping(b"still there?"))
        prefix = f"43{NAMESPACE},7"
        ack = next(m for m in iter(raw.next_message, None) if m.startswith(prefix))
        assert json.loads(ack[len(prefix) :])[0]["ok"]
        assert raw.pongs == [b"still there?"]
        rude = RawWebsocketClient(server.url, "carol")
        rude.sock.sendall(b"\x81\x05hello")  # servers must refuse unmasked client frames
        with pytest.raises(ConnectionError):
            while True:
                rude.next_message()
        watcher = clients(server.url)
        assert watcher.call("ping")["ok"]
        assert raw.call("ping", {}, 8)[0]["ok"]
        raw.close()
        silent.close()
        rude.close()
    finally:
        server.stop()


@MODES
def test_python_engineio_path_still_works_when_direct_writes_are_off(tmp_path, clients, mode):
    server = start_server(tmp_path, mode, {"PROGRESSCAST_DIRECT_WEBSOCKET": "false"})
    try:
        job = server.http("POST", "/api/jobs", json={"name": "a", "stages": STAGES}).json()
        watcher = clients(server.url)
        assert watcher.call("join_job", {"job_id": job["job_id"]})["ok"]
        assert direct_websockets(server) == 0
        for kind in ("job_started", "job_completed"):
            server.http("POST", f"/api/jobs/{job['job_id']}/events", json={"type": kind})
        assert [e["type"] for e in watcher.events_until_terminal(job["job_id"])] == [
            "job_started",
            "stage_completed",
            "job_completed",
        ]
        # gone before the server stops: its request would hold the worker's
        # graceful shutdown for seconds on this path
        watcher.close()
    finally:
        server.stop()


@MODES
def test_a_long_polling_client_upgrades_and_gets_events(tmp_path, mode):
    """python-socketio's default: long-polling first, then the websocket."""
    import socketio

    server = start_server(tmp_path, mode)
    job = server.http("POST", "/api/jobs", json={"name": "a", "stages": STAGES}).json()
    got = []
    sio = socketio.Client(reconnection=False)
    sio.on("job_completed", got.append, namespace=NAMESPACE)
    sio.connect(server.url, namespaces=[NAMESPACE], auth={"token": token_for("alice")})
    try:
        wait_until(lambda: sio.transport() == "websocket", 10, what="the upgrade")
        wait_until(lambda: direct_websockets(server) == 1, 10, what="the upgraded one parked")
        ack = sio.call("join_job", {"job_id": job["job_id"]}, namespace=NAMESPACE, timeout=10)
        assert ack["ok"]
        server.http("POST", f"/api/jobs/{job['job_id']}/events", json={"type": "job_started"})
        server.http("POST", f"/api/jobs/{job['job_id']}/events", json={"type": "job_completed"})
        wait_until(lambda: got, 10, what="job_completed over the upgraded connection")
        assert got[0]["seq"] == 4  # queued, started, stage_completed, completed
    finally:
        sio.disconnect()
        server.stop()

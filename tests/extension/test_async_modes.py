"""The extension in real server processes, in every async mode Flask-SocketIO
offers: gunicorn with eventlet (and the fast websocket path), gevent and
threads, and the development server (``socketio.run``) in each mode. A
python-socketio client signs in with the app's session cookie, watches a
job it started to the end, and the app's own event still goes round beside
``/progress``."""

from __future__ import annotations

import os
import queue
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from progresscast.client import ordered_socketio_client
from tests.harness import (
    EVENT_TYPES,
    ROOT,
    SECRET,
    TERMINAL,
    AppProcess,
    assert_gapless,
    close_dropped_websocket,
    free_port,
    gunicorn_cmd,
    require_component,
    token_for,
)

pytestmark = pytest.mark.server

NS = "/progress"

#: (how it is served, async mode)
SERVERS = [
    ("gunicorn", "eventlet"),
    ("gunicorn", "gevent"),
    ("gunicorn", "threading"),
    ("dev", "threading"),
    ("dev", "eventlet"),
    ("dev", "gevent"),
]


class LiveApp(AppProcess):
    """live_app.py served by gunicorn or by its development server."""

    def __init__(
        self, workdir: Path, served_by: str, mode: str, env: dict[str, str] | None = None
    ) -> None:
        port = free_port()
        if served_by == "gunicorn":
            worker = {"threading": "gthread"}.get(mode, mode)
            cmd = gunicorn_cmd(worker, port, "tests.extension.live_app:app")
        else:
            cmd = [sys.executable, "-m", "tests.extension.live_app", str(port)]
        super().__init__(
            cmd,
            cwd=ROOT,
            env={
                **os.environ,
                "LIVE_ASYNC_MODE": mode,
                "LIVE_SECRET_KEY": SECRET,
                "LIVE_STORE_URL": f"sqlite:///{workdir / f'{served_by}-{mode}.db'}",
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            port=port,
            log_path=workdir / f"{served_by}-{mode}.log",
            health_path="/progress/healthz",
        )
        self.start()

    def session(self, user: str) -> requests.Session:
        http = requests.Session()
        assert http.post(f"{self.url}/login/{user}", timeout=10).status_code == 204
        return http


class CookieClient:
    """A python-socketio client on ``/progress`` and ``/``, signed in by the
    app's session cookie (no token)."""

    def __init__(self, url: str, http: requests.Session, transport: str) -> None:
        self.events: queue.Queue[dict] = queue.Queue()
        self.notices: queue.Queue[Any] = queue.Queue()
        self.foreign: list[dict] = []  # events of other jobs, passed over while waiting
        self.sio = ordered_socketio_client(reconnection=False)
        for kind in EVENT_TYPES:
            self.sio.on(kind, self.events.put, namespace=NS)
        self.sio.on("notice", self.notices.put, namespace="/")
        self.sio.on("disconnect", lambda *a: close_dropped_websocket(self.sio, *a), namespace=NS)
        cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        self.sio.connect(
            url,
            namespaces=["/", NS],
            # As a browser on the app's own page: the cookie and the page's
            # origin (websocket-client sends the latter by itself).
            headers={"Cookie": cookie, **({"Origin": url} if transport == "polling" else {})},
            transports=[transport],
            wait_timeout=10,
        )

    def call(self, event: str, data: Any = None) -> Any:
        return self.sio.call(event, data or {}, namespace=NS, timeout=10)

    def until_terminal(self, job_id: str, timeout: float = 30) -> list[dict]:
        got: list[dict] = []
        while not got or got[-1]["type"] not in TERMINAL:
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"job {job_id} did not end: {got}") from None
            if event["job_id"] == job_id:
                got.append(event)
            else:
                self.foreign.append(event)
        return got

    def close(self) -> None:
        self.sio.shutdown()


@pytest.fixture(params=SERVERS, ids=lambda s: f"{s[0]}-{s[1]}")
def live(request, tmp_path):
    served_by, mode = request.param
    require_component(importlib_find("gunicorn"), "gunicorn")
    require_component(importlib_find(mode) if mode != "threading" else True, mode)
    server = LiveApp(tmp_path, served_by, mode)
    yield server
    server.stop()


def importlib_find(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_a_signed_in_browser_watches_its_job_and_the_apps_event_goes_round(live):
    alice_http, bob_http = live.session("alice"), live.session("bob")
    # websocket for alice, long-polling for bob: both transports carry the cookie
    alice = CookieClient(live.url, alice_http, "websocket")
    bob = CookieClient(live.url, bob_http, "polling")
    try:
        assert alice.call("watch_jobs")["ok"] and bob.call("watch_jobs")["ok"]
        started = alice_http.post(live.url + "/work", timeout=10)
        assert started.status_code == 200, live.log()
        job_id = started.json()["job_id"]
        events = alice.until_terminal(job_id)
        assert events[-1]["type"] == "job_completed", events
        assert any(0 < e["progress"] < 100 for e in events if e["type"] == "progress_update")
        assert_gapless(events, first=events[0]["seq"])
        # bob is signed in too, and sees nothing of alice's job: his own job,
        # started after hers ended, is all that reaches his dashboard
        assert bob.call("join_job", {"job_id": job_id})["error"]["code"] == "not_found"
        bobs = bob_http.post(live.url + "/work", timeout=10).json()["job_id"]
        assert bob.until_terminal(bobs)[-1]["type"] == "job_completed"
        assert bob.foreign == [] and bob.events.empty()
        rest = alice_http.get(f"{live.url}/progress/api/jobs/{job_id}", timeout=10)
        assert rest.json()["status"] == "completed"
        assert bob_http.get(f"{live.url}/progress/api/jobs/{job_id}", timeout=10).status_code == 404

        # the app's own event, through whatever path the extension installed
        bob.sio.emit("notice", {"text": "deploy at 5"}, namespace="/")
        for client in (alice, bob):
            assert client.notices.get(timeout=10) == {"text": "deploy at 5", "from": "bob"}
    finally:
        alice.close()
        bob.close()


@pytest.mark.parametrize("live", [("gunicorn", "eventlet")], indirect=True, ids=["eventlet"])
def test_a_cookie_connect_from_a_foreign_origin_is_refused(live):
    """The app lets every origin reach its Socket.IO (live_app.py); a foreign
    page still cannot connect to /progress as the signed-in user."""
    import socketio

    http = live.session("alice")
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    foreign = {"Origin": "http://evil.example"}
    refused = socketio.Client(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", errors.append, namespace=NS)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError, match="failed to connect"):
            refused.connect(
                live.url,
                namespaces=[NS],
                headers={"Cookie": cookie, **foreign},
                transports=["polling"],
                wait_timeout=10,
            )
    finally:
        refused.shutdown()
    [error] = errors
    assert error["data"]["code"] == "forbidden" and "cross-site" in error["message"]
    # the same foreign page with a bearer token (not ambient) is let in
    allowed = socketio.Client(reconnection=False)
    try:
        allowed.connect(
            live.url,
            namespaces=[NS],
            headers=foreign,
            auth={"token": token_for("alice")},
            transports=["polling"],
            wait_timeout=10,
        )
        assert allowed.call("watch_jobs", {}, namespace=NS, timeout=10)["ok"]
    finally:
        allowed.shutdown()


def test_a_worker_reaches_the_apps_browsers_through_the_apps_message_queue(tmp_path):
    """The app gave its SocketIO a message_queue; the extension subscribes to
    it (its own manager in place of python-socketio's RedisManager), so a
    worker process's events reach the app's signed-in browsers."""
    from progresscast import ProgressTracker
    from tests.harness import RedisServer

    require_component(importlib_find("redis"), "redis (pip)")
    redis_server = RedisServer(tmp_path).start()
    store_url = f"sqlite:///{tmp_path / 'gunicorn-eventlet.db'}"
    live = LiveApp(tmp_path, "gunicorn", "eventlet", env={"LIVE_MESSAGE_QUEUE": redis_server.url})
    worker = ProgressTracker.from_urls(store_url, redis_server.url, min_interval=0)
    alice = CookieClient(live.url, live.session("alice"), "websocket")
    try:
        ready = requests.get(live.url + "/progress/readyz", timeout=10).json()
        assert ready["checks"] == {"store": "ok", "message_queue": "ok"}, ready
        assert alice.call("watch_jobs")["ok"]
        with worker.job("import", ["fetch", "parse"], owner="alice") as job:
            for name in ("fetch", "parse"):
                with job.stage(name, total=3):
                    for _ in range(3):
                        job.advance()
        events = alice.until_terminal(job.job_id)
        assert events[0]["type"] == "job_started" and events[-1]["type"] == "job_completed"
        assert_gapless(events)
    finally:
        alice.close()
        worker.close()
        live.stop()
        redis_server.stop()

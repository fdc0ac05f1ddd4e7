"""Fixtures of the client tests: no thread may outlive a test, reconnects are
quick, and jobs are driven over REST as a pipeline in any language would."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from progresscast import client
from tests.harness import ServerProcess, wait_until

STAGES = [
    {"name": "parsing", "weight": 0.15},
    {"name": "analyzing", "weight": 0.6},
    {"name": "integrating", "weight": 0.2},
    {"name": "formatting", "weight": 0.05},
]


@pytest.fixture(autouse=True)
def no_threads_left_behind():
    """Whatever a test starts (client connections, followers) ends with it."""
    before = set(threading.enumerate())
    yield

    def extra():
        return [t for t in threading.enumerate() if t not in before and t.is_alive()]

    try:
        wait_until(lambda: not extra(), 10, what="threads to end")
    except AssertionError:
        raise AssertionError(f"threads left behind: {extra()}") from None


@pytest.fixture
def server(tmp_path):
    """A fresh server with its own store, stopped quickly (SIGQUIT) after the test."""
    srv = ServerProcess(tmp_path).start()
    yield srv
    srv.stop(signal.SIGQUIT)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for the tests of a module that need no fresh one (distinct users)."""
    srv = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop(signal.SIGQUIT)


@pytest.fixture(autouse=True)
def quick_reconnects(monkeypatch):
    monkeypatch.setattr(client, "RECONNECT_DELAY_MAX", 0.5)


def create_job(server, user: str = "alice", *, start: bool = True, **body: Any) -> str:
    r = server.http(
        "POST",
        "/api/jobs",
        user=user,
        json={"name": "report.pdf", "stages": STAGES, "start": start, **body},
    )
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def post(server, job_id: str, user: str = "alice", **body: Any) -> list[dict]:
    r = server.http("POST", f"/api/jobs/{job_id}/events", user=user, json=body)
    assert r.status_code == 201, r.text
    return r.json()["events"]


def snapshot(server, job_id: str, user: str = "alice") -> dict:
    r = server.http("GET", f"/api/jobs/{job_id}", user=user)
    assert r.status_code == 200, r.text
    return r.json()


def stored_events(server, job_id: str, since: int, user: str = "alice") -> list[dict]:
    r = server.http("GET", f"/api/jobs/{job_id}/events?since={since}", user=user)
    assert r.status_code == 200, r.text
    return r.json()["events"]


class Follower:
    """Iterates a watch()/watch_all() generator on its own thread, keeping what it yields."""

    def __init__(self, updates: Iterator, stop: Callable[[list], bool] | None = None) -> None:
        self.updates = updates
        self.stop = stop
        self.items: list = []
        self.error: BaseException | None = None
        self.done = False
        self._cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="follower", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.updates:
                with self._cv:
                    self.items.append(item)
                    self._cv.notify_all()
                if self.stop is not None and self.stop(self.items):
                    break
        except BaseException as exc:  # handed to the test in join()
            self.error = exc
        finally:
            self.updates.close()
            with self._cv:
                self.done = True
                self._cv.notify_all()

    def wait(self, predicate: Callable[[list], bool], timeout: float = 15, what: str = "") -> None:
        with self._cv:
            ok = self._cv.wait_for(lambda: predicate(self.items) or self.done, timeout)
            if not ok or not predicate(self.items):
                raise AssertionError(
                    f"follower: no {what or 'match'} within {timeout}s"
                    f" (error {self.error!r}, items {[self._seq(i) for i in self.items]})"
                )

    def wait_seq(self, seq: int, timeout: float = 15) -> None:
        self.wait(lambda items: any(self._seq(i) >= seq for i in items), timeout, f"seq {seq}")

    @staticmethod
    def _seq(item) -> int:
        snap = item[1] if isinstance(item, tuple) else item
        return snap["seq"]

    def join(self, timeout: float = 30) -> list:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"follower still running: {self.items[-1:]}"
        if self.error is not None:
            raise self.error
        return self.items

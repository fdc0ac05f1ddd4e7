"""Python client: follow jobs live from scripts, notebooks and CLIs.

::

    from progresscast.client import watch

    for job in watch("http://127.0.0.1:8000", job_id, token):
        print(f"{job['stage']}: {job['progress']:.1f}%")
    # the loop ends when the job has completed, failed or been cancelled

:func:`watch` follows one job, :func:`watch_all` every job of the caller. Both
use the python-socketio client over a websocket (namespace ``/progress``) and
resume by themselves: they keep the highest ``seq`` applied per job, rejoin
with ``since`` after any disconnect or server restart, apply the missed
events from the ack and then the live ones, drop duplicates (``seq <=`` the
last applied), hold events that arrive early until the gap before them is
filled (python-socketio runs each handler on its own thread, so two events
can reach the client out of order), and start over from the snapshot when the
server answers ``truncated``.

:func:`apply_event` is the client half of the state machine in
:mod:`progresscast.state`: applied to a snapshot, the events that follow it
give the server's snapshot after them (see its docstring for the fields the
events do not carry).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .state import EventType
from .tracker import NAMESPACE

__all__ = [
    "EVENT_TYPES",
    "TERMINAL_EVENTS",
    "TERMINAL_STATUSES",
    "JobView",
    "WatchError",
    "WatchTimeout",
    "apply_event",
    "watch",
    "watch_all",
]

Snapshot = dict[str, Any]
Event = dict[str, Any]
#: a token, or a function returning a fresh one (called again when the server
#: says the token is no longer good: ``unauthorized`` or ``session_expired``)
TokenSource = str | Callable[[], str | None] | None

EVENT_TYPES = tuple(e.value for e in EventType)
TERMINAL_EVENTS = frozenset({"job_completed", "job_failed", "job_cancelled"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

#: reconnect backoff: the n-th attempt waits about ``min(MAX, BASE * 2**n)``
#: seconds, half of it fixed and half random (jitter), so clients dropped
#: together by a restart do not come back together
RECONNECT_DELAY = 0.25
RECONNECT_DELAY_MAX = 5.0
#: seconds to wait for an ack before the connection is presumed dead
REQUEST_TIMEOUT = 10.0
#: seconds an event may wait for the ones before it before the client asks
#: the server for them (join_job with ``since``)
GAP_WAIT = 1.0
#: error codes worth retrying: the server is busy or its store is unreachable
RETRYABLE = frozenset({"rate_limited", "unavailable", "internal", "too_many_connections"})


class WatchError(Exception):
    """The server refused to let us follow a job (or we gave up reaching it).

    ``code`` is the protocol's error code (``not_found``, ``forbidden``,
    ``unauthorized``, ``invalid_payload``, …), or ``unreachable`` /
    ``disconnected`` (``reconnect=False``) / ``timeout`` (:class:`WatchTimeout`).
    """

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class WatchTimeout(WatchError):
    """No connection (or no successful request) within ``timeout`` seconds."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)


# --------------------------------------------------------------------------- #
# the state machine, client side


def _index(snap: Snapshot, name: str | None) -> int | None:
    if name is None:
        return None
    for i, stage in enumerate(snap["stages"]):
        if stage["name"] == name:
            return i
    raise ValueError(f"job {snap['job_id']!r} has no stage {name!r}")


def _fresh(event: Event) -> Snapshot:
    """The snapshot of a job right after ``job_queued`` (its first event)."""
    return {
        "job_id": event["job_id"],
        "name": event["name"],
        "owner": event["owner"],
        "status": "queued",
        "stages": [
            {"name": s["name"], "weight": s["weight"], "status": "pending", "progress": 0.0}
            for s in event["stages"]
        ],
        "stage": None,
        "progress": 0.0,
        "stage_progress": 0.0,
        "message": None,
        "eta_seconds": None,
        "eta_low": None,  # the ETA's range, from past runs (extension, issue 14)
        "eta_high": None,
        "elapsed_seconds": None,
        "created_at": event["ts"],
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "metadata": copy.deepcopy(event["metadata"]),
        "seq": 0,
        "cancel_requested": None,
        # counts of the current stage, and groups (extension, issue 13)
        "n": None,
        "total": None,
        "unit": None,
        "rate": None,
        "parent_id": event.get("parent_id"),
        "children": None,  # set from the event by apply_event
        # the pipeline this job is a run of, and where its stage weights came
        # from (extension, issue 14): set from the event by apply_event
        "kind": event["name"],
        "weights": "declared",
    }


#: the estimate and its range: set by progress updates, kept by stage
#: transitions, cleared by the events that end a job
ETA_KEYS = ("eta_seconds", "eta_low", "eta_high")


def _kind(snap: Snapshot, event: Event) -> None:
    """``kind`` and ``weights`` ride on ``job_queued`` and ``job_started``."""
    for key in ("kind", "weights"):
        if key in event:
            snap[key] = event[key]


def _weights(snap: Snapshot, event: Event) -> None:
    """``job_started`` carries the stages with the weights in force (maybe
    learned at start): each stage takes its weight from it, keeping its
    status and progress."""
    weights = {s["name"]: s["weight"] for s in event.get("stages") or ()}
    for stage in snap["stages"]:
        if stage["name"] in weights:
            stage["weight"] = weights[stage["name"]]


#: the current stage's count: set by progress updates, cleared by stage
#: transitions, carried as they were by the events that end a job early
COUNT_KEYS = ("n", "total", "unit", "rate")


def _counts(snap: Snapshot, event: Event, *, always: bool = False) -> None:
    for key in COUNT_KEYS:
        if key in event:
            snap[key] = event[key]
        elif always:
            snap[key] = None


def _enter(snap: Snapshot, current: int, target: int | None) -> None:
    """Complete stage ``current``; ``target`` (or nothing) becomes the running one."""
    stages = snap["stages"]
    stages[current]["status"] = "completed"
    stages[current]["progress"] = 100.0
    end = len(stages) if target is None else target
    for i in range(current + 1, end):
        stages[i]["status"] = "skipped"
    snap["stage"] = None if target is None else stages[target]["name"]
    snap["stage_progress"] = 0.0
    snap["message"] = None  # a status line belongs to the stage that set it
    for key in COUNT_KEYS:  # so does a count
        snap[key] = None
    if target is not None:
        stages[target]["status"] = "running"
        stages[target]["progress"] = 0.0


def apply_event(snapshot: Snapshot | None, event: Event) -> Snapshot:
    """The snapshot after ``event``, by the server's rules (:mod:`progresscast.state`).

    Pure: ``snapshot`` is not modified. ``snapshot`` may be ``None`` only for
    a job's first event (``job_queued``, or ``job_started`` of a job created
    running). It does not check ``seq``: apply events in order, once each
    (:class:`JobView` does that). The server publishes every change as its
    own event (a progress update for a later stage, or the end of a job with
    a stage running, comes after the ``stage_completed`` that leaves the
    stage), and the events carry the numbers they change, so applied in
    order they give the server's snapshot after each one
    (``tests/fixtures/state_machine/`` holds the server's own examples).

    Counts and groups (extension, issue 13): ``progress_update`` sets the
    current stage's ``n``, ``total``, ``unit`` and ``rate``; ``stage_completed``
    clears them; ``job_failed`` and ``job_cancelled`` carry them as they were.
    ``job_queued`` and ``job_started`` carry ``parent_id``; a parent's events
    carry its ``children`` counts whenever they change.

    ETA from history (extension, issue 14): ``job_queued`` and ``job_started``
    carry ``kind`` and ``weights``, and ``job_started`` the stages with the
    weights in force (which replace the snapshot's); ``progress_update`` sets
    ``eta_seconds`` and its range ``eta_low``, ``eta_high``; the events that
    end a job clear the range.

    Two things no event carries: ``cancel_requested`` (a request, not an
    event; kept as it was), and the elapsed time of a running job in a
    snapshot read after its last event, which the server counts up to the
    moment it is read.
    """
    etype = event.get("type")
    if etype not in EVENT_TYPES:
        raise ValueError(f"unknown event type {etype!r}")
    ts = event["ts"]
    if etype == "job_queued" or (snapshot is None and etype == "job_started"):
        snap = _fresh(event)
    elif snapshot is None:
        raise ValueError(f"{etype} needs the job's snapshot; only a first event starts from none")
    else:
        if snapshot["job_id"] != event["job_id"]:
            raise ValueError(f"event of job {event['job_id']!r} for job {snapshot['job_id']!r}")
        snap = copy.deepcopy(snapshot)
    snap["seq"] = event["seq"]

    if etype == "job_queued":
        _kind(snap, event)
    elif etype == "job_started":
        snap["name"], snap["owner"] = event["name"], event["owner"]
        snap["metadata"] = copy.deepcopy(event["metadata"])
        if "parent_id" in event:
            snap["parent_id"] = event["parent_id"]
        _kind(snap, event)
        _weights(snap, event)
        snap["status"] = "running"
        snap["started_at"] = ts
        if snap["stages"]:
            snap["stages"][0]["status"] = "running"
            snap["stage"] = snap["stages"][0]["name"]
        snap["progress"] = 0.0
        snap["elapsed_seconds"] = 0.0
    elif etype == "progress_update":
        index = _index(snap, event["stage"])
        snap["stage"] = event["stage"]
        snap["stage_progress"] = event["stage_progress"]
        snap["stages"][index]["progress"] = event["stage_progress"]
        for key in ("progress", "message", "elapsed_seconds"):
            snap[key] = event[key]
        for key in ETA_KEYS:  # the estimate and its range
            snap[key] = event.get(key)
        _counts(snap, event, always=True)
    elif etype == "stage_completed":
        _enter(snap, _index(snap, event["stage"]), _index(snap, event["next_stage"]))
        snap["progress"] = event["progress"]
        snap["elapsed_seconds"] = event["elapsed_seconds"]
    elif etype == "job_completed":
        snap["status"] = "completed"
        snap["finished_at"] = ts
        snap["progress"] = 100.0
        snap["eta_seconds"] = 0.0
        snap["eta_low"] = snap["eta_high"] = None
        snap["elapsed_seconds"] = event["elapsed_seconds"]
        snap["message"] = event["message"]
        snap["result"] = copy.deepcopy(event["result"])
        _counts(snap, event)  # None: the last stage_completed cleared them
    else:  # job_failed, job_cancelled: with the running stage's last numbers
        failed = etype == "job_failed"
        snap["status"] = "failed" if failed else "cancelled"
        snap["finished_at"] = ts
        for key in ETA_KEYS:
            snap[key] = None
        for key in ("progress", "stage_progress", "message", "elapsed_seconds"):
            snap[key] = event[key]
        _counts(snap, event)
        index = _index(snap, event["stage"])
        if index is not None:
            snap["stages"][index]["status"] = "failed" if failed else "cancelled"
            snap["stages"][index]["progress"] = event["stage_progress"]
        if failed:
            error = event["error"]
            snap["error"] = {
                "message": error["message"],
                "stage": event["stage"],
                "type": error["type"],
            }
    if "children" in event:
        # a parent's counts of its children ride on its events
        snap["children"] = copy.deepcopy(event["children"])
    return snap


# --------------------------------------------------------------------------- #
# one job, client side: ordering and resume


class JobView:
    """The client's copy of one job: the resume rules of docs/protocol.md.

    :meth:`reset` takes a snapshot (a join ack, or a fresh start after
    ``truncated``); :meth:`offer` takes any event, drops it if its ``seq`` is
    not above the last applied one, holds it if events before it are missing,
    and applies every event that is next in line. Both return what changed as
    ``(event, snapshot)`` pairs in ``seq`` order (``event`` is ``None`` for a
    reset). ``gap_age`` tells how long held events have waited: a client asks
    the server for the missing ones (``join_job`` with ``since``) when it
    grows too old.
    """

    def __init__(self, job_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.job_id = job_id
        self.snapshot: Snapshot | None = None
        self.pending: dict[int, Event] = {}
        #: True while ``snapshot`` is the server's own (from an ack), not one
        #: computed from events
        self.from_server = False
        self._clock = clock
        self._gap_since: float | None = None

    @property
    def seq(self) -> int:
        """The highest seq applied (0 before anything)."""
        return 0 if self.snapshot is None else self.snapshot["seq"]

    @property
    def ended(self) -> bool:
        return self.snapshot is not None and self.snapshot["status"] in TERMINAL_STATUSES

    def gap_age(self) -> float:
        """Seconds the oldest held event has waited for those before it (0: no gap)."""
        return 0.0 if self._gap_since is None else self._clock() - self._gap_since

    def reset(self, snapshot: Snapshot) -> list[tuple[Event | None, Snapshot]]:
        """Start over from ``snapshot``; held events after it still apply,
        unless the job went back in time (a store that was reset)."""
        if snapshot["seq"] < self.seq:
            self.pending.clear()
        self.snapshot = snapshot
        self.from_server = True
        self.pending = {s: e for s, e in self.pending.items() if s > snapshot["seq"]}
        return [(None, snapshot), *self._drain()]

    def offer(self, event: Event) -> list[tuple[Event | None, Snapshot]]:
        seq = event.get("seq")
        if not isinstance(seq, int) or seq <= self.seq or self.ended:
            return []  # a duplicate, or stale
        self.pending.setdefault(seq, event)
        return self._drain()

    def sync(self, ack: Mapping[str, Any]) -> list[tuple[Event | None, Snapshot]]:
        """Apply a ``join_job`` ack: its snapshot, or the events it replays."""
        job = ack["job"]
        if self.snapshot is None or ack.get("truncated") or "events" not in ack:
            return self.reset(job)
        if job["seq"] < self.seq:
            return self.reset(job)  # the store went back in time: its word is the truth
        for event in ack["events"]:
            if event.get("seq", 0) > self.seq:
                self.pending.setdefault(event["seq"], event)
        out = self._drain(upto=job["seq"])
        if self.seq < job["seq"]:
            return out + self.reset(job)  # the replay fell short: take the snapshot
        # The server's snapshot at that seq has what events do not carry
        # (elapsed time up to now, cancel_requested): it replaces ours.
        self.snapshot = job
        self.from_server = True
        if out:
            out[-1] = (out[-1][0], job)
        return out + self._drain()

    def _drain(self, upto: int | None = None) -> list[tuple[Event | None, Snapshot]]:
        out: list[tuple[Event | None, Snapshot]] = []
        while not self.ended and (upto is None or self.seq < upto):
            event = self.pending.pop(self.seq + 1, None)
            if event is None:
                break
            if self.snapshot is None and event.get("type") not in ("job_queued", "job_started"):
                self.pending[event["seq"]] = event  # wait for a snapshot
                break
            self.snapshot = apply_event(self.snapshot, event)
            self.from_server = False
            out.append((event, self.snapshot))
        if self.ended:
            self.pending.clear()
        self.pending = {s: e for s, e in self.pending.items() if s > self.seq}
        if not self.pending:
            self._gap_since = None
        elif self._gap_since is None or out:
            self._gap_since = self._clock()
        return out


# --------------------------------------------------------------------------- #
# the connection


class _LinkLost(Exception):
    """The connection dropped or a request went unanswered: reconnect."""


class _Busy(Exception):
    """A retryable error ack: wait, then try again."""


def ordered_socketio_client(**options: Any) -> Any:
    """A ``socketio.Client`` whose event handlers run in the order the
    messages arrived.

    python-engineio's client hands every incoming message to a thread of its
    own, so on a busy machine two events can reach the handlers swapped (seen
    as 455 before 454): a client that drops ``seq <= last`` then loses one.
    Here one background thread at a time handles the messages, oldest first;
    it ends when there are none left (handlers still run off the read loop,
    as python-socketio expects: its disconnect handling joins that loop).
    """
    return _ordered_client_class()(**options)


@functools.cache
def _ordered_client_class() -> type:
    import engineio
    import socketio  # imported here so `import progresscast` stays light

    class OrderedEngineIOClient(engineio.Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._messages: deque = deque()
            self._messages_lock = threading.Lock()
            self._handling = False

        def _trigger_event(self, event, *args, **kwargs):  # python-engineio's hook
            if event != "message" or not kwargs.get("run_async"):
                return super()._trigger_event(event, *args, **kwargs)
            with self._messages_lock:
                self._messages.append(args)
                if self._handling:
                    return None  # the handling thread takes it in turn
                self._handling = True
            return self.start_background_task(self._handle_messages)

        def _handle_messages(self) -> None:
            while True:
                with self._messages_lock:
                    if not self._messages:
                        self._handling = False
                        return
                    args = self._messages.popleft()
                super()._trigger_event("message", *args, run_async=False)

    class OrderedClient(socketio.Client):
        def _engineio_client_class(self):  # python-socketio's hook
            return OrderedEngineIOClient

    return OrderedClient


class _Link:
    """One python-socketio connection; events and disconnects go to ``inbox``."""

    def __init__(self, inbox: queue.Queue, generation: int) -> None:
        self.sio = ordered_socketio_client(reconnection=False, handle_sigint=False)
        self.refusal: Any = None
        self.lost = False  # the server or the network ended the connection
        self._inbox = inbox
        self._generation = generation
        for kind in EVENT_TYPES:
            self.sio.on(kind, lambda data, _g=generation: inbox.put((_g, "event", data)), NAMESPACE)
        self.sio.on(
            "session_expired",
            lambda data=None, _g=generation: inbox.put((_g, "session_expired", data)),
            NAMESPACE,
        )
        self.sio.on("disconnect", self._disconnected, NAMESPACE)
        self.sio.on("connect_error", self._refused, NAMESPACE)

    def _disconnected(self, reason: Any = None) -> None:
        self.lost = True
        self._inbox.put((self._generation, "disconnect", reason))

    def _refused(self, data: Any = None) -> None:
        self.refusal = data

    def connect(self, url: str, token: str | None) -> None:
        """Connect, or raise :class:`WatchError` (refused) / :class:`_LinkLost`."""
        import socketio

        try:
            self.sio.connect(
                url,
                namespaces=[NAMESPACE],
                auth={"token": token} if token else {},
                transports=["websocket"],
                wait_timeout=REQUEST_TIMEOUT,
            )
        except socketio.exceptions.ConnectionError as exc:
            self.close()
            error = self.refusal
            if isinstance(error, Mapping) and isinstance(error.get("data"), Mapping):
                error = error["data"]  # python-socketio wraps the server's data
            if isinstance(error, Mapping) and "code" in error:
                raise WatchError(str(error["code"]), str(error.get("message", ""))) from None
            raise _LinkLost(str(exc)) from None

    @property
    def connected(self) -> bool:
        return self.sio.connected

    def close(self) -> None:
        """Disconnect and wait for the connection's threads to end."""
        eio = self.sio.eio
        tasks = [getattr(eio, "read_loop_task", None), getattr(eio, "write_loop_task", None)]
        tasks = [t for t in tasks if t is not None and t is not threading.current_thread()]
        if not self.lost:
            # When the server ended it, python-socketio is closing it on one of
            # its own threads already; disconnecting from here too would race
            # with that (Engine.IO drains the queue that wakes its write loop).
            with contextlib.suppress(Exception):
                self.sio.disconnect()
        for task in tasks:
            task.join(timeout=2)
        if any(task.is_alive() for task in tasks):
            # Both ends closed at once and the wake-up was lost: wake it again.
            with contextlib.suppress(Exception):
                eio.queue.put(None)
            with contextlib.suppress(Exception):
                eio.ws.close()
            for task in tasks:
                task.join(timeout=3)
        ws = getattr(eio, "ws", None)
        if ws is not None:
            # After a transport error Engine.IO leaves its socket open.
            with contextlib.suppress(Exception):
                ws.shutdown()


class _Session:
    """Connects, reconnects (backoff, jitter, ``timeout``), refreshes the token."""

    def __init__(self, url: str, token: TokenSource, timeout: float | None, reconnect: bool):
        self.url = url.rstrip("/")
        self.source = token
        self.timeout = timeout
        self.reconnect = reconnect
        self.inbox: queue.Queue = queue.Queue()
        self.link: _Link | None = None
        self.generation = 0
        self._token: str | None = None
        self._stale_token = True
        self._attempt = 0
        self._trouble_since: float | None = None
        self._ever_connected = False
        self._asked_again = False  # for a fresh token after a refusal

    # -- token

    def _get_token(self) -> str | None:
        if self._stale_token or (self._token is None and callable(self.source)):
            self._token = self.source() if callable(self.source) else self.source
            self._stale_token = False
        return self._token

    def token_expired(self) -> None:
        """The server no longer takes the token: get a fresh one (if we can)."""
        self._stale_token = callable(self.source)

    # -- connection

    def ensure(self) -> None:
        """Be connected, or raise (:class:`WatchError`, :class:`_LinkLost`)."""
        if self.link is not None and self.link.connected:
            return
        self.drop()
        if not self.reconnect and self._ever_connected:
            raise WatchError("disconnected", "the connection dropped (reconnect=False)")
        self.generation += 1
        link = _Link(self.inbox, self.generation)
        try:
            link.connect(self.url, self._get_token())
        except BaseException as exc:
            if not isinstance(exc, WatchError | _LinkLost):
                link.close()  # e.g. KeyboardInterrupt while connecting
                raise
            self._refused(exc)
            return self.ensure()  # once more, with a fresh token
        self.link = link
        self._ever_connected = True
        self._asked_again = False

    def _refused(self, exc: WatchError | _LinkLost) -> None:
        """Raise what a failed connect means, unless a fresh token may help."""
        if isinstance(exc, WatchError):
            if exc.code == "unauthorized" and callable(self.source) and not self._asked_again:
                self._stale_token = self._asked_again = True
                return
            if exc.code in RETRYABLE:
                raise _Busy(exc.message) from None
            raise exc
        if not self.reconnect:
            raise WatchError("unreachable", f"cannot connect to {self.url}: {exc}") from None
        raise exc

    def request(self, event: str, data: dict[str, Any], timeout: float = REQUEST_TIMEOUT) -> dict:
        """Send a request; its ack if ok, else raise (WatchError, _LinkLost, _Busy)."""
        import socketio

        link = self.link
        if link is None:
            raise _LinkLost("not connected")
        answered = threading.Event()
        answer: list[Any] = []

        def on_ack(*args: Any) -> None:
            answer.append(args[0] if len(args) == 1 else list(args))
            answered.set()

        try:
            link.sio.emit(event, data, namespace=NAMESPACE, callback=on_ack)
        except socketio.exceptions.SocketIOError as exc:
            self.drop()
            raise _LinkLost(f"{event}: {type(exc).__name__} {exc}") from None
        # Not sio.call(): it would wait out the whole timeout when the
        # connection drops before the ack.
        deadline = time.monotonic() + timeout
        while not answered.wait(0.05):
            if link.lost or not link.connected or time.monotonic() > deadline:
                self.drop()
                raise _LinkLost(f"{event}: no ack (connection lost or {timeout:g}s passed)")
        ack = answer[0]
        if not isinstance(ack, Mapping):
            raise WatchError("internal", f"unexpected {event} ack: {ack!r}")
        if ack.get("ok"):
            return dict(ack)
        error = ack.get("error") or {}
        code, message = str(error.get("code", "internal")), str(error.get("message", ""))
        if code == "unauthorized":
            # the token expired on this connection: the server closes it
            self.token_expired()
            self.drop()
            if not callable(self.source):
                raise WatchError(code, message, error.get("details"))
            raise _LinkLost(message)
        if code in RETRYABLE:
            raise _Busy(f"{code}: {message}")
        raise WatchError(code, message, error.get("details"))

    def healthy(self) -> None:
        """A request succeeded: the next trouble starts a new backoff."""
        self._attempt = 0
        self._trouble_since = None

    def backoff(self, why: str) -> None:
        """Wait before the next attempt; :class:`WatchTimeout` past ``timeout``."""
        now = time.monotonic()
        if self._trouble_since is None:
            self._trouble_since = now
        delay = min(RECONNECT_DELAY_MAX, RECONNECT_DELAY * 2**self._attempt)
        delay = delay / 2 + random.uniform(0, delay / 2)
        self._attempt = min(self._attempt + 1, 30)
        if self.timeout is not None:
            left = self._trouble_since + self.timeout - now
            if left <= 0:
                raise WatchTimeout(f"gave up after {self.timeout:g}s: {why}")
            delay = min(delay, left)
        time.sleep(delay)

    def next_item(self, timeout: float) -> tuple[str, Any] | None:
        """The next event or notice from the current connection, or None."""
        try:
            generation, kind, data = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if kind != "event" and generation != self.generation:
            return None  # a notice about a connection that is gone already
        return kind, data

    def drop(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.close()

    def close(self) -> None:
        self.drop()


def _final(session: _Session, job_id: str, snap: Snapshot) -> Snapshot:
    """The server's snapshot of an ended job (it has what the last event lacks)."""
    try:
        ack = session.request("join_job", {"job_id": job_id, "since": snap["seq"]}, timeout=5)
    except (WatchError, _LinkLost, _Busy):
        return snap
    job = ack.get("job")
    if isinstance(job, Mapping) and job.get("seq") == snap["seq"]:
        return dict(job)
    return snap


def _wait_for(views: list[JobView]) -> float:
    """How long to block for the next item: until the oldest gap is due."""
    ages = [v.gap_age() for v in views if v.pending]
    if not ages:
        return 1.0
    return max(0.01, min(1.0, GAP_WAIT - max(ages)))


# --------------------------------------------------------------------------- #
# public API


def watch(
    url: str,
    job_id: str,
    token: TokenSource,
    *,
    events: bool = False,
    timeout: float | None = None,
    reconnect: bool = True,
) -> Iterator[Any]:
    """Yield a job's snapshots as it changes, until it completes, fails or is cancelled.

    The first snapshot is the job as it is when we join; then one per event,
    in ``seq`` order, each exactly once, across disconnects and server
    restarts; the last is the server's snapshot of the ended job. With
    ``events=True`` it yields ``(event, snapshot)`` pairs instead, ``event``
    being ``None`` for a snapshot taken as a whole (the first one, or a fresh
    start when the server's history no longer reaches back).

    :param url: the server, e.g. ``http://127.0.0.1:8000``.
    :param token: an access token, or a function returning a fresh one (called
        again when the server says ``unauthorized`` or ``session_expired``);
        ``None`` connects without one (demo mode).
    :param timeout: give up (:class:`WatchTimeout`) after this many seconds
        without a connection or a successful request; ``None`` tries forever.
    :param reconnect: ``False`` raises :class:`WatchError` (``unreachable`` or
        ``disconnected``) instead of reconnecting.
    :raises WatchError: with ``code`` ``not_found`` (also for a job the token
        may not read), ``unauthorized``, ``forbidden``, ``invalid_payload``, ….

    Stop early with ``break`` (or ``.close()``): the connection is closed and
    its threads end.
    """
    session = _Session(url, token, timeout, reconnect)
    try:
        for event, snap in _follow(session, job_id):
            yield (event, snap) if events else snap
    finally:
        session.close()


def _follow(session: _Session, job_id: str) -> Iterator[tuple[Event | None, Snapshot]]:
    view = JobView(job_id)
    while True:
        try:
            session.ensure()
            join: dict[str, Any] = {"job_id": job_id}
            if view.snapshot is not None:
                join["since"] = view.seq
            changes = view.sync(session.request("join_job", join))
        except (_LinkLost, _Busy) as exc:
            session.backoff(str(exc))
            continue
        session.healthy()
        while True:
            for event, snap in changes:
                if snap["status"] in TERMINAL_STATUSES:
                    if not view.from_server:
                        snap = _final(session, job_id, snap)
                    yield event, snap
                    return
                yield event, snap
            if view.gap_age() > GAP_WAIT:
                break  # events went missing: rejoin with since
            item = session.next_item(_wait_for([view]))
            changes = []
            if item is None:
                continue
            kind, data = item
            if kind == "event" and isinstance(data, Mapping) and data.get("job_id") == job_id:
                changes = view.offer(dict(data))
            elif kind == "session_expired":
                session.token_expired()
            elif kind == "disconnect":
                session.drop()
                break


def watch_all(
    url: str,
    token: TokenSource,
    *,
    events: bool = False,
    timeout: float | None = None,
    reconnect: bool = True,
) -> Iterator[Any]:
    """Yield the snapshots of all the caller's jobs as they change (``watch_jobs``).

    First the current snapshot of each job the server lists (its newest 200),
    then one snapshot per event of any of the caller's jobs, new ones
    included, each event once and in ``seq`` order per job. After a
    reconnect, a job that moved on meanwhile is yielded once, as it is now
    (not event by event). Runs until the caller stops iterating (``break`` or
    ``.close()``). Parameters as in :func:`watch`; with ``events=True`` it
    yields ``(event, snapshot)`` pairs.
    """
    session = _Session(url, token, timeout, reconnect)
    try:
        for event, snap in _follow_all(session):
            yield (event, snap) if events else snap
    finally:
        session.close()


def _follow_all(session: _Session) -> Iterator[tuple[Event | None, Snapshot]]:
    views: dict[str, JobView] = {}
    while True:
        try:
            session.ensure()
            ack = session.request("watch_jobs", {})
        except (_LinkLost, _Busy) as exc:
            session.backoff(str(exc))
            continue
        session.healthy()
        changes: list[tuple[Event | None, Snapshot]] = []
        for job in reversed(ack.get("jobs", [])):  # oldest first
            view = views.setdefault(job["job_id"], JobView(job["job_id"]))
            if view.snapshot is None or job["seq"] != view.seq:
                changes += view.reset(job)
        while True:
            yield from changes
            changes = []
            late = [v for v in views.values() if v.gap_age() > GAP_WAIT]
            try:
                for view in late:
                    changes += _catch_up(session, view)
            except (_LinkLost, _Busy):
                break
            if changes:
                continue
            item = session.next_item(_wait_for(list(views.values())))
            if item is None:
                continue
            kind, data = item
            if kind == "event" and isinstance(data, Mapping) and "job_id" in data:
                view = views.setdefault(data["job_id"], JobView(data["job_id"]))
                changes = view.offer(dict(data))
            elif kind == "session_expired":
                session.token_expired()
            elif kind == "disconnect":
                session.drop()
                break


def _catch_up(session: _Session, view: JobView) -> list[tuple[Event | None, Snapshot]]:
    """Fetch what a job's held events wait for, then leave its room again."""
    join: dict[str, Any] = {"job_id": view.job_id}
    if view.snapshot is not None:
        join["since"] = view.seq
    try:
        ack = session.request("join_job", join)
    except WatchError:
        view.pending.clear()  # a job we may not read (any more): forget it
        view._gap_since = None
        return []
    with contextlib.suppress(WatchError, _Busy):
        session.request("leave_job", {"job_id": view.job_id})
    return view.sync(ack)

"""Benchmark pipelines: J jobs that report progress through the real library.

Every job is a real progresscast job (``tracker.job(...)``) and every update a
real ``job.update(done, total, message=...)``: state machine, store write,
emit to the job's rooms. The message starts with the wall-clock time of the
call (``time.time()``), which the load generator subtracts from its own clock
on arrival: the latency measured is "pipeline's update call -> client's event
callback", on one machine clock.

Two ways to run them:

- in the server process (bench/bench_wsgi.py): one greenlet per job, started
  with ``socketio.start_background_task`` and paced with ``socketio.sleep``;
- as a worker process (``python bench/pipelines.py --store redis://...
  --queue redis://... --port P``): ``ProgressTracker.from_urls`` publishing
  through Redis, one thread per job, no Flask and no eventlet.

Both answer the same small HTTP control API as the peer servers
(bench/peers/), which bench/run.py drives:

``GET  /bench/info``                         -> {jobs, job_ids, pid}
``POST /bench/start?duration=S&rate=R&seed=N`` -> every job updates R times/s for S s
``POST /bench/burst?id=K``                   -> every job updates once, now
``GET  /bench/issued?since=A&until=B``       -> updates issued per job with A <= ts < B
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: updates go to the first stage; a big total keeps stage_progress moving and never wraps
STAGES = {"parsing": 0.15, "analyzing": 0.60, "integrating": 0.20, "formatting": 0.05}
TOTAL = 1_000_000
#: pads the message so a progress_update is ~300 bytes of JSON, like a real one
PAD = "checking cross-references, figures, tables and footnotes"


def job_id(j: int) -> str:
    return f"bench-{j:03d}"


def update_message(ts: float, i: int) -> str:
    """The message of a timed update: the send time first (parsed by the load generator)."""
    return f"{ts!r} page {i} of {TOTAL}: {PAD}"


def burst_message(burst: int, t0: float) -> str:
    return f"b{burst}:{t0!r} {PAD}"


def paced(period: float, first: float, deadline: float, sleep: Callable[[float], Any]):
    """Yield the send time of every slot ``first + k * period`` before ``deadline``,
    sleeping with ``sleep`` until each is due. Every server's update loop paces
    itself with this, so all of them are asked for the same work."""
    due = first
    while due < deadline:
        now = time.time()
        if due > now:
            sleep(due - now)
        elif now - due > period:
            # Fell behind by more than a period (an overloaded server starves
            # this loop): skip the missed slots rather than fire a catch-up
            # burst; the issue rate then shows the shortfall.
            due = now
        ts = time.time()
        if ts >= deadline:
            return
        yield ts
        due += period


def emit_return_ms(issued: list[list[float]], returned: list[list[float]], since, until) -> dict:
    """p50/p99 of "update issued -> the server's emit call returned" (ms) for
    the updates issued in [since, until): the server's own share of the
    latency, the rest being the kernel and the client. A server that writes
    each frame to the socket within the call (progresscast, Node) has handed
    every frame to the kernel by then; one that queues them (python-engineio)
    has not."""
    values = sorted(
        r for log, rets in zip(issued, returned, strict=True)
        for ts, r in zip(log, rets, strict=True) if since <= ts < until
    )  # fmt: skip
    if not values:
        return {}

    def pick(p: float) -> float:
        return round(1000 * values[min(len(values) - 1, int(p * len(values)))], 3)

    return {"p50": pick(0.5), "p99": pick(0.99)}


class GcTimer:
    """Time spent in Python's cyclic garbage collector, per generation (``gc.callbacks``).

    A server holding thousands of connections has a big heap for every full
    collection to walk, and the event loop stops while it does.
    """

    def __init__(self) -> None:
        import gc

        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started: float | None = None
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            gen = info["generation"]
            self.seconds[gen] += time.perf_counter() - self._started
            self.collections[gen] += 1
            self._started = None

    def stats(self, objects: bool = False) -> dict:
        import gc

        out: dict[str, Any] = {"seconds": self.seconds, "collections": self.collections}
        if objects:  # walks the whole heap: not inside a timed window
            out["objects"] = len(gc.get_objects())
        return out


class FanoutOnly:
    """A diagnostic stand-in for a job's emitter: ``update()`` skips the state
    machine and the store and makes the tracker's last call directly, the emit
    of a ``progress_update`` shaped like the real one to the job's rooms.

    Not a product configuration (nothing is stored, so nothing could be
    resumed): the benchmark's *progresscast, fan-out only* run uses it to
    split the in-process figure into what the delivery path costs and what the
    state machine and the durable write before it add.
    """

    def __init__(self, tracker: Any, job_id: str, owner: str) -> None:
        from progresscast.protocol import event_rooms
        from progresscast.state import iso

        self.job_id = job_id
        self._emit = tracker.emitter.emit
        self._iso = iso
        self._rooms = event_rooms(job_id, owner)
        self._namespace = tracker.namespace
        self._started = time.time()

    def update(self, done: int, total: int, message: str = "") -> None:
        now = time.time()
        event = {
            "job_id": self.job_id,
            "seq": done + 1,  # job_started was 1
            "type": "progress_update",
            "ts": self._iso(now),
            "stage": "parsing",
            "stage_progress": round(done / total, 4),
            "progress": round(100 * STAGES["parsing"] * done / total, 2),
            "message": message,
            "eta_seconds": None,
            "elapsed_seconds": round(now - self._started, 3),
        }
        self._emit("progress_update", event, to=self._rooms, namespace=self._namespace)


class Pipelines:
    """J progresscast jobs and the loops that update them.

    ``spawn(fn, *args)`` starts a concurrent task (a greenlet or a thread) and
    ``sleep(seconds)`` yields to the others: the server's
    ``socketio.start_background_task`` / ``socketio.sleep`` in process,
    ``threading`` / ``time.sleep`` in a worker.
    """

    def __init__(
        self,
        tracker: Any,
        jobs: int,
        *,
        spawn: Callable[..., Any],
        sleep: Callable[[float], Any],
        owner: str = "bench",
        fanout_only: bool = False,
    ) -> None:
        self.spawn = spawn
        self.sleep = sleep
        # min_interval=0: every update is emitted (the benchmark paces them itself)
        self.emitters = [
            tracker.job(f"bench job {j}", STAGES, owner=owner, job_id=job_id(j), min_interval=0.0)
            for j in range(jobs)
        ]
        if fanout_only:
            self.emitters = [FanoutOnly(tracker, e.job_id, owner) for e in self.emitters]
        self.done = [0] * jobs
        self.issued: list[list[float]] = [[] for _ in range(jobs)]
        self.returned: list[list[float]] = [[] for _ in range(jobs)]  # seconds in update()
        self.running_until = 0.0
        self.errors = 0

    # ------------------------------------------------------------- control

    def info(self) -> dict:
        return {
            "jobs": len(self.emitters),
            "job_ids": [e.job_id for e in self.emitters],
            "pid": os.getpid(),
        }

    def start(self, duration: float, rate: float, seed: int = 0) -> dict:
        now = time.time()
        if now < self.running_until:
            return {"ok": False, "error": "already running"}
        self.running_until = now + duration
        rng = random.Random(seed)
        period = 1.0 / rate
        for j in range(len(self.emitters)):
            # independent random phases: the updates of different jobs do not line up
            self.spawn(self._loop, j, period, now + rng.uniform(0, period), self.running_until)
        return {"ok": True, "t0": now, "until": self.running_until}

    def burst(self, burst: int) -> dict:
        """Every job updates once, back to back, all stamped with the same instant."""
        if time.time() < self.running_until:
            return {"ok": False, "error": "a timed run is in progress"}
        t0 = time.time()
        message = burst_message(burst, t0)
        for j, emitter in enumerate(self.emitters):
            self.done[j] += 1
            emitter.update(self.done[j], TOTAL, message=message)
        return {"ok": True, "t0": t0, "issue_seconds": time.time() - t0}

    def issued_between(self, since: float, until: float) -> dict:
        per_job = [sum(1 for ts in log if since <= ts < until) for log in self.issued]
        return {
            "per_job": per_job,
            "total": sum(per_job),
            "errors": self.errors,
            "emit_return_ms": emit_return_ms(self.issued, self.returned, since, until),
        }

    # --------------------------------------------------------------- loops

    def _loop(self, j: int, period: float, first: float, deadline: float) -> None:
        emitter = self.emitters[j]
        log, returned = self.issued[j], self.returned[j]
        for ts in paced(period, first, deadline, self.sleep):
            self.done[j] += 1
            try:
                emitter.update(self.done[j], TOTAL, message=update_message(ts, self.done[j]))
            except Exception:
                self.errors += 1
            returned.append(time.time() - ts)
            log.append(ts)


# ------------------------------------------------------------------ worker


def serve_control(pipelines: Pipelines, port: int) -> None:
    """The control API over http.server, for the worker process."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            parts = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/bench/info":
                body = pipelines.info()
            elif parts.path == "/bench/start":
                body = pipelines.start(
                    float(q["duration"]), float(q.get("rate", 10)), int(q.get("seed", 0))
                )
            elif parts.path == "/bench/burst":
                body = pipelines.burst(int(q.get("id", 0)))
            elif parts.path == "/bench/issued":
                body = pipelines.issued_between(float(q["since"]), float(q["until"]))
            elif parts.path == "/healthz":
                body = {"ok": True}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="progresscast benchmark pipelines (worker)")
    parser.add_argument("--store", required=True, help="store URL shared with the server")
    parser.add_argument("--queue", required=True, help="the server's MESSAGE_QUEUE_URL")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--port", type=int, required=True, help="control API port")
    args = parser.parse_args()

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from progresscast import ProgressTracker

    tracker = ProgressTracker.from_urls(args.store, args.queue)

    def spawn(fn, *a):
        threading.Thread(target=fn, args=a, daemon=True).start()

    pipelines = Pipelines(tracker, args.jobs, spawn=spawn, sleep=time.sleep)
    serve_control(pipelines, args.port)


if __name__ == "__main__":
    main()

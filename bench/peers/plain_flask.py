"""Peer: a plain Flask-SocketIO server, the way most tutorials write one.

``socketio.run(app)`` on eventlet; clients ``join_job`` a room; a background
task per room emits ``progress_update`` with ``socketio.emit(..., to=room)``.
No store, no auth, no state machine: the floor progresscast is built on.
The payload has the same fields and size as progresscast's progress_update.

``--max-size`` is eventlet.wsgi's ``max_size`` (concurrent connections);
tutorials leave it at eventlet's default, 1024. Tutorials also leave websocket
compression as eventlet negotiates it (on, when the client offers it, as
browsers do); ``--no-compression`` drops the client's offer first, the way
progresscast does (src/progresscast/flask/compression.py).
"""

from __future__ import annotations

import argparse
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from flask import Flask, jsonify, request  # noqa: E402
from flask_socketio import SocketIO, join_room  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipelines import (  # noqa: E402
    TOTAL,
    GcTimer,
    burst_message,
    emit_return_ms,
    job_id,
    paced,
    update_message,
)

NS = "/progress"
app = Flask(__name__)
socketio = SocketIO(app, async_mode="eventlet")
JOBS = 100
seq = [0] * JOBS
done = [0] * JOBS
issued: list[list[float]] = [[] for _ in range(JOBS)]
returned: list[list[float]] = [[] for _ in range(JOBS)]  # seconds in the emit call
state = {"running_until": 0.0}
started = time.time()
gc_timer = GcTimer()


def payload(j: int, message: str) -> dict:
    seq[j] += 1
    done[j] += 1
    now = time.time()
    pct = round(100.0 * done[j] / TOTAL, 4)
    return {
        "job_id": job_id(j),
        "seq": seq[j],
        "type": "progress_update",
        "ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "stage": "parsing",
        "stage_progress": pct,
        "progress": round(pct * 0.15, 4),
        "message": message,
        "eta_seconds": 1234.5,
        "elapsed_seconds": round(now - started, 3),
    }


@socketio.on("join_job", namespace=NS)
def on_join(data):
    join_room(f"job:{data['job_id']}")
    return {"ok": True}


@socketio.on("ping", namespace=NS)
def on_ping(data=None):
    return {"ok": True, "server_time": time.time()}


def room_loop(j: int, period: float, first: float, deadline: float) -> None:
    for ts in paced(period, first, deadline, socketio.sleep):
        data = payload(j, update_message(ts, done[j] + 1))
        socketio.emit("progress_update", data, to=f"job:{job_id(j)}", namespace=NS)
        returned[j].append(time.time() - ts)
        issued[j].append(ts)


@app.route("/bench/info")
def info():
    return jsonify({"jobs": JOBS, "job_ids": [job_id(j) for j in range(JOBS)], "pid": os.getpid()})


@app.route("/healthz")
def healthz():
    return jsonify({"ok": True})


@app.route("/bench/start", methods=["GET", "POST"])
def start():
    q = request.args
    now = time.time()
    if now < state["running_until"]:
        return jsonify({"ok": False, "error": "already running"})
    duration, rate = float(q["duration"]), float(q.get("rate", 10))
    state["running_until"] = now + duration
    rng = random.Random(int(q.get("seed", 0)))
    period = 1.0 / rate
    for j in range(JOBS):
        socketio.start_background_task(
            room_loop, j, period, now + rng.uniform(0, period), state["running_until"]
        )
    return jsonify({"ok": True, "t0": now, "until": state["running_until"]})


@app.route("/bench/burst", methods=["GET", "POST"])
def burst():
    k = int(request.args.get("id", 0))
    t0 = time.time()
    message = burst_message(k, t0)
    for j in range(JOBS):
        socketio.emit("progress_update", payload(j, message), to=f"job:{job_id(j)}", namespace=NS)
    return jsonify({"ok": True, "t0": t0, "issue_seconds": time.time() - t0})


@app.route("/bench/gc")
def gc_stats():
    return jsonify(gc_timer.stats(objects=bool(request.args.get("objects"))))


@app.route("/bench/issued")
def issued_between():
    since, until = float(request.args["since"]), float(request.args["until"])
    per_job = [sum(1 for ts in log if since <= ts < until) for log in issued]
    return jsonify(
        {
            "per_job": per_job,
            "total": sum(per_job),
            "errors": 0,
            "emit_return_ms": emit_return_ms(issued, returned, since, until),
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--max-size", type=int, default=None, help="eventlet.wsgi max_size")
    parser.add_argument("--no-compression", action="store_true")
    args = parser.parse_args()
    JOBS = args.jobs
    seq[:] = [0] * JOBS
    done[:] = [0] * JOBS
    issued[:] = [[] for _ in range(JOBS)]
    returned[:] = [[] for _ in range(JOBS)]
    extra = {} if args.max_size is None else {"max_size": args.max_size}
    if args.no_compression:
        inner = app.wsgi_app

        def no_compression(environ, start_response):
            environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
            return inner(environ, start_response)

        app.wsgi_app = no_compression
    socketio.run(app, host="127.0.0.1", port=args.port, log_output=False, **extra)

"""The progresscast server with benchmark pipelines inside it (the in-process path).

``gunicorn -c gunicorn.conf.py bench.bench_wsgi:app`` from the repository
root: the production app from ``wsgi.py`` (monkey patching first, then
``create_app()``), plus ``PROGRESSCAST_BENCH_JOBS`` jobs (default 100) whose
update loops run as ``socketio.start_background_task`` greenlets next to the
server, and the /bench/* control routes of bench/pipelines.py.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# First, alone: wsgi.py monkey patches before anything imports socket or
# threading, then builds the production app.
from wsgi import app  # noqa: E402

socketio = app.extensions["socketio"]

from flask import jsonify, request  # noqa: E402

from bench.pipelines import GcTimer, Pipelines  # noqa: E402
from web import get_tracker  # noqa: E402

gc_timer = GcTimer()  # garbage-collector time, read through /bench/gc
pipelines = Pipelines(
    get_tracker(app),
    int(os.environ.get("PROGRESSCAST_BENCH_JOBS", "100")),
    spawn=socketio.start_background_task,
    sleep=socketio.sleep,
)


@app.route("/bench/info")
def bench_info():
    return jsonify(pipelines.info())


@app.route("/bench/start", methods=["GET", "POST"])
def bench_start():
    q = request.args
    return jsonify(
        pipelines.start(float(q["duration"]), float(q.get("rate", 10)), int(q.get("seed", 0)))
    )


@app.route("/bench/burst", methods=["GET", "POST"])
def bench_burst():
    return jsonify(pipelines.burst(int(request.args.get("id", 0))))


@app.route("/bench/issued")
def bench_issued():
    q = request.args
    return jsonify(pipelines.issued_between(float(q["since"]), float(q["until"])))


@app.route("/bench/gc")
def bench_gc():
    return jsonify(gc_timer.stats(objects=bool(request.args.get("objects"))))

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
    # the *fan-out only* diagnostic run (bench/pipelines.py FanoutOnly)
    fanout_only=os.environ.get("PROGRESSCAST_BENCH_FANOUT_ONLY") == "1",
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


if os.environ.get("PROGRESSCAST_BENCH_TRACEMALLOC"):
    # Memory attribution (bench/memory_probe.py): what the heap holds, by line.
    import tracemalloc

    tracemalloc.start(int(os.environ["PROGRESSCAST_BENCH_TRACEMALLOC"]))
    _snapshots: dict[str, tracemalloc.Snapshot] = {}

    @app.route("/bench/heap/<label>", methods=["POST"])
    def bench_heap_snapshot(label: str):
        import gc

        gc.collect()
        _snapshots[label] = tracemalloc.take_snapshot()
        return jsonify({"label": label, "traced": tracemalloc.get_traced_memory()[0]})

    @app.route("/bench/heap/<before>/<after>")
    def bench_heap_diff(before: str, after: str):
        group = request.args.get("by", "lineno")
        stats = _snapshots[after].compare_to(_snapshots[before], group)
        return jsonify(
            [
                {
                    "where": str(s.traceback).replace(ROOT, "."),
                    "bytes": s.size_diff,
                    "count": s.count_diff,
                }
                for s in stats[: int(request.args.get("top", 30))]
            ]
        )

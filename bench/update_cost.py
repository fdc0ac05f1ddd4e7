"""CPU per update: the in-process path beside the worker path, in one run.

Each path runs the same pipelines through the real library (a
``ProgressEmitter`` per job, as bench/pipelines.py does) and counts the CPU
time of this process (``time.process_time``) per report, best of several
repeats:

- **in-process**: a ``ProgressTracker`` on a real SQLite file (WAL, as the
  server opens it) whose emitter does what the server's emit does for every
  update whatever the number of watchers, minus the sockets: it encodes the
  Socket.IO packet once and frames it as one Engine.IO message
  (progresscast/flask/batching.py, ``_Fanout.emit``). Writing those bytes to
  each watcher is the fan-out, measured per delivery by the latency benchmark.
- **worker**: ``ProgressTracker.from_urls(redis, redis)``, as a Celery or RQ
  worker makes it, on a real redis-server: the store's Lua append, and the
  publish on the server's ``flask-socketio`` channel. CPU is the worker's
  own (Redis's is not counted).
- **worker, two steps** (for comparison): the same with the store's append and
  python-socketio's write-only ``RedisManager`` publish as two round trips
  (``atomic_publish=False``), the worker path before the combined script.

The mix is that of a pipeline: a job of four stages (bench/pipelines.py's
STAGES) reports ``UPDATES_PER_STAGE`` progress updates per stage, each with a
count, a total and a ~100-character message, then moves to the next stage
(``stage_completed``); every call is one stored and published event.
``--json`` prints the result on one line (bench/run.py); :func:`measure` is
what run.py calls.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))

from pipelines import STAGES, TOTAL, update_message  # noqa: E402

#: reports per repeat (updates and stage changes, all of them events)
N = 2_000
REPEATS = 5
#: progress updates per stage before the pipeline moves to the next one
UPDATES_PER_STAGE = 50


class ServerEmit:
    """What the server's emit does per update before any socket: one
    Socket.IO packet encoding and one Engine.IO framing (batching.py's
    ``_Fanout.emit``, with the server's packet class)."""

    def __init__(self) -> None:
        from engineio import packet as eio_packet
        from socketio import packet

        from progresscast.flask.jsonutil import TolerantPacket

        self._packet = TolerantPacket
        self._event = packet.EVENT
        self._eio_packet = eio_packet
        self.frames = 0

    def emit(self, event: str, data: Any, *, to: Any = None, namespace: str | None = None) -> None:
        encoded = self._packet(
            self._event, namespace=namespace, data=[event, data], binary=False
        ).encode()
        self._eio_packet.Packet(self._eio_packet.MESSAGE, encoded).encode()
        self.frames += 1


def run_pipeline(tracker: Any, n: int, tag: str) -> float:
    """CPU seconds for ``n`` reports of pipelines on ``tracker`` (jobs are
    created and ended outside the timed part)."""
    stages = list(STAGES)
    cpu = 0.0
    done = 0
    job_no = 0
    while done < n:
        job = tracker.job(
            "bench job", STAGES, owner="bench", job_id=f"{tag}-{job_no}", min_interval=0.0
        )
        job_no += 1
        started = time.process_time()
        for index, stage in enumerate(stages):
            if index:
                job.stage(stage)  # stage_completed
                done += 1
            for i in range(UPDATES_PER_STAGE):
                job.update(i + 1, TOTAL, message=update_message(time.time(), i + 1))
                done += 1
                if done >= n:
                    break
            if done >= n:
                break
        cpu += time.process_time() - started
        job.complete()
    return cpu


def best_of(make: Callable[[], Any], n: int, repeats: int, tag: str) -> float:
    """Best CPU µs per report over ``repeats`` runs, each on a fresh tracker."""
    best = float("inf")
    for r in range(repeats):
        tracker = make()
        try:
            run_pipeline(tracker, 50, f"{tag}-warm{r}")  # connections, scripts, caches
            gc.collect()
            best = min(best, run_pipeline(tracker, n, f"{tag}-{r}") / n)
        finally:
            tracker.close()
    return best * 1e6


def measure(n: int = N, repeats: int = REPEATS) -> dict:
    """``{in_process_us, worker_us, worker_two_step_us, ratio, ratio_two_step,
    reports, repeats, updates_per_stage, python}``: CPU µs per report of each
    path, and worker / in-process."""
    from lib import Redis

    from progresscast import ProgressTracker, open_store

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        def in_process() -> ProgressTracker:
            store = open_store(f"sqlite:///{tmp}/bench-{next(counter)}.db")
            store.manual_checkpoints()  # as the server does (a native thread checkpoints)
            return ProgressTracker(store, ServerEmit())

        redis = Redis(Path(tmp)).start()
        try:
            # A tree from before the one-step publish: both rows are its worker.
            one_step = "atomic_publish" in inspect.signature(ProgressTracker.from_urls).parameters

            def worker(atomic: bool) -> Callable[[], ProgressTracker]:
                options = {"atomic_publish": atomic} if one_step else {}
                return lambda: ProgressTracker.from_urls(redis.url, redis.url, **options)

            tags = iter(range(1_000_000))

            # Interleaved, so a change in the machine's load hits every path alike.
            results: dict[str, float] = {}
            ratios: list[float] = []  # worker / in-process within each repeat
            for _ in range(repeats):
                this: dict[str, float] = {}
                for name, make in (
                    ("in_process", in_process),
                    ("worker", worker(True)),
                    ("worker_two_step", worker(False)),
                ):
                    us = this[name] = best_of(make, n, 1, f"{name}{next(tags)}")
                    results[name] = min(results.get(name, us), us)
                ratios.append(this["worker"] / this["in_process"])
        finally:
            redis.stop()
    return {
        "in_process_us": round(results["in_process"], 1),
        "worker_us": round(results["worker"], 1),
        "worker_two_step_us": round(results["worker_two_step"], 1),
        "ratio": round(results["worker"] / results["in_process"], 2),
        "ratio_two_step": round(results["worker_two_step"] / results["in_process"], 2),
        # how far the ratio moves between repeats of the same code: the noise
        "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
        "reports": n,
        "repeats": repeats,
        "updates_per_stage": UPDATES_PER_STAGE,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }


def group_commit_whatif(n: int = 2000, sizes=(1, 2, 4, 8), repeats: int = 3) -> dict:
    """What group commit would save: CPU µs per update of the SQLite write
    when ``k`` updates share one transaction (the store's own statements,
    each update still its own compare-and-set). ``k = 1`` is
    ``SQLiteStore.append`` itself. Not part of :func:`measure`: the store does
    not group commits (bench/notes.md says why)."""
    from progresscast import open_store
    from progresscast.jsoncodec import dumps
    from progresscast.state import new_job, transition
    from progresscast.stores import sqlite

    best: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for k in sizes:
                store = open_store(f"sqlite:///{tmp}/g{r}-{k}.db")
                store.manual_checkpoints()
                state = new_job("g", "bench", STAGES, "bench", None, 1000.0)
                pending = []
                for kind in ("job_queued", "job_started"):
                    events, state = transition(state, kind, {}, 1000.0)
                    store.append(events, state)
                for i in range(n):
                    now = 1000.0 + 0.1 * (i + 1)
                    fields = {"stage": "parsing", "n": i, "total": TOTAL}
                    fields["message"] = update_message(now, i)
                    events, state = transition(state, "progress_update", fields, now)
                    pending.append((events, state))
                conn = store._db
                started = time.process_time()
                if k == 1:
                    for events, state in pending:
                        store.append(events, state)
                else:
                    for j in range(0, n, k):
                        conn.execute("BEGIN IMMEDIATE")
                        for events, state in pending[j : j + k]:
                            rows = conn.execute(
                                sqlite._UPDATE_PROGRESS,
                                (
                                    state.updated_at,
                                    state.seq,
                                    dumps(state.to_record()),
                                    state.job_id,
                                    state.seq - 1,
                                ),
                            ).fetchall()
                            assert len(rows) == 1
                            conn.executemany(
                                "INSERT INTO events (job_id, seq, event) VALUES (?, ?, ?)",
                                [(state.job_id, e["seq"], dumps(e)) for e in events],
                            )
                        conn.execute("COMMIT")
                us = (time.process_time() - started) / n * 1e6
                best[k] = min(best.get(k, us), us)
                store.close()
    return {f"k{k}": round(us, 1) for k, us in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--reports", type=int, default=N)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument(
        "--group-commit", action="store_true", help="only the what-if of grouped SQLite commits"
    )
    args = parser.parse_args()
    if args.group_commit:
        result = group_commit_whatif()
        result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(result))
        return
    result = measure(args.reports, args.repeats)
    if args.json:
        print(json.dumps(result))
        return
    print(f"in-process:       {result['in_process_us']:7.1f} µs CPU per update")
    print(
        f"worker:           {result['worker_us']:7.1f} µs CPU per update"
        f"  ({result['ratio']}x in-process)"
    )
    print(
        f"worker, 2 steps:  {result['worker_two_step_us']:7.1f} µs CPU per update"
        f"  ({result['ratio_two_step']}x in-process)"
    )
    print(f"load average {result['loadavg']}")


if __name__ == "__main__":
    main()

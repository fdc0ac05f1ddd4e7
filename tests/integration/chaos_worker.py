"""Worker process of the chaos test (tests/integration/test_chaos.py).

It uses the library only: ``ProgressTracker.from_urls(store_url, mq_url)``,
``create_job`` and ``start``, as a Celery/RQ/multiprocessing worker would.

1. Creates ``--jobs`` queued jobs and prints ``{"jobs": [...], "fates": {...}}``
   as one JSON line on stdout.
2. Waits for ``go`` on stdin, then runs every job in its own thread: a few
   stages with a progress update every 10-40 ms (the emitter's ``min_interval``
   throttles what is stored and published). The last stage goes on until
   ``finish`` arrives on stdin, so the jobs run for as long as the chaos
   phase lasts; then they complete. A few jobs end on purpose earlier, while
   the chaos goes on: some fail (an exception in the pipeline), some are
   cancelled (a cancellation request, which the emitter notices and obeys).
3. Prints ``{"done": {...}}`` and exits 0, or 1 if a job thread crashed
   (the traceback goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import traceback

from progresscast import ProgressTracker, StoreUnavailable

STAGES = [
    {"name": "fetch", "weight": 0.2},
    {"name": "parse", "weight": 0.3},
    {"name": "render", "weight": 0.3},
    {"name": "upload", "weight": 0.2},
]
UNITS = 1000  # units of work per stage


class PlannedFailure(RuntimeError):
    """The exception a job that is meant to fail raises in its pipeline."""


def fate_of(index: int) -> str:
    """complete, fail or cancel: 2 of every 8 jobs end early, on purpose."""
    return {3: "cancel", 6: "fail"}.get(index % 8, "complete")


def retry_unavailable(call, what: str, limit: float = 30.0):
    """Retry ``call`` while the store is unreachable (bounded).

    Used only for the cancellation *request*, which is not part of the
    pipeline (an operator's action, made from this process for convenience):
    its caller gets StoreUnavailable during the Redis restart and, as the
    protocol's ``unavailable`` says, should try again. The pipeline itself
    (``ProgressEmitter``) is never wrapped: surviving the outage is its job.
    """
    deadline = time.monotonic() + limit
    while True:
        try:
            return call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            print(f"{what}: store unavailable, retrying", file=sys.stderr, flush=True)
            time.sleep(0.1)


def run_job(
    tracker: ProgressTracker,
    job_id: str,
    fate: str,
    stage_seconds: float,
    end_at: float,
    finish: threading.Event,
    rng: random.Random,
) -> str:
    """One pipeline; returns how it ended (completed, failed, cancelled)."""
    job = tracker.start(job_id)
    cancel_requested = False
    try:
        with job:
            for index, stage in enumerate(STAGES):
                last = index == len(STAGES) - 1
                with job.stage(stage["name"], total=UNITS):
                    began = time.monotonic()
                    step = 0
                    while True:
                        time.sleep(rng.uniform(0.01, 0.04))
                        step += 1
                        now = time.monotonic()
                        elapsed = (now - began) / stage_seconds
                        if fate != "complete" and now >= end_at:
                            if fate == "fail":
                                raise PlannedFailure(f"{job_id}: planned failure at step {step}")
                            if not cancel_requested:
                                retry_unavailable(
                                    lambda: tracker.request_cancel(job_id, "chaos: planned cancel"),
                                    f"{job_id}: cancel request",
                                )
                                cancel_requested = True
                            if now - end_at > 20:
                                raise AssertionError(f"{job_id}: cancellation never took effect")
                        if last:
                            # Runs until told to finish: creeps towards 100 %.
                            done = UNITS * (1 - 0.5 ** (elapsed + 0.01))
                            if finish.is_set():
                                job.update(UNITS, message=f"{stage['name']}: done")
                                break
                        else:
                            done = min(UNITS, UNITS * elapsed)
                            if done >= UNITS or finish.is_set():
                                job.update(UNITS, message=f"{stage['name']}: done")
                                break
                        job.update(done, message=f"{stage['name']}: step {step}")
            job.complete({"stages": len(STAGES), "last_step": step})
        return "cancelled" if job.cancelled else "completed"
    except PlannedFailure:
        return "failed"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--owner", default="chaos-owner")
    parser.add_argument("--stage-seconds", type=float, default=5.0)
    parser.add_argument("--early-end", type=float, nargs=2, default=(3.0, 14.0))
    parser.add_argument("--min-interval", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tracker = ProgressTracker.from_urls(args.store, args.queue, min_interval=args.min_interval)
    run = f"{random.Random().getrandbits(32):08x}"
    job_ids, fates = [], {}
    for i in range(args.jobs):
        state = tracker.create_job(
            f"chaos {i}", STAGES, owner=args.owner, job_id=f"chaos-{run}-{i:02d}"
        )
        job_ids.append(state.job_id)
        fates[state.job_id] = fate_of(i)
    print(json.dumps({"jobs": job_ids, "fates": fates}), flush=True)

    go, finish = threading.Event(), threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "go":
                go.set()
            elif command == "finish":
                finish.set()
        go.set()  # stdin closed: the test is gone; end quickly
        finish.set()

    threading.Thread(target=commands, daemon=True).start()
    go.wait()
    started = time.monotonic()
    rng = random.Random(args.seed)
    outcomes: dict[str, str] = {}
    errors: dict[str, str] = {}

    def body(job_id: str, job_rng: random.Random) -> None:
        end_at = started + job_rng.uniform(*args.early_end)
        try:
            outcomes[job_id] = run_job(
                tracker, job_id, fates[job_id], args.stage_seconds, end_at, finish, job_rng
            )
        except BaseException:
            errors[job_id] = traceback.format_exc()
            print(f"job {job_id} crashed:\n{errors[job_id]}", file=sys.stderr, flush=True)

    threads = [
        threading.Thread(target=body, args=(job_id, random.Random(rng.random())), daemon=True)
        for job_id in job_ids
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = {
        "outcomes": outcomes,
        "errors": sorted(errors),
        "seconds": round(time.monotonic() - started, 2),
    }
    print(json.dumps({"done": summary}), flush=True)
    tracker.store.close()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
